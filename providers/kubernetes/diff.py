"""The one normalised comparison of desired against live; plan, drift and previews all use it.

Desired is what the API server answers to a server-side apply of the manifest with `dryRun=All`
(field manager `tidegate`): defaults, other managers' fields and admission are in it, exactly as
an apply would leave the object. Both sides then lose what the server owns (managedFields,
resourceVersion, uid, creationTimestamp, generation, status, the last-applied annotation) and
Tidegate's tracking labels (`labels.py`: bookkeeping, never a diff line or drift); Secrets compare
`data` with `stringData` folded in; the user's ignore rules (JSON pointers per group, kind, name,
namespace) drop fields on both sides. Equal after that means in sync — nothing else does; a live
object lacking the tracking labels is still an `update` (`Comparison.relabel`), so it gets them.
"""

from __future__ import annotations

import base64
import copy
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from providers.kubernetes.client import KubeClient, KubeError
from providers.kubernetes.labels import drop_tracking, untracked
from providers.kubernetes.ordering import ObjectRef, ref_of
from providers.kubernetes.snapshot import UNSEEN, Unseen
from providers.stage import MASK, Action

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")


@dataclass(frozen=True)
class IgnoreRule:
    """Argo CD's ignoreDifferences: JSON pointers dropped from matching objects before comparing."""

    kind: str
    json_pointers: tuple[str, ...]
    group: str = ""
    name: str | None = None
    namespace: str | None = None

    def matches(self, ref: ObjectRef) -> bool:
        return (self.kind == ref.kind and self.group == ref.group
                and self.name in (None, ref.name) and self.namespace in (None, ref.namespace))

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> IgnoreRule:
        """From the config repo's camelCase form (`jsonPointers`) or snake_case."""
        pointers = data.get("jsonPointers", data.get("json_pointers")) or ()
        return cls(str(data.get("kind", "")), tuple(str(p) for p in pointers), str(data.get("group") or ""),
                   data.get("name"), data.get("namespace"))


def parse_rules(items: Iterable[Mapping[str, Any]]) -> list[IgnoreRule]:
    return [IgnoreRule.parse(item) for item in items]


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def remove_pointer(obj: Any, pointer: str) -> None:
    """Remove the value at a JSON pointer (RFC 6901) if present; absent paths are fine."""
    if not pointer.startswith("/"):
        return
    tokens = [_unescape(t) for t in pointer[1:].split("/")]
    node = obj
    for token in tokens[:-1]:
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return
    last = tokens[-1]
    if isinstance(node, dict):
        node.pop(last, None)
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node.pop(int(last))


def _prune_empty_metadata(metadata: dict[str, Any]) -> None:
    for key in ("annotations", "labels"):
        if key in metadata and not metadata[key]:
            del metadata[key]


def normalise(body: Mapping[str, Any] | None, rules: Sequence[IgnoreRule] = ()) -> dict[str, Any] | None:
    """A deep copy without server-owned fields, Secrets' stringData folded, ignore rules applied."""
    if body is None:
        return None
    out = copy.deepcopy(dict(body))
    out.pop("status", None)
    metadata = dict(out.get("metadata") or {})
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    metadata["annotations"] = annotations
    drop_tracking(metadata)
    _prune_empty_metadata(metadata)
    out["metadata"] = metadata
    if out.get("kind") == "Secret" and out.get("apiVersion") == "v1":
        data = dict(out.get("data") or {})
        for key, value in dict(out.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        if data or "data" in out:
            out["data"] = data
    ref = ref_of(out)
    for rule in rules:
        if rule.matches(ref):
            for pointer in rule.json_pointers:
                remove_pointer(out, pointer)
    _prune_empty_metadata(out.get("metadata") or {})
    return out


def changed_paths(desired: Any, live: Any, prefix: str = "") -> list[str]:
    """JSON pointers where the two differ (a whole list counts as one field when lengths differ)."""
    if isinstance(desired, dict) and isinstance(live, dict):
        paths: list[str] = []
        for key in sorted(set(desired) | set(live), key=str):
            token = str(key).replace("~", "~0").replace("/", "~1")
            paths += changed_paths(desired.get(key), live.get(key), f"{prefix}/{token}")
        return paths
    if isinstance(desired, list) and isinstance(live, list) and len(desired) == len(live):
        paths = []
        for index, (a, b) in enumerate(zip(desired, live, strict=True)):
            paths += changed_paths(a, b, f"{prefix}/{index}")
        return paths
    return [] if desired == live else [prefix or "/"]


def get_pointer(obj: Any, pointer: str) -> Any:
    node = obj
    for token in pointer[1:].split("/") if pointer not in ("", "/") else []:
        token = _unescape(token)
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def mask(body: Mapping[str, Any] | None, other: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Secret values replaced by the mask; a value that differs from `other` says so."""
    if body is None:
        return None
    out = copy.deepcopy(dict(body))
    if out.get("kind") == "Secret":
        theirs = dict((other or {}).get("data") or {})
        out["data"] = {key: MASK if theirs.get(key) == value or other is None else f"{MASK} changed"
                       for key, value in dict(out.get("data") or {}).items()}
        out.pop("stringData", None)
    return out


def render_diff(address: str, desired: Mapping[str, Any] | None, live: Mapping[str, Any] | None) -> str:
    """A unified diff live → desired of YAML, Secret values masked."""
    def text(obj: Mapping[str, Any] | None) -> list[str]:
        if obj is None:
            return []
        return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)

    shown_desired, shown_live = mask(desired, live), mask(live, desired)
    if shown_live is not None and shown_live.get("kind") == "Secret" and shown_desired is not None:
        shown_live["data"] = {key: MASK for key in (shown_live.get("data") or {})}
    lines = difflib.unified_diff(text(shown_live), text(shown_desired), f"live/{address}", f"desired/{address}")
    return "".join(lines)


@dataclass
class Comparison:
    """Desired (dry-run result) against live, both normalised, and what an apply would do."""

    ref: ObjectRef
    desired: dict[str, Any] | None
    live: dict[str, Any] | None
    raw_live: dict[str, Any] | None = None
    fields: list[str] = field(default_factory=list)
    conflict: str = ""
    """The API's conflict message when applying without force would fail (the diff shows forcing)."""
    relabel: list[str] = field(default_factory=list)
    """Tracking labels the live object lacks: an update, but neither a diff line nor drift."""
    immutable: str = ""
    """The API's 422 when the change touches fields that cannot change in place: a `replace`."""
    seen: str = ""
    """The live object's digest when the stage's memory already knew it (an unchanged object)."""

    @property
    def action(self) -> Action:
        if self.seen:
            return Action.no_op
        if self.live is None:
            return Action.create
        if self.immutable:
            return Action.replace
        return Action.update if self.fields or self.relabel else Action.no_op

    @property
    def diff(self) -> str:
        if self.action is Action.no_op:
            return ""
        note = f"# adds Tidegate's tracking labels: {', '.join(self.relabel)}\n" if self.relabel else ""
        if self.immutable:
            note = f"# replace (delete, then create): {self.immutable}\n"
        return note + render_diff(self.ref.address, self.desired, self.live)


def compare_bodies(ref: ObjectRef, predicted: Mapping[str, Any] | None, live: Mapping[str, Any] | None,
                   rules: Sequence[IgnoreRule] = ()) -> Comparison:
    """The pure half: normalise both sides and list the fields that differ."""
    desired_n, live_n = normalise(predicted, rules), normalise(live, rules)
    fields = changed_paths(desired_n, live_n) if live_n is not None else []
    return Comparison(ref, desired_n, live_n, dict(live) if live is not None else None, fields,
                      relabel=untracked(predicted, live))


_IMMUTABLE = re.compile(r"immutable|may not change|updates to .+ are forbidden", re.IGNORECASE)


def immutable_fields(error: KubeError) -> list[str]:
    """The fields a 422 Invalid answer says cannot change in place ([] for any other error).

    The API server words it per kind: "field is immutable" (selectors, Job templates, Secret type),
    "may not change once set" (a Service's clusterIP), "spec is immutable after creation" (PVCs),
    "updates to statefulset spec for fields other than ... are forbidden".
    """
    if error.status != 422:
        return []
    details = error.body.get("details") or {}
    causes = [c for c in details.get("causes") or [] if isinstance(c, Mapping)]
    return [str(c.get("field") or "") for c in causes if _IMMUTABLE.search(str(c.get("message") or ""))]


def _project(live: Any, desired: Any) -> Any:
    """`live` restricted to the keys `desired` has (lists whole): a replacement's readable diff shows
    only the fields the manifest writes, not every default the server added."""
    if isinstance(live, dict) and isinstance(desired, dict):
        return {key: _project(live[key], desired[key]) for key in desired if key in live}
    return live


def _replacement(ref: ObjectRef, body: Mapping[str, Any], live: Mapping[str, Any], rules: Sequence[IgnoreRule],
                 error: KubeError, conflict: str) -> Comparison:
    """A change the API refuses in place: the manifest as written against the live object's same fields."""
    desired_n, live_n = normalise(body, rules), normalise(live, rules)
    shown_live = _project(live_n, desired_n)
    message = str(error.body.get("message") or error)
    return Comparison(ref, desired_n, shown_live, dict(live), changed_paths(desired_n, shown_live), conflict,
                      immutable=message)


def compare(client: KubeClient, body: Mapping[str, Any], rules: Sequence[IgnoreRule] = (),
            *, force: bool = False, known: Mapping[str, Any] | Unseen | None = UNSEEN) -> Comparison:
    """Dry-run apply `body` (namespace already injected) and compare with the live object.

    `known` is the live object when the caller has just read it (a snapshot's LIST); otherwise it
    is read here. An answer 422 naming immutable fields is a `replace` (the stage decides whether it
    may do one).
    """
    ref = ref_of(body)
    metadata = body.get("metadata") or {}
    live = (client.get(str(body.get("apiVersion", "")), ref.kind, ref.name, metadata.get("namespace"))
            if known is UNSEEN else known)
    conflict = ""
    try:
        try:
            predicted = client.apply(body, dry_run=True, force=force)
        except KubeError as error:
            if error.status != 409 or force or live is None:
                raise
            conflict = str(error.body.get("message") or error)
            predicted = client.apply(body, dry_run=True, force=True)
    except KubeError as error:
        if live is not None and immutable_fields(error):
            return _replacement(ref, body, live, rules, error, conflict)
        raise
    result = compare_bodies(ref, predicted, live, rules)
    result.conflict = conflict
    return result
