"""Validation issues: every problem Tidegate finds in a config repo points at a file, line and field.

One type serves the schema, the YAML reader, rendering and manifest validation, so that
`tidegate validate`, the sync record and the pull request comment print problems the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Location:
    """A position in a file of the checkout; line and column count from 1, as editors do."""

    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def format_field(path: FieldPath) -> str:
    """Render a field path the way users write it: `spec.workloads[0].path`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "<document>"


@dataclass(frozen=True, order=True)
class Issue:
    """One problem, printed as `file:line:col: field.path: message`."""

    location: Location
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.field}: {self.message}"


class InvalidRepo(Exception):
    """Raised with every issue found, never just the first: users fix a repo in one round."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: list[Issue] = sorted(set(issues))
        super().__init__("\n".join(str(issue) for issue in self.issues))


def raise_if_any(issues: Sequence[Issue]) -> None:
    """Stop a run that found problems, carrying all of them."""
    if issues:
        raise InvalidRepo(issues)
