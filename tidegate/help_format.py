"""`--help` without type noise after flags.

typer 0.29 renders its rich help with `TyperOption.display_type_rich`, which returns a placeholder
such as `<bool>` for every option, flags (`--wait`, `--json`, `--help` itself) included, although a
flag takes no value: `--wait <bool>` reads as if it wanted `--wait true`. Its plain formatter already
leaves flags alone; `quiet_flags` makes the rich one do the same, once for the whole application,
so no command has to remember a `metavar` per option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from typer.core import TyperOption

_original: Callable[[TyperOption, Any], str | None] = TyperOption.display_type_rich


def _display_type_rich(self: TyperOption, ctx: Any) -> str | None:
    """No placeholder for a flag (it takes no value); an option's own metavar or type otherwise."""
    if self.is_flag and self.metavar is None:
        return None
    return _original(self, ctx)


def quiet_flags() -> None:
    """Install the flag-aware placeholder on typer's options (idempotent)."""
    setattr(TyperOption, "display_type_rich", _display_type_rich)  # noqa: B010 - mypy refuses method assignment
