"""How status words, diffs, resource trees, kind icons and times look in the pages (colours, icons, layout).

Pure functions over the API's models, used as Jinja globals and filters, so templates stay free of
logic and every status word has one colour, one icon and its own text everywhere.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from dashboard.schemas import DriftItemOut, ResourceOut, ResourceTreeOut
from store.redaction import redact

BADGES: dict[str, tuple[str, str]] = {
    # environment sync status
    "Synced": ("ok", "✔"), "OutOfSync": ("warn", "↻"), "AwaitingApproval": ("info", "⚑"),
    "Drifted": ("drift", "≠"), "Unknown": ("muted", "?"),
    # health
    "Healthy": ("ok", "♥"), "Progressing": ("warn", "◔"), "Degraded": ("bad", "✖"), "Missing": ("bad", "⊘"),
    "Suspended": ("muted", "‖"),
    # sync lifecycle and stage status
    "pending": ("muted", "…"), "planning": ("warn", "◔"), "awaiting_approval": ("info", "⚑"),
    "approved": ("info", "✔"), "applying": ("warn", "◔"), "succeeded": ("ok", "✔"), "failed": ("bad", "✖"),
    "superseded": ("muted", "↷"), "skipped": ("muted", "○"),
    # change actions and apply results
    "create": ("ok", "+"), "update": ("warn", "~"), "replace": ("bad", "±"), "delete": ("bad", "-"),
    "no-op": ("muted", "="), "created": ("ok", "+"), "configured": ("warn", "~"), "unchanged": ("muted", "="),
    "deleted": ("bad", "-"),
    # drift
    "open": ("drift", "≠"), "resolved": ("ok", "✔"), "accepted": ("muted", "✔"), "healed": ("ok", "✔"),
    "resynced": ("ok", "✔"), "healing": ("warn", "⟲"),
    # an Ansible host's last result
    "ok": ("ok", "✔"), "unreachable": ("bad", "⊘"),
}

TOKEN = re.compile(r"\s+|\S+")
"""Words (anything between blanks, so `198.51.100.0/24` is one) and runs of blanks: what a changed line
is compared in."""


def badge(word: object) -> tuple[str, str, str]:
    """(css class, icon, text) of a status word; unknown words are shown plainly."""
    text = "—" if word is None else str(word)
    css, icon = BADGES.get(text, ("muted", "•"))
    return css, icon, text


def pretty(value: Any) -> str:
    """A JSON value as people read it: strings bare, structures indented; absent as `(absent)`."""
    if value is None:
        return "(absent)"
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@dataclass(frozen=True)
class Part:
    """A run of characters of one side of a diff row; `changed` when the other side differs there."""

    text: str
    changed: bool


@dataclass(frozen=True)
class DiffRow:
    left: list[Part]
    right: list[Part]
    kind: str
    """`same`, `changed`, `removed` (only desired has it) or `added` (only live has it)."""


def _whole(text: str, changed: bool) -> list[Part]:
    return [Part(text, changed)] if text else []


def _one_side(text: str) -> list[Part]:
    """A line only one side has: marked from its first character, its indentation left plain."""
    body = text.lstrip()
    return [*_whole(text[:len(text) - len(body)], False), *_whole(body, True)]


def _parts(a: str, b: str) -> tuple[list[Part], list[Part]]:
    """Both lines cut into runs, the words that differ marked (what the eye should land on); words, not
    characters, so `256` against `4096` marks both numbers rather than the digits they do not share."""
    ta, tb = TOKEN.findall(a), TOKEN.findall(b)
    left: list[Part] = []
    right: list[Part] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ta, b=tb, autojunk=False).get_opcodes():
        left.extend(_whole("".join(ta[i1:i2]), tag != "equal"))
        right.extend(_whole("".join(tb[j1:j2]), tag != "equal"))
    return left, right


def side_by_side(desired: Any, live: Any) -> list[DiffRow]:
    """Desired (left) against live (right), line by line, with the lines and characters that differ marked."""
    left, right = pretty(desired).splitlines() or [""], pretty(live).splitlines() or [""]
    rows: list[DiffRow] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=left, b=right, autojunk=False).get_opcodes():
        if tag == "equal":
            rows.extend(DiffRow(_whole(a, False), _whole(a, False), "same") for a in left[i1:i2])
            continue
        a, b = left[i1:i2], right[j1:j2]
        for index in range(max(len(a), len(b))):
            if index < len(a) and index < len(b):
                rows.append(DiffRow(*_parts(a[index], b[index]), "changed"))
            elif index < len(a):
                rows.append(DiffRow(_one_side(a[index]), [], "removed"))
            else:
                rows.append(DiffRow([], _one_side(b[index]), "added"))
    return rows


def diff_line_class(line: str) -> str:
    stripped = line.lstrip()
    if stripped.startswith("+"):
        return "add"
    if stripped.startswith("-"):
        return "del"
    if stripped.startswith("~"):
        return "chg"
    return ""


def short_time(at: datetime | None, now: datetime | None = None) -> str:
    """A compact timestamp that fits one table cell: `Nov 20 09:00`, with the year when it is not this one."""
    if at is None:
        return "—"
    this_year = (now or datetime.now(UTC)).year
    return at.strftime("%b %d %H:%M") if at.year == this_year else at.strftime("%Y-%m-%d %H:%M")


def full_time(at: datetime | None) -> str:
    """The exact time, for a title attribute."""
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at is not None else ""


def took(start: datetime | None, end: datetime | None) -> str:
    """How long from start to end in words people scan (`42 s`, `3 min 5 s`, `2 h 4 min`); empty if unknown."""
    if start is None or end is None:
        return ""
    seconds = int((end - start).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@dataclass(frozen=True)
class Pager:
    """Which slice of a long list a page shows (1-based `number`), and whether there are pages around it."""

    number: int
    size: int
    total: int

    @property
    def count(self) -> int:
        return max((self.total + self.size - 1) // self.size, 1)

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def first_shown(self) -> int:
        return min(self.offset + 1, self.total)

    @property
    def last_shown(self) -> int:
        return min(self.offset + self.size, self.total)


def pager(total: int, wanted: int, size: int) -> Pager:
    """The page asked for, kept within the pages that exist (a stale link lands on the last one)."""
    return Pager(number=min(max(wanted, 1), max((total + size - 1) // size, 1)), size=size, total=total)


@dataclass(frozen=True)
class ObjectDrift:
    """What drifted on one object (a Kubernetes object, a Terraform resource, an Ansible host/task)."""

    stage: str
    address: str
    items: list[DriftItemOut]

    @property
    def fields(self) -> str:
        """The drifted fields, for the collapsed summary line."""
        shown = [item.field or "(whole object)" for item in self.items[:4]]
        return ", ".join(shown) + (f" and {len(self.items) - 4} more" if len(self.items) > 4 else "")


def by_object(items: list[DriftItemOut]) -> list[ObjectDrift]:
    """A report's items grouped per object, in the report's order (stage, then address)."""
    groups: dict[tuple[str, str], list[DriftItemOut]] = {}
    for item in items:
        groups.setdefault((item.stage.value, item.address), []).append(item)
    return [ObjectDrift(stage, address, found) for (stage, address), found in groups.items()]


KIND_ICONS: dict[str, tuple[str, str]] = {
    # Kubernetes kinds: (abbreviation, family); the family picks the icon's shape and colour
    "Deployment": ("dep", "workload"), "StatefulSet": ("sts", "workload"), "DaemonSet": ("ds", "workload"),
    "ReplicaSet": ("rs", "workload"), "Pod": ("pod", "workload"), "Job": ("job", "workload"),
    "CronJob": ("cj", "workload"), "Service": ("svc", "network"), "Ingress": ("ing", "network"),
    "NetworkPolicy": ("np", "network"), "ConfigMap": ("cm", "config"), "Secret": ("sec", "config"),
    "PersistentVolumeClaim": ("pvc", "storage"), "PersistentVolume": ("pv", "storage"),
    "Namespace": ("ns", "cluster"), "CustomResourceDefinition": ("crd", "cluster"),
    "ServiceAccount": ("sa", "access"), "Role": ("role", "access"), "RoleBinding": ("rb", "access"),
    "ClusterRole": ("cr", "access"), "ClusterRoleBinding": ("crb", "access"),
    "HorizontalPodAutoscaler": ("hpa", "workload"), "PodDisruptionBudget": ("pdb", "workload"),
    # an Ansible host
    "host": ("host", "host"),
}


def kind_icon(kind: str) -> tuple[str, str]:
    """(abbreviation, family) of a kind: Kubernetes kinds by name, Terraform resources as `tf` (data
    sources `data`), anything else by its first letters."""
    if kind in KIND_ICONS:
        return KIND_ICONS[kind]
    if kind.startswith("data."):
        return "data", "cloud"
    if "_" in kind:
        return "tf", "cloud"
    return kind[:3].lower() or "?", "other"


@dataclass(frozen=True)
class Branch:
    """Resources of one workload, Terraform module or none (hosts, the root module's resources)."""

    name: str
    resources: list[ResourceOut]

    @property
    def worst(self) -> str:
        """The branch's sync state at a glance: Missing before OutOfSync before Synced."""
        words = {r.sync for r in self.resources}
        return next((w for w in ("Missing", "OutOfSync") if w in words), "Synced")


@dataclass(frozen=True)
class StageTree:
    stage: str
    source: str
    branches: list[Branch]

    @property
    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for branch in self.branches:
            for resource in branch.resources:
                found[resource.sync] = found.get(resource.sync, 0) + 1
        return found


BRANCH_OF_STAGE = {"infrastructure": "(root module)", "configuration": "", "workloads": "(no workload)"}


def live_tree(tree: ResourceTreeOut) -> list[StageTree]:
    """The tree as the environment page draws it: per stage (pipeline order), branches by group."""
    out = []
    for stage, source in tree.sources.items():
        branches: dict[str, list[ResourceOut]] = {}
        for resource in tree.resources:
            if resource.stage.value == stage:
                branches.setdefault(resource.group or BRANCH_OF_STAGE.get(stage, ""), []).append(resource)
        out.append(StageTree(stage, source, [Branch(name, found) for name, found in branches.items()]))
    return out


def as_yaml(body: Any) -> str:
    """A live object as YAML people read (keys in the API's order), every registered secret value
    redacted as in the logs; Secret data was masked by the provider already."""
    if body is None:
        return ""
    return redact(yaml.safe_dump(body, sort_keys=False, default_flow_style=False, allow_unicode=True))
