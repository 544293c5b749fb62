"""Read `terraform show -json PLANFILE` into the stage vocabulary: changes, masked values, drift.

Sensitive values are masked with `before_sensitive` / `after_sensitive` before anything leaves
this module; values not known until apply read "(known after apply)". The drift reading compares
refreshed live values (`before`) with what the configuration wants (`after`) per attribute, and
drops the noise terraform's raw output carries: null versus empty string, list or map.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.stage import MASK, Action, Change, DriftItem, Stage, digest

UNKNOWN = "(known after apply)"
RESOURCE = "(resource)"
_MAX_VALUE = 200
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class StateVersion:
    """Which state a plan was computed against: its lineage and serial ('' and 0 before any apply)."""

    lineage: str
    serial: int

    def __str__(self) -> str:
        return f"{self.lineage or '-'}/{self.serial}"

    @classmethod
    def parse(cls, text: str) -> StateVersion:
        lineage, _, serial = text.rpartition("/")
        return cls("" if lineage == "-" else lineage, int(serial or 0))

    @classmethod
    def from_state_json(cls, text: str) -> StateVersion:
        """From a raw state file (`terraform state pull`, or the `tfstate` inside a plan file)."""
        if not text.strip():
            return cls("", 0)
        data = json.loads(text)
        return cls(str(data.get("lineage") or ""), int(data.get("serial") or 0))

    @classmethod
    def of_plan_file(cls, path: Path) -> StateVersion:
        """The prior state a saved plan was made against, read from the plan file itself."""
        with zipfile.ZipFile(path) as archive:
            try:
                return cls.from_state_json(archive.read("tfstate").decode())
            except KeyError:
                return cls("", 0)


def action_of(actions: list[str]) -> Action | None:
    """Terraform's action list to ours; None for reads of data sources."""
    kinds = set(actions)
    if kinds == {"create", "delete"}:
        return Action.replace
    if kinds & {"create"}:
        return Action.create
    if kinds & {"delete", "forget"}:
        return Action.delete
    if kinds & {"update"}:
        return Action.update
    if kinds <= {"no-op"}:
        return Action.no_op
    return None


def masked(value: Any, sensitive: Any) -> Any:
    """`value` with every part `sensitive` marks (true, or a structure of trues) replaced by MASK."""
    if sensitive is True:
        return None if value is None else MASK
    if isinstance(value, dict) and isinstance(sensitive, dict):
        return {key: masked(item, sensitive.get(key, False)) for key, item in value.items()}
    if isinstance(value, list) and isinstance(sensitive, list):
        return [masked(item, sensitive[i] if i < len(sensitive) else False) for i, item in enumerate(value)]
    return value


def with_unknown(value: Any, unknown: Any) -> Any:
    """`value` with the parts `after_unknown` marks replaced by UNKNOWN."""
    if unknown is True:
        return UNKNOWN
    if isinstance(unknown, dict):
        base = dict(value) if isinstance(value, dict) else {}
        for key, mark in unknown.items():
            if mark is True or key in base:
                base[key] = with_unknown(base.get(key), mark)
        return base if base or isinstance(value, dict) else value
    if isinstance(unknown, list) and isinstance(value, list):
        return [with_unknown(item, unknown[i] if i < len(unknown) else False) for i, item in enumerate(value)]
    return value


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Maps flattened to dotted attribute paths; lists and sets stay whole (their order means
    nothing for sets, so an element index would not name anything stable)."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, _join(prefix, str(key))))
        return flat
    return {prefix: value} if prefix else {}


def _join(prefix: str, key: str) -> str:
    """`tags.owner`, but `tags["kubernetes.io/role/elb"]` when the key is not a plain name."""
    if _PLAIN_KEY.match(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def same(left: Any, right: Any) -> bool:
    """Equal, counting null, "", [] and {} as one value (the provider's noise)."""
    if is_empty(left) and is_empty(right):
        return True
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        if all(same(a, b) for a, b in zip(left, right, strict=True)):
            return True
        try:  # sets come back in any order
            return sorted(map(_canonical, left)) == sorted(map(_canonical, right))
        except TypeError:
            return False
    if isinstance(left, dict) and isinstance(right, dict):
        keys = set(left) | set(right)
        return all(same(left.get(k), right.get(k)) for k in keys)
    return bool(left == right)


def _canonical(value: Any) -> str:
    return json.dumps(_without_empty(value), sort_keys=True)


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if not is_empty(v)}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


@dataclass(frozen=True)
class ResourceChange:
    """One managed resource's planned change with its values masked and unknowns marked."""

    address: str
    action: Action
    actions: tuple[str, ...]
    before: Any
    after: Any
    replace_paths: tuple[str, ...] = ()

    def diff(self) -> str:
        if self.action is Action.create:
            return "\n".join(f"+ {path} = {short(v)}" for path, v in sorted(flatten(self.after).items())
                             if not is_empty(v))
        if self.action is Action.delete:
            return f"- {self.address}"
        lines = []
        before, after = flatten(self.before), flatten(self.after)
        for path in sorted(set(before) | set(after)):
            old, new = before.get(path), after.get(path)
            if not same(old, new):
                forces = "  # forces replacement" if path in self.replace_paths else ""
                lines.append(f"~ {path}: {short(old)} -> {short(new)}{forces}")
        return "\n".join(lines)

    def as_change(self) -> Change:
        return Change(Stage.INFRASTRUCTURE, self.address, self.action, self.diff())

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "action": self.action.value, "actions": list(self.actions),
                "before": self.before, "after": self.after}


@dataclass(frozen=True)
class ParsedPlan:
    resources: list[ResourceChange]
    outputs: dict[str, dict[str, Any]]
    raw_digest: str
    terraform_version: str
    errored: bool

    @property
    def changes(self) -> list[Change]:
        return [resource.as_change() for resource in self.resources]


def parse_plan(data: Mapping[str, Any]) -> ParsedPlan:
    """The `show -json` document of a saved plan, masked."""
    resources: list[ResourceChange] = []
    raw: list[Any] = []
    for item in data.get("resource_changes") or []:
        if item.get("mode", "managed") != "managed":
            continue
        change = item.get("change") or {}
        actions = [str(a) for a in change.get("actions") or []]
        action = action_of(actions)
        if action is None:
            continue
        before = masked(change.get("before"), change.get("before_sensitive", False))
        after = masked(with_unknown(change.get("after"), change.get("after_unknown", False)),
                       change.get("after_sensitive", False))
        replace_paths = tuple(_path_text(p) for p in change.get("replace_paths") or [])
        resources.append(ResourceChange(str(item["address"]), action, tuple(actions), before, after, replace_paths))
        raw.append([item["address"], actions, change.get("before"), change.get("after"), change.get("after_unknown")])
    outputs = {}
    for name, change in (data.get("output_changes") or {}).items():
        sensitive = bool(change.get("after_sensitive")) or bool(change.get("before_sensitive"))
        outputs[name] = {"actions": change.get("actions") or [], "sensitive": sensitive}
        raw.append([f"output.{name}", change.get("actions"), change.get("before"), change.get("after")])
    resources.sort(key=lambda r: r.address)
    return ParsedPlan(resources, outputs, digest(raw), str(data.get("terraform_version", "")),
                      bool(data.get("errored")))


def _path_text(path: Any) -> str:
    if isinstance(path, list):
        return ".".join(str(p) for p in path if not isinstance(p, int))
    return str(path)


def drift_items(plan: ParsedPlan) -> list[DriftItem]:
    """Per address and attribute: what the configuration wants against what is live now."""
    items: list[DriftItem] = []
    for resource in plan.resources:
        items.extend(_resource_drift(resource))
    return items


def _resource_drift(resource: ResourceChange) -> Iterator[DriftItem]:
    stage = Stage.INFRASTRUCTURE
    if resource.action is Action.no_op:
        return
    if resource.action is Action.create:
        yield DriftItem(stage, resource.address, RESOURCE, "present", None, f"{resource.address} is missing")
        return
    if resource.action is Action.delete:
        yield DriftItem(stage, resource.address, RESOURCE, None, "present",
                        f"{resource.address} exists but is no longer wanted")
        return
    live, desired = flatten(resource.before), flatten(resource.after)
    found: dict[str, DriftItem] = {}
    for path in sorted(set(live) | set(desired)):
        want, have = desired.get(path), live.get(path)
        if want == UNKNOWN or same(want, have):
            continue
        found[path] = DriftItem(stage, resource.address, path, want, have,
                                f"~ {path}: {short(have)} (live) -> {short(want)} (desired)")
    for path in list(found):  # tags_all only repeats tags (plus provider default tags)
        if path.startswith("tags_all") and "tags" + path.removeprefix("tags_all") in found:
            del found[path]
    yield from found.values()
