"""What `tidegate status|history|show|diff|drift|logs` print, whole, compared with golden files
(tests/tidegate/golden/): the terminal form at a fixed width (COLUMNS=120, no colour) and the
`-o json` documents, in-process and over the real API. The world is fixed (tests.support.cli_world:
constant times, revisions and ids; the clock the ages are computed from is set), so the only thing
normalised is the example repository's commit SHA in `diff`, which changes with the example.

`TIDEGATE_UPDATE_GOLDEN=1 pytest tests/tidegate/test_cli_golden.py` rewrites the golden files;
review the change (`git diff tests/tidegate/golden`) as you would review the CLI's output.

Besides matching, the terminal forms are checked for what issue 16 asks of them: no line wider than
the terminal and no word cut at a line end (long cells wrap at words).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.observations import NOT_LOOKED
from reconciler.runtime import Services
from tests.support.cli_world import FAILURE, HEAD_SUBJECT, NOW, api_client
from tidegate import cli_diff, cli_drift, cli_logs, cli_reconcile
from tidegate.cli import app
from tidegate.client import Client, LocalClient

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TIDEGATE_UPDATE_GOLDEN") == "1"
WIDTH = 120
ClientOf = Callable[[Services], Iterator[Client]]


def in_process(services: Services) -> Iterator[Client]:
    yield LocalClient(services, login="ops")


def over_http(services: Services) -> Iterator[Client]:
    yield from api_client(services, "vic")  # a viewer: everything shown here is only read


CLIENTS = [pytest.param(in_process, id="in-process"), pytest.param(over_http, id="over-http")]


def tidegate(connected: Client, *args: str) -> str:
    """Run the CLI with `connected` as its client and the clock at `NOW`; stdout, then stderr and a
    non-zero exit code when there are any, as one text."""
    with pytest.MonkeyPatch.context() as patch:
        for module in (cli_reconcile, cli_drift, cli_logs, cli_diff):
            patch.setattr(module, "client", lambda: connected)
        for module in (cli_reconcile, cli_drift):
            patch.setattr(module, "clock", lambda: NOW)
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    text = result.stdout
    if result.stderr:
        text += f"--- stderr\n{result.stderr}"
    if result.exit_code:
        text += f"--- exit {result.exit_code}\n"
    return text


def assert_golden(name: str, text: str) -> None:
    """`text` is the golden file `name` (rewritten instead with TIDEGATE_UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with TIDEGATE_UPDATE_GOLDEN=1 and review it"
    expected = path.read_text()
    assert text.splitlines() == expected.splitlines(), f"{name}: TIDEGATE_UPDATE_GOLDEN=1 rewrites it"
    assert text == expected


LONG_TEXTS = [FAILURE.splitlines()[0], HEAD_SUBJECT, NOT_LOOKED]
"""Texts of the world longer than a table cell: where they are shown, they wrap at words."""


def assert_readable(text: str) -> None:
    """No line wider than the terminal, and no word cut: every word of a long text that is shown
    appears whole, up to where it may be cut on purpose (at a word, marked `…`)."""
    lines = text.splitlines()
    assert all(len(line) <= WIDTH for line in lines), [line for line in lines if len(line) > WIDTH]
    shown = set(text.split())
    for long_text in LONG_TEXTS:
        words = long_text.split()
        if sum(word in shown for word in words) * 2 <= len(words):
            continue  # not shown here
        whole = next((i for i, word in enumerate(words) if word not in shown), len(words))
        assert whole == len(words) or f"{words[whole].rstrip(' ,;:')}…" in shown, \
            f"{words[whole]!r} of {long_text!r} is cut"


COMMANDS = [
    pytest.param(["status"], "status", id="status"),
    pytest.param(["history", "staging"], "history", id="history"),
    pytest.param(["show", "1"], "show", id="show"),
    pytest.param(["show", "4"], "show-awaiting-approval", id="show-awaiting-approval"),
    pytest.param(["logs", "1"], "logs", id="logs"),
    pytest.param(["drift", "staging"], "drift", id="drift"),
    pytest.param(["drift", "staging", "--all"], "drift-all", id="drift-all"),
]


@pytest.fixture(params=CLIENTS)
def connected(request: pytest.FixtureRequest, cli_world: Services) -> Iterator[Client]:
    yield from request.param(cli_world)


@pytest.mark.parametrize("args,name", COMMANDS)
def test_the_terminal_form_is_the_golden_one(connected: Client, args: list[str], name: str) -> None:
    text = tidegate(connected, *args)
    assert_golden(f"{name}.txt", text)
    assert_readable(text)


@pytest.mark.parametrize("args,name", COMMANDS)
def test_the_json_document_is_the_golden_one(connected: Client, args: list[str], name: str) -> None:
    assert_golden(f"{name}.json", tidegate(connected, *args, "-o", "json"))


@pytest.fixture(params=CLIENTS)
def diff_connected(request: pytest.FixtureRequest, diff_staging: tuple[Services, str]) -> Iterator[tuple[Client, str]]:
    services, head = diff_staging
    for connected in request.param(services):
        yield connected, head


@pytest.mark.parametrize("output,name", [pytest.param([], "diff.txt", id="terminal"),
                                         pytest.param(["-o", "json"], "diff.json", id="json")])
def test_the_diff_is_the_golden_one(diff_connected: tuple[Client, str], output: list[str], name: str) -> None:
    connected, head = diff_connected
    text = tidegate(connected, "diff", "staging", *output)
    assert_golden(name, text.replace(head, "<HEAD>").replace(head[:12], "<HEAD12>"))
    assert_readable(text)
