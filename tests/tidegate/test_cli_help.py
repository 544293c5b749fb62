"""`--help` of every command reads as a person would write it: flags carry no type placeholder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer.main
from typer._click.core import Command
from typer.testing import CliRunner

from tidegate.cli import app


def command_paths(command: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command of the application, groups included, as the words that name it."""
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from command_paths(sub, (*path, name))


PATHS = list(command_paths(typer.main.get_command(app)))


def test_the_walk_finds_the_commands_people_use() -> None:
    assert {("status",), ("history",), ("show",), ("sync",), ("resume",), ("repo", "add")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "tidegate")
def test_help_shows_no_type_placeholder_after_a_flag(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output and "BOOLEAN" not in result.output, result.output
