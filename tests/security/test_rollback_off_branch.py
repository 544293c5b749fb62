"""A rollback is an operator's power to apply an older commit without a new review; it must never
apply a commit nobody merged. The Git mirror holds every ref of the remote, pull request heads
included, so "a commit the mirror has" is not "a commit of the branch"."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from store import Repository
from tests.dashboard.conftest import make_app
from tests.dashboard.world import World
from tests.reconciler.test_commands import OPERATOR, fresh, template, trace

__all__ = ["fresh", "template"]  # the command tests' fixtures: an example repo with two commits, copied per test


def test_a_rollback_to_a_commit_off_the_branch_is_refused_naming_the_field(
        fresh: Callable[[], World], template: tuple[World, str]) -> None:
    """The mirror holds every ref of the remote (pull request heads too): a commit nobody merged
    must not be applied by a "rollback"."""
    world = fresh()
    repo = Path(template[0].services.data_dir).parent / "infra-repo"
    tree = _git(repo, "rev-parse", "HEAD^{tree}")
    stray = _git(repo, "commit-tree", tree, "-p", world.head_sha, "-m", "an unmerged change")
    _git(repo, "update-ref", f"refs/pull/7/head-{stray[:8]}", stray)
    with TestClient(make_app(world.services)) as api:
        answer = api.post("/api/v1/environments/infra/staging/sync", headers=world.auth(OPERATOR),
                          json={"revision": stray})
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["detail"]
    assert problem["loc"][-1] == "revision" and "not a commit of infra's branch main" in problem["msg"]
    left = trace(world, set())
    assert (left.audit, left.queued) == ([], [])


def test_a_rollback_to_a_recorded_commit_a_force_push_removed_from_the_branch_is_refused(
        fresh: Callable[[], World], template: tuple[World, str]) -> None:
    """The store still knows the commit (it was polled, even applied); the branch no longer has it."""
    world = fresh()
    repo = Path(template[0].services.data_dir).parent / "infra-repo"
    tree = _git(repo, "rev-parse", "HEAD^{tree}")
    rewritten = _git(repo, "commit-tree", tree, "-p", world.old_sha, "-m", "history rewritten")
    _git(repo, "update-ref", "refs/heads/main", rewritten)
    with world.services.database.session(write=True) as session:  # as the poll that saw the force-push
        session.scalars(select(Repository)).one().head_sha = rewritten
    with TestClient(make_app(world.services)) as api:
        answer = api.post("/api/v1/environments/infra/staging/sync", headers=world.auth(OPERATOR),
                          json={"revision": world.head_sha})
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["detail"]
    assert problem["loc"][-1] == "revision" and "not a commit of infra's branch main" in problem["msg"]
    assert trace(world, set()).queued == []


def _git(repo: Path, *args: str) -> str:
    identity = {"GIT_AUTHOR_NAME": "Mallory", "GIT_AUTHOR_EMAIL": "mallory@example.com",
                "GIT_COMMITTER_NAME": "Mallory", "GIT_COMMITTER_EMAIL": "mallory@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **identity}, check=True, capture_output=True,
                          text=True).stdout.strip()
