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


TYPE_NOISE = ("<str>", "<int>", "<float>", "<path>", "<file>", "<bool>")


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "tidegate")
def test_help_shows_what_to_type_not_a_python_type_name(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert not [noise for noise in TYPE_NOISE if noise in result.output], result.output


@pytest.mark.parametrize("path,option,shown", [
    pytest.param(("sync",), "--revision", "SHA", id="sync-revision"),
    pytest.param(("sync",), "--timeout", "SECONDS", id="sync-timeout"),
    pytest.param(("history",), "--output", "FORMAT", id="history-output"),
    pytest.param(("history",), "--limit", "N", id="history-limit"),
    pytest.param(("logs",), "--output", "FORMAT", id="logs-output"),
    pytest.param(("repo", "add"), "--token-env", "VAR", id="repo-add-token-env"),
    pytest.param(("repo", "add"), "--ssh-key", "FILE", id="repo-add-ssh-key"),
    pytest.param(("repo", "add"), "--host", "github|gitlab|gitea|generic", id="repo-add-host-choices"),
    pytest.param(("repo", "add"), "--branch", "BRANCH", id="repo-add-branch-by-name"),
])
def test_an_option_shows_a_placeholder_that_says_what_its_value_is(path: tuple[str, ...], option: str,
                                                                    shown: str) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    rows = [line.strip("│ ").split() for line in result.output.splitlines() if line.startswith("│")]
    words = next(words for words in rows if words and words[0] == option)[1:]
    assert (words[1] if words[0].startswith("-") else words[0]) == shown, words  # after a short alias (-o)
