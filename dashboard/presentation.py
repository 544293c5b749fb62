"""How status words, diffs, resource trees and charts look in the pages (colours, icons, layout).

Pure functions over the API's models, used as Jinja globals and filters, so templates stay free of
logic and every status word has one colour, one icon and its own text everywhere.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from dashboard.schemas import PlanStageOut, StageStateOut

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
    "resynced": ("ok", "✔"),
}


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
class DiffRow:
    left: str
    right: str
    kind: str
    """`same`, `changed`, `removed` (only desired has it) or `added` (only live has it)."""


def side_by_side(desired: Any, live: Any) -> list[DiffRow]:
    """Desired (left) against live (right), line by line, with what differs marked."""
    left, right = pretty(desired).splitlines() or [""], pretty(live).splitlines() or [""]
    rows: list[DiffRow] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=left, b=right, autojunk=False).get_opcodes():
        if tag == "equal":
            rows.extend(DiffRow(a, a, "same") for a in left[i1:i2])
            continue
        a, b = left[i1:i2], right[j1:j2]
        for index in range(max(len(a), len(b))):
            la, rb = (a[index] if index < len(a) else ""), (b[index] if index < len(b) else "")
            kind = "changed" if index < len(a) and index < len(b) else ("removed" if index < len(a) else "added")
            rows.append(DiffRow(la, rb, kind))
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


@dataclass
class Node:
    """One level of the resource tree: children by name, and at a leaf what apply did and its health."""

    name: str
    children: dict[str, Node] = field(default_factory=dict)
    outcome: str | None = None
    health: str | None = None

    @property
    def leaves(self) -> int:
        return 1 if not self.children else sum(child.leaves for child in self.children.values())


def _path(stage: str, address: str) -> list[str]:
    """Tree levels of an address: workloads `group/kind/ns/name` → ns, kind, name; Ansible host/task;
    Terraform modules, then resource type, then name."""
    if stage == "workloads":
        parts = address.split("/")
        if len(parts) >= 4:
            return [parts[2] or "(cluster)", parts[1], "/".join(parts[3:])]
        return parts
    if stage == "configuration":
        return address.split("/", 1)
    parts = address.split(".")
    levels: list[str] = []
    while len(parts) > 2 and parts[0] == "module":
        levels.append(f"module.{parts[1]}")
        parts = parts[2:]
    return [*levels, parts[0], ".".join(parts[1:]) or parts[0]] if len(parts) > 1 else [*levels, *parts]


def resource_tree(stage: StageStateOut, plan: PlanStageOut | None, health: dict[str, str]) -> Node:
    """The resources the last sync planned or changed in one stage, as a tree with outcome and health."""
    root = Node(stage.stage.value)
    addresses = dict.fromkeys(change.address for change in (plan.changes if plan else []))
    addresses.update(dict.fromkeys(stage.outcomes))
    for address in addresses:
        node = root
        for level in _path(stage.stage.value, address):
            node = node.children.setdefault(level, Node(level))
        node.outcome = stage.outcomes.get(address, "unchanged" if stage.status == "succeeded" else None)
        node.health = health.get(address)
    return root


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    bar_width: float


def drift_chart(points: list[tuple[str, int]], width: int = 480, height: int = 120) -> Chart:
    """Bars of drift items per report over time, scaled to the tallest (drawn by the template as SVG)."""
    peak = max((n for _, n in points), default=0)
    step = width / max(len(points), 1)
    usable = height - 20
    bars = [Bar(x=index * step + 2, y=height - 14 - (n / peak * usable if peak else 0),
                height=(n / peak * usable if peak else 0), label=at, value=n)
            for index, (at, n) in enumerate(points)]
    return Chart(width, height, bars, peak, max(step - 4, 1.0))
