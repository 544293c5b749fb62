"""Fixtures shared by every test folder: the example config repo, pristine or as a mutable copy."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from tests.support.system import bootstrapped, system  # noqa: F401 - one running system for every suite

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = ROOT / "examples" / "infra-repo"


@pytest.fixture(scope="session")
def example_repo() -> Path:
    """The example repo as committed; tests must not write into it."""
    return EXAMPLE_REPO


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A private copy of the example repo that a test may mutate."""
    target = tmp_path / "infra-repo"
    shutil.copytree(EXAMPLE_REPO, target, symlinks=True)
    return target


Mutator = Callable[[str, st.DataObject, st.SearchStrategy[str]], str]


def _mutate(text: str, data: st.DataObject, fragments: st.SearchStrategy[str]) -> str:
    """Up to six random insertions, deletions or replacements of YAML-ish fragments."""
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        position = data.draw(st.integers(0, len(text)), label="position")
        choice = data.draw(st.sampled_from(["insert", "delete", "replace"]), label="kind")
        fragment = data.draw(st.one_of(fragments, st.text(max_size=8)), label="fragment")
        if choice == "insert":
            text = text[:position] + fragment + text[position:]
        elif choice == "delete":
            text = text[:position] + text[position + len(fragment):]
        else:
            text = text[:position] + fragment + text[position + 1:]
    return text


@pytest.fixture(scope="session")
def mutate_yaml() -> Mutator:
    """The mutation used by property tests that feed damaged YAML to the loader and renderers."""
    return _mutate


@pytest.fixture(autouse=True)
def _system_celery_app(request: pytest.FixtureRequest) -> None:
    """A test on the shared running system queues work on that system's broker, whichever Celery
    app an earlier test left as the process default."""
    if "system" in request.fixturenames:
        app = request.getfixturevalue("system").app
        app.set_default()
        app.set_current()


_SUITE_SECONDS: dict[str, float] = defaultdict(float)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI (`CI=true`, which .ci/run sets) a skip is a failure: every tool a test needs is
    installed there, so a skip could only hide a missing install step."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may be: {report.longrepr}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add each phase's time (setup included: shared fixtures count where first used) to its suite."""
    parts = Path(report.nodeid.split("::")[0]).parts
    suite = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
    _SUITE_SECONDS[suite] += report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The CI budget, visible: seconds per test folder (tests/e2e, tests/security, ...)."""
    if not _SUITE_SECONDS:
        return
    terminalreporter.write_sep("=", "seconds per suite")
    for suite, seconds in sorted(_SUITE_SECONDS.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{suite:<32} {seconds:8.1f}")
    terminalreporter.write_line(f"{'total':<32} {sum(_SUITE_SECONDS.values()):8.1f}")
