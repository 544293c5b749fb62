"""`tidegate history / show / status / resume` say what happened ("Honest status"): the commit's
subject, who approved, a rollback as `rollback`, diffs on request, documents for scripts, and a
resume that brings a rolled-back environment back to its desired revision.

In-process: the CLI's client is a `LocalClient` over a store whose queue records what would reach
the broker; the config repo is real git (a rollback resolves its SHA there)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from reconciler.runtime import Services
from store import (
    Approval,
    ApprovalDecision,
    ApprovalSource,
    Database,
    Environment,
    Health,
    Plan,
    Repository,
    Revision,
    SecretBox,
    Stage,
    StageStatus,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    SyncTrigger,
)
from tests.dashboard.world import make_config_repo
from tests.support.doubles import NoTargets, RecordingQueue
from tests.support.redis_server import start_redis
from tidegate import cli_reconcile
from tidegate.cli import app
from tidegate.client import LocalClient
from tidegate.redis_server import EmbeddedRedis, redis_client

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PLAN = {
    "infrastructure": {"summary": "+0 ~1 -0", "fingerprint": "f-infra", "changes": [
        {"address": "aws_security_group.nodes", "action": "update",
         "diff": "  ~ ingress.0.cidr_blocks\n    - 198.51.100.0/25\n    + 198.51.100.0/24"}]},
    "configuration": {"deferred": True, "summary": "planned after infrastructure applies", "changes": [],
                      "fingerprint": "f-conf"},
}
"""An older sync's plan: configuration deferred until infrastructure applied, never rewritten."""


@dataclass
class Story:
    services: Services
    queue: RecordingQueue
    old: str
    head: str
    repository_id: int


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def story(tmp_path: Path, redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Story]:
    """staging at the head; sync #1 (of the older commit, approved by paula) and #2 (the head) succeeded."""
    repo_path, old, head = make_config_repo(tmp_path)
    database = Database.embedded(tmp_path / "data")
    database.upgrade()
    queue = RecordingQueue()
    services = Services(database=database, secrets=SecretBox(SecretBox.generate_key()),
                        redis=redis_client(redis_server.client_url), targets=NoTargets(), data_dir=tmp_path / "data",
                        queue=queue)
    with database.session() as session:
        repository_id = _staging(session, repo_path, old, head)
    monkeypatch.setattr(cli_reconcile, "client", lambda: LocalClient(services, login="ops"))
    yield Story(services, queue, old, head, repository_id)
    database.dispose()


def _staging(session: Session, repo_path: Path, old_sha: str, head_sha: str) -> int:
    repo = Repository(name="infra", url=str(repo_path), head_sha=head_sha)
    session.add(repo)
    session.flush()
    old = Revision(repository_id=repo.id, ref="main", sha=old_sha, author="Bob Builder <bob@example.com>",
                   message="Bootstrap staging and production\n\nThe body is not shown.", committed_at=T0)
    head = Revision(repository_id=repo.id, ref="main", sha=head_sha, author="Alice Author <alice@example.com>",
                    message="Scale web to three replicas", committed_at=T0 + timedelta(hours=1))
    session.add_all([old, head])
    session.flush()
    staging = Environment(repository_id=repo.id, name="staging", desired_revision_id=head.id,
                          synced_revision_id=head.id, health=Health.HEALTHY)
    session.add(staging)
    session.flush()
    plan = Plan(environment_id=staging.id, revision_id=old.id, fingerprint="a" * 64, stages=PLAN)
    session.add(plan)
    session.flush()
    first = Sync(environment_id=staging.id, revision_id=old.id, plan_id=plan.id, trigger=SyncTrigger.POLL,
                 status=SyncLifecycle.SUCCEEDED, created_at=T0, finished_at=T0 + timedelta(minutes=3, seconds=7))
    first.stage_results = [SyncStageResult(stage=stage, status=StageStatus.SUCCEEDED, summary={"counts": {}})
                           for stage in (Stage.INFRASTRUCTURE, Stage.CONFIGURATION)]
    session.add(first)
    session.flush()
    session.add_all([
        Approval(plan_fingerprint=plan.fingerprint, sync_id=first.id, user="paula", decision=ApprovalDecision.APPROVE,
                 source=ApprovalSource.CLI, created_at=T0 + timedelta(minutes=1)),
        Sync(environment_id=staging.id, revision_id=head.id, trigger=SyncTrigger.POLL, status=SyncLifecycle.SUCCEEDED,
             created_at=T0 + timedelta(hours=1), finished_at=T0 + timedelta(hours=1, seconds=42))])
    return repo.id


def tidegate(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def rolled_back(story: Story) -> int:
    """`tidegate sync staging --revision OLD`, and the worker then syncing it (staging is now behind)."""
    said = tidegate("sync", "staging", "--revision", story.old[:12])
    assert "auto-sync paused until `tidegate resume`" in said
    with story.services.database.session() as session:
        sync = session.get_one(Sync, 3)
        sync.status, sync.finished_at = SyncLifecycle.SUCCEEDED, sync.created_at + timedelta(seconds=30)
        sync.environment.synced_revision_id = sync.revision_id
    return 3


def test_history_names_the_commit_the_approver_and_a_rollback(story: Story) -> None:
    rollback = rolled_back(story)
    lines = tidegate("history", "staging").splitlines()
    assert lines[0].split() == ["SYNC", "CREATED", "REVISION", "TRIGGER", "STATUS", "TOOK", "COMMIT", "APPROVED", "BY",
                                "MESSAGE"]
    rows = {int(line.split()[0][1:]): line for line in lines[1:]}
    assert rows[rollback].split()[3:6] == [story.old[:12], "rollback", "succeeded"]
    assert "Bootstrap staging and production" in rows[rollback] and "The body" not in rows[rollback]
    assert " poll " in rows[2] and "Scale web to three replicas" in rows[2] and rows[2].endswith("-")
    assert "3m07s  Bootstrap staging and production" in rows[1] and rows[1].endswith("paula")


def test_show_says_who_approved_and_prints_the_diffs_unless_asked_not_to(story: Story) -> None:
    shown = tidegate("show", "1")
    assert "approved by paula at 2026-11-20 09:01:00 UTC" in shown
    assert ("    update   aws_security_group.nodes\n"
            "          ~ ingress.0.cidr_blocks\n"
            "            - 198.51.100.0/25\n"
            "            + 198.51.100.0/24\n") in shown
    assert "configuration: planned after infrastructure applied\n" in shown and "applies" not in shown
    plain = tidegate("show", "2")
    assert "approved by" not in plain and "ingress" not in tidegate("show", "1", "--no-diff")


@pytest.mark.parametrize("output,load", [pytest.param("json", json.loads, id="json"),
                                         pytest.param("yaml", yaml.safe_load, id="yaml")])
def test_status_history_and_show_print_one_document_for_scripts(story: Story, output: str,
                                                                 load: Callable[[str], Any]) -> None:
    rolled_back(story)
    [environment] = load(tidegate("status", "-o", output))
    assert (environment["name"], environment["sync_status"], environment["paused"]) == ("staging", "OutOfSync", True)
    history = load(tidegate("history", "staging", "--output", output))
    assert [(h["id"], h["trigger"], h["rollback"]) for h in history] == [(3, "manual", True), (2, "poll", False),
                                                                          (1, "poll", False)]
    assert history[2]["approvers"] == ["paula"] and history[2]["commit_subject"] == "Bootstrap staging and production"
    shown = load(tidegate("show", "1", "-o", output))
    assert shown["approved_at"] == "2026-11-20T09:01:00+00:00" and shown["plan"]["infrastructure"]["changes"]


def test_wide_output_adds_columns(story: Story) -> None:
    status = tidegate("status", "-o", "wide").splitlines()
    assert status[0].split()[:5] == ["REPOSITORY", "ENVIRONMENT", "REVISION", "LAST", "SYNC"]
    assert status[1].split()[:4] == ["infra", "staging", story.head[:12], story.head[:12]]
    history = tidegate("history", "staging", "-o", "wide").splitlines()
    assert "FINGERPRINT" in history[0] and f" {'a' * 16} " in history[-1]


def test_the_deprecated_status_json_still_prints_one_object_per_line(story: Story) -> None:
    [line] = tidegate("status", "--json").splitlines()
    assert json.loads(line)["name"] == "staging"


def test_resume_after_a_rollback_queues_the_sync_back_to_the_desired_revision(story: Story) -> None:
    rolled_back(story)
    story.queue.sent.clear()
    said = tidegate("resume", "staging")
    assert said.strip() == f"staging: auto-sync resumed; sync #4 queued to bring staging back to {story.head[:12]}"
    assert story.queue.sent == [("plan", 4), ("poll", story.repository_id)]
    assert "auto-sync paused" not in tidegate("status")


def test_resume_of_an_environment_at_its_desired_revision_queues_no_sync(story: Story) -> None:
    assert tidegate("resume", "staging").strip() == "staging: auto-sync resumed"
    assert story.queue.sent == [("poll", story.repository_id)]
