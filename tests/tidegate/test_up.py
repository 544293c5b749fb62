"""`tidegate up --exit-when-synced`: when every environment has settled at the repository's head as
it was when `up` started, and when a sync of that head failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from repo_schema.loader import LoadedRepo, load_repo
from tests.reconciler.conftest import EXAMPLE
from tests.support.git_server import commit_and_push, files_of, make_bare_repo
from tidegate.client import EnvironmentView
from tidegate.up import change_of, git_repository, head_of, settled, verdict

OLD, HEAD = "a" * 40, "b" * 40


@pytest.fixture(scope="module")
def example() -> LoadedRepo:
    """staging (no approval), then production (approval required)."""
    return load_repo(EXAMPLE)


def view(name: str, status: str, *, revision: str | None = HEAD, health: str = "Healthy",
         last: str | None = "succeeded", last_revision: str | None = HEAD, message: str = "") -> EnvironmentView:
    return EnvironmentView("infra", name, revision, status, health, False, 0, 7 if last else None, last, message,
                           last_revision)


SYNCED_AT_HEAD = view("staging", "Synced")
AWAITING_HEAD = view("production", "AwaitingApproval", revision=OLD, last="awaiting_approval")


@pytest.mark.parametrize(
    "views",
    [
        pytest.param([view("staging", "Synced", revision=OLD, last_revision=OLD), AWAITING_HEAD],
                     id="synced-at-an-older-revision-while-new-commits-wait"),
        pytest.param([SYNCED_AT_HEAD, view("production", "AwaitingApproval", revision=None,
                                           last="awaiting_approval", last_revision=OLD)],
                     id="awaiting-approval-of-an-older-revision"),
        pytest.param([view("staging", "Synced", last="applying"), AWAITING_HEAD], id="synced-at-head-but-applying"),
        pytest.param([view("staging", "Synced", health="Progressing"), AWAITING_HEAD], id="synced-at-head-not-healthy"),
        pytest.param([view("staging", "OutOfSync", revision=OLD, last="failed", last_revision=OLD,
                           message="old failure"), AWAITING_HEAD],
                     id="a-failed-sync-of-an-older-revision-before-the-heads-sync"),
        pytest.param([SYNCED_AT_HEAD], id="an-environment-not-yet-recorded"),
    ],
)
def test_an_environment_that_has_not_settled_at_the_head_keeps_up_waiting(
    example: LoadedRepo, views: list[EnvironmentView],
) -> None:
    assert settled(example, views, HEAD) is None


def test_synced_at_the_head_or_awaiting_approval_of_a_sync_of_it_is_settled(example: LoadedRepo) -> None:
    state = settled(example, [SYNCED_AT_HEAD, AWAITING_HEAD], HEAD)

    assert state is not None and state.ok


def test_a_failed_sync_of_the_head_ends_the_wait_naming_the_environment(example: LoadedRepo) -> None:
    failed = view("staging", "OutOfSync", revision=OLD, last="failed", message="configuration plan failed")

    state = settled(example, [failed, view("production", "OutOfSync", revision=None, last=None,
                                            last_revision=None)], HEAD)

    assert state is not None and not state.ok
    assert [environment.name for environment in state.failed] == ["staging"]
    assert f"a sync of {HEAD[:12]} failed" in verdict(state, HEAD)
    assert "staging (sync #7: configuration plan failed)" in verdict(state, HEAD)


def test_the_head_up_waits_for_is_the_branchs_commit_when_up_starts(tmp_path: Path) -> None:
    bare = tmp_path / "infra.git"
    first = make_bare_repo(bare, files_of(EXAMPLE))
    assert head_of(str(bare), "main") == first

    second = commit_and_push(bare, {"README.md": "new commit\n"}, "a commit that waits")

    assert head_of(str(bare), "main") == second != first


def test_a_seeded_repository_s_head_is_its_seed_commit(tmp_path: Path) -> None:
    url, branch = git_repository(EXAMPLE, tmp_path / "data")

    head = head_of(url, branch)

    assert len(head) == 40 and head == head_of(url, "HEAD")


def test_up_prints_a_line_when_an_environment_changes_not_when_its_observation_ages() -> None:
    view = EnvironmentView("infra", "staging", "a" * 40, "Synced", "Healthy", False, 0, 1, "succeeded",
                           observed_at="2026-12-07T08:00:00+00:00")
    older = EnvironmentView("infra", "staging", "a" * 40, "Synced", "Healthy", False, 0, 1, "succeeded",
                            observed_at="2026-12-07T07:59:01+00:00")
    never = EnvironmentView("infra", "staging", "a" * 40, "Synced", "Unknown", False, 0, 1, "succeeded")
    drifted = EnvironmentView("infra", "staging", "a" * 40, "Drifted", "Missing", False, 1, 1, "succeeded",
                              observed_at="2026-12-07T08:00:00+00:00")
    assert change_of(view) == change_of(older)
    assert change_of(view) != change_of(never)
    assert change_of(view) != change_of(drifted)
