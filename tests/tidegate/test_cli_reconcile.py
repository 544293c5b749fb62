"""`tidegate status / history / show / approve / sync` as users run them: real processes over a data
directory and a real Redis broker (the queued task is read back from the broker's queue)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from store import (
    AuditEvent,
    Database,
    Environment,
    Health,
    Plan,
    Repository,
    Revision,
    Role,
    RoleBinding,
    Sync,
    SyncLifecycle,
    SyncTrigger,
    User,
)
from tests.reconciler.conftest import EXAMPLE, add_people, make_repo_by
from tests.support.git_server import files_of
from tests.support.redis_server import start_redis
from tidegate.cli_reconcile import duration, first_line, print_sync
from tidegate.client import StageView, SyncView
from tidegate.redis_server import EmbeddedRedis, redis_client


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def data_dir(tmp_path: Path, redis_server: EmbeddedRedis) -> Path:
    """A store with staging Synced and production awaiting approval of sync #2."""
    redis_client(redis_server.client_url).flushall()
    data = tmp_path / "data"
    database = Database.embedded(data)
    database.upgrade()
    head = make_repo_by(tmp_path / "infra.git", files_of(EXAMPLE), "Alice <alice@example.com>")
    with database.session() as session:
        repository = Repository(name="infra", url=str(tmp_path / "infra.git"))
        session.add(repository)
        session.flush()
        add_people(session, "platform-leads", "alice", "bob")
        session.add_all([User(name="ops"), RoleBinding(subject="user:ops", role=Role.ADMIN),
                         User(name="mallory"), RoleBinding(subject="user:mallory", role=Role.APPROVER)])
        revision = Revision(repository_id=repository.id, ref="main", sha=head, author="Alice <alice@example.com>",
                            message="scale web", committed_at=datetime(2026, 11, 1, tzinfo=UTC))
        session.add(revision)
        session.flush()
        staging = Environment(repository_id=repository.id, name="staging", synced_revision_id=revision.id,
                              desired_revision_id=revision.id, health=Health.HEALTHY)
        production = Environment(repository_id=repository.id, name="production", desired_revision_id=revision.id)
        session.add_all([staging, production])
        session.flush()
        session.add(Sync(environment_id=staging.id, revision_id=revision.id, trigger=SyncTrigger.POLL,
                         status=SyncLifecycle.SUCCEEDED))
        plan = Plan(environment_id=production.id, revision_id=revision.id, fingerprint="e" * 64,
                    stages={"infrastructure": {"summary": "+1 ~0 -0", "changes": [
                        {"address": "aws_vpc.this", "action": "create", "diff": "+ cidr_block"}]}})
        session.add(plan)
        session.flush()
        session.add(Sync(environment_id=production.id, revision_id=revision.id, trigger=SyncTrigger.POLL,
                         status=SyncLifecycle.AWAITING_APPROVAL, plan_id=plan.id))
    database.dispose()
    return data


def run(data_dir: Path, redis: EmbeddedRedis, *args: str, login: str = "ops") -> subprocess.CompletedProcess[str]:
    """`tidegate ARGS` as the OS user `login` (the local CLI acts as the Tidegate user of that name)."""
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(data_dir), "TIDEGATE_REDIS_URL": redis.client_url,
           "LOGNAME": login, "USER": login}
    return subprocess.run([sys.executable, "-m", "tidegate", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_status_prints_one_line_per_environment(data_dir: Path, redis_server: EmbeddedRedis) -> None:
    result = run(data_dir, redis_server, "status", "--json")
    assert result.returncode == 0, result.stderr
    views = {v["name"]: v for v in map(json.loads, result.stdout.splitlines())}
    assert (views["staging"]["sync_status"], views["staging"]["health"]) == ("Synced", "Healthy")
    assert views["production"]["sync_status"] == "AwaitingApproval" and views["production"]["last_sync"] == 2
    text = run(data_dir, redis_server, "status").stdout
    assert "staging" in text and views["staging"]["revision"][:12] in text and "Synced" in text
    assert text.splitlines()[0].split() == ["ENVIRONMENT", "REVISION", "SYNC", "STATUS", "HEALTH", "LAST", "OBSERVED",
                                            "DRIFT", "NOTES"]
    assert views["staging"]["observed_at"] is None  # this store was written by hand: nothing ever looked
    assert " never " in next(line for line in text.splitlines() if line.startswith("staging"))


def test_history_has_a_header_and_says_how_long_a_sync_took(data_dir: Path, redis_server: EmbeddedRedis) -> None:
    database = Database.embedded(data_dir)
    with database.session() as session:
        sync = session.get_one(Sync, 1)
        sync.finished_at = sync.created_at + timedelta(minutes=3, seconds=7)
    database.dispose()
    lines = run(data_dir, redis_server, "history", "staging").stdout.splitlines()
    assert lines[0].split() == ["SYNC", "CREATED", "REVISION", "TRIGGER", "STATUS", "TOOK", "COMMIT", "APPROVED",
                                "BY", "MESSAGE"]
    assert lines[1].startswith("#1 ") and " succeeded " in lines[1] and " 3m07s  scale web " in lines[1]


@pytest.mark.parametrize("text,width,shown", [
    pytest.param("short", 100, "short", id="fits"),
    pytest.param("terraform plan failed: provider aws not found\nsecond line", 100,
                 "terraform plan failed: provider aws not found", id="first-line-only"),
    pytest.param("the state backend is unreachable after 3 attempts", 30, "the state backend is…",
                 id="cut-at-a-word"),
    pytest.param("x" * 40, 10, "x" * 9 + "…", id="one-long-word"),
])
def test_a_message_is_cut_at_a_word_boundary_never_mid_word(text: str, width: int, shown: str) -> None:
    assert first_line(text, width) == shown


@pytest.mark.parametrize("seconds,shown", [(0, "0s"), (42, "42s"), (187, "3m07s"), (7500, "2h05m")],
                         ids=["zero", "seconds", "minutes", "hours"])
def test_durations_read_at_the_precision_a_reader_needs(seconds: int, shown: str) -> None:
    assert duration(timedelta(seconds=seconds)) == shown


def test_show_prints_the_plan_a_sync_waits_with(data_dir: Path, redis_server: EmbeddedRedis) -> None:
    result = run(data_dir, redis_server, "show", "2")
    assert result.returncode == 0, result.stderr
    assert "awaiting_approval" in result.stdout and "create   aws_vpc.this" in result.stdout


@pytest.mark.parametrize("login,as_user", [pytest.param("bob", None, id="bob-himself"),
                                           pytest.param("ops", "bob", id="an-admin-as-bob")])
def test_approving_queues_the_apply_on_the_broker(data_dir: Path, redis_server: EmbeddedRedis, login: str,
                                                  as_user: str | None) -> None:
    client = redis_client(redis_server.client_url)
    result = run(data_dir, redis_server, "approve", "2", *(["--as", as_user] if as_user else []), login=login)
    assert result.returncode == 0, result.stderr
    assert "approved: applying" in result.stdout
    messages = [json.loads(m) for m in client.lrange("apply", 0, -1)]
    assert [m["headers"]["task"] for m in messages] == ["tidegate.apply"]
    assert messages[0]["headers"]["argsrepr"] == "[2]"
    database = Database.embedded(data_dir)
    with database.session() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "approval.approve")).all()
        assert event.actor == ("admin ops as bob" if as_user else "bob")
    database.dispose()


@pytest.mark.parametrize("login,as_user,reason", [
    pytest.param("ops", "alice", "cannot approve their own change", id="the-author"),
    pytest.param("alice", None, "cannot approve their own change", id="the-author-herself"),
    pytest.param("ops", "mallory", "not an approver of infra/production", id="not-named-by-the-policy"),
    pytest.param("bob", "alice", "only an admin", id="as-someone-else-without-being-admin"),
    pytest.param("stranger", None, "no enabled Tidegate user named like your login", id="an-unknown-login"),
])
def test_refused_approvals_queue_nothing_and_say_why(data_dir: Path, redis_server: EmbeddedRedis, login: str,
                                                     as_user: str | None, reason: str) -> None:
    result = run(data_dir, redis_server, "approve", "2", *(["--as", as_user] if as_user else []), login=login)
    assert result.returncode == 1 and reason in result.stderr, result.stderr
    assert redis_client(redis_server.client_url).llen("apply") == 0


def test_an_unknown_environment_is_a_clear_error(data_dir: Path, redis_server: EmbeddedRedis) -> None:
    result = run(data_dir, redis_server, "history", "qa")
    assert result.returncode == 1 and "unknown environment 'qa'" in result.stderr


@pytest.mark.parametrize(("status", "summary", "shown"), [
    pytest.param("skipped", {"skipped": "inputs unchanged since sync #3"},
                 "result infrastructure: skipped (inputs unchanged since sync #3)", id="left-out-unchanged"),
    pytest.param("skipped", {}, "result infrastructure: skipped\n", id="not-reached-after-a-failure"),
])
def test_show_says_why_a_stage_was_skipped(capsys: pytest.CaptureFixture[str], status: str,
                                           summary: dict[str, str], shown: str) -> None:
    reason = summary.get("skipped")
    plan = {"infrastructure": {"summary": f"skipped: {reason}", "skipped": reason, "changes": []}} if reason else {}
    view = SyncView(5, "infra/staging", "a" * 40, "poll", "succeeded", datetime(2026, 11, 1, tzinfo=UTC), None, None,
                    "fp", plan, [StageView("infrastructure", status, summary, None)])

    print_sync(view)

    printed = capsys.readouterr().out
    assert shown in printed
    if reason:
        assert f"infrastructure: skipped: {reason}" in printed
