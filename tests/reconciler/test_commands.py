"""The command layer as stories: whichever door a person uses — the in-process CLI, the CLI over HTTP,
the REST API or the web form — a rollback or a resume leaves the same audit entries and queues the
same work, because every door calls `reconciler.commands`.

Real store (SQLite), real Redis, a real git config repo; the queue records what would go to Celery.
Seen failing before the command layer: the in-process CLI audited a rollback as `sync.requested` by
`cli` without the sync id (the API: `sync.rollback` by the operator, with it), and did not audit a
resume at all; a resume of an environment left on a rolled-back revision queued only a poll, which
found nothing new, so the environment stayed OutOfSync.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from reconciler.status import status_of
from store import (
    AuditEvent,
    DriftReport,
    DriftStatus,
    Environment,
    Revision,
    SecretBox,
    Sync,
    SyncLifecycle,
    SyncStatus,
    SyncTrigger,
)
from tests.dashboard.conftest import make_app, make_services
from tests.dashboard.test_pages import csrf_of, sign_in
from tests.dashboard.world import World, build_world
from tests.support.doubles import RecordingQueue
from tidegate.client import ClientError, LocalClient
from tidegate.http_client import HttpClient
from tidegate.redis_server import EmbeddedRedis

OPERATOR = "otto"
STAGING = ("infra", "staging")


@dataclass
class Door:
    """One way in: `sync(revision)` (None: sync now) and `resume()` as the operator, through it."""

    name: str
    sync: Callable[[World, TestClient, str | None], object]
    resume: Callable[[World, TestClient], object]


def _local(world: World) -> LocalClient:
    return LocalClient(world.services, login=OPERATOR)


def _http(world: World, api: TestClient) -> HttpClient:
    return HttpClient("http://testserver", world.tokens[OPERATOR], transport=api._transport)


def _api_sync(world: World, api: TestClient, revision: str | None) -> None:
    body = {"revision": revision} if revision else None
    answer = api.post("/api/v1/environments/infra/staging/sync", headers=world.auth(OPERATOR), json=body)
    assert answer.status_code == 202, answer.text


def _api_resume(world: World, api: TestClient) -> None:
    answer = api.post("/api/v1/environments/infra/staging/resume", headers=world.auth(OPERATOR))
    assert answer.status_code == 200, answer.text


def _form(api: TestClient, action: str, fields: dict[str, str]) -> None:
    assert sign_in(api, OPERATOR).status_code == 303
    token = csrf_of(api.get("/environments/infra/staging").text)
    answer = api.post(f"/environments/infra/staging/{action}", data={"csrf_token": token, **fields},
                      follow_redirects=False)
    assert answer.status_code == 303, answer.text


def _local_sync(world: World, _api: TestClient, revision: str | None) -> None:
    _local(world).sync("infra/staging", revision)


def _http_sync(world: World, api: TestClient, revision: str | None) -> None:
    _http(world, api).sync("infra/staging", revision)


LOCAL = Door("cli-local", _local_sync, lambda world, _api: _local(world).resume("infra/staging"))
DOORS = [
    pytest.param(LOCAL, id="cli-local"),
    pytest.param(Door("cli-http", _http_sync, lambda world, api: _http(world, api).resume("infra/staging")),
                 id="cli-http"),
    pytest.param(Door("api", _api_sync, _api_resume), id="api"),
    pytest.param(Door("web-form", lambda _world, api, revision: _form(api, "sync", {"revision": revision or ""}),
                      lambda _world, api: _form(api, "resume", {})), id="web-form"),
]


@dataclass(frozen=True)
class Trace:
    """What an action left behind: its audit entries, the work it queued, and the syncs it made."""

    audit: list[tuple[str, str, str, dict[str, Any]]]
    queued: list[tuple[str, int]]
    syncs: list[tuple[str, str, str]]
    paused: bool


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> tuple[World, str]:
    """The dashboard tests' world (people with tokens, the example repo with two commits by different
    authors, staging at the head, production awaiting approval of it), built once."""
    root = tmp_path_factory.mktemp("commands")
    key = SecretBox.generate_key()
    world = build_world(make_services(root / "data", redis_server, key), root)
    world.services.database.dispose()
    return world, key


@pytest.fixture
def fresh(tmp_path: Path, redis_server: EmbeddedRedis, template: tuple[World, str]) -> Iterator[Callable[[], World]]:
    """Identical copies of the world, one per door, so their row ids and traces can be compared."""
    made: list[World] = []

    def copy() -> World:
        data = tmp_path / f"data-{len(made)}"
        shutil.copytree(template[0].services.data_dir, data, ignore=shutil.ignore_patterns("git", "checkouts"))
        services = make_services(data, redis_server, template[1], migrate=False)
        services.redis.flushall()
        made.append(replace(template[0], services=services))
        return made[-1]

    yield copy
    for world in made:
        world.services.database.dispose()


def trace(world: World, before: set[int]) -> Trace:
    with world.services.database.session() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action.not_in(("login", "login.failed")))
                                 .order_by(AuditEvent.id))
        syncs = session.scalars(select(Sync).where(Sync.id.not_in(before)).order_by(Sync.id))
        env = _staging(session)
        assert isinstance(world.services.queue, RecordingQueue)
        return Trace([(e.actor, e.action, e.target, e.details) for e in events], list(world.services.queue.sent),
                     [(s.revision.sha if s.revision else "", s.trigger.value, s.status.value) for s in syncs],
                     env.auto_sync_paused)


def _staging(session: Any) -> Environment:
    env: Environment = session.scalars(select(Environment).where(Environment.name == "staging")).one()
    return env


def _sync_ids(world: World) -> set[int]:
    with world.services.database.session() as session:
        return set(session.scalars(select(Sync.id)))


def _roll_back_staging(world: World) -> None:
    """Staging as a rollback left it: synced at the old commit, auto-sync paused, desired still the head."""
    with world.services.database.session(write=True) as session:
        env = _staging(session)
        old = session.scalars(select(Revision).where(Revision.sha == world.old_sha)).one()
        env.synced_revision_id, env.auto_sync_paused = old.id, True
        for report in env.drift_reports:
            session.delete(report)


def through(door: Door, world: World, act: Callable[[Door, World, TestClient], object]) -> Trace:
    before = _sync_ids(world)
    with TestClient(make_app(world.services)) as api:
        act(door, world, api)
    return trace(world, before)


@pytest.mark.parametrize("door", DOORS)
def test_a_rollback_leaves_the_same_audit_entry_and_queued_plan_through_every_door(
        door: Door, fresh: Callable[[], World]) -> None:
    reference, world = fresh(), fresh()
    expected = through(LOCAL, reference, lambda d, w, a: d.sync(w, a, w.old_sha[:12]))
    found = through(door, world, lambda d, w, a: d.sync(w, a, w.old_sha[:12]))
    assert found == expected
    [(actor, action, target, details)] = found.audit
    assert (actor, action, target) == (OPERATOR, "sync.rollback", "infra/staging")
    [sync_id] = [sync_id for kind, sync_id in found.queued if kind == "plan"]
    assert details == {"revision": world.old_sha, "sync_id": sync_id, "paused": True}
    assert found.syncs == [(world.old_sha, "manual", "pending")] and found.paused


@pytest.mark.parametrize("door", DOORS)
def test_resuming_an_environment_left_behind_by_a_rollback_queues_its_sync_through_every_door(
        door: Door, fresh: Callable[[], World]) -> None:
    reference, world = fresh(), fresh()
    for each in (reference, world):
        _roll_back_staging(each)
    expected = through(LOCAL, reference, lambda d, w, a: d.resume(w, a))
    found = through(door, world, lambda d, w, a: d.resume(w, a))
    assert found == expected
    [(actor, action, target, details)] = found.audit
    assert (actor, action, target) == (OPERATOR, "autosync.resumed", "infra/staging")
    [sync_id] = [sync_id for kind, sync_id in found.queued if kind == "plan"]
    assert details == {"revision": world.head_sha, "sync_id": sync_id}
    assert found.syncs == [(world.head_sha, "poll", "pending")] and not found.paused


# -- the derived status word -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Situation:
    """Staging's facts, by commit ("old", "head" or None); `active` is a sync of `at` in that state."""

    desired: str | None
    synced: str | None
    drift_at: str | None = None
    active: SyncLifecycle | None = None
    failed_heal: bool = False
    at: str = "head"


SITUATIONS = [
    pytest.param(Situation(None, None), SyncStatus.UNKNOWN, id="never-polled"),
    pytest.param(Situation("head", None, active=SyncLifecycle.PLANNING), SyncStatus.OUT_OF_SYNC,
                 id="first-sync-on-its-way"),
    pytest.param(Situation("head", "head"), SyncStatus.SYNCED, id="synced-at-its-desired-revision"),
    pytest.param(Situation("head", "old"), SyncStatus.OUT_OF_SYNC, id="left-behind-by-a-rollback"),
    pytest.param(Situation("head", "old", active=SyncLifecycle.AWAITING_APPROVAL), SyncStatus.AWAITING_APPROVAL,
                 id="awaiting-approval-of-the-head"),
    pytest.param(Situation("head", "head", drift_at="head", active=SyncLifecycle.AWAITING_APPROVAL),
                 SyncStatus.AWAITING_APPROVAL, id="awaiting-approval-of-a-correcting-plan"),
    pytest.param(Situation("head", "head", drift_at="head"), SyncStatus.DRIFTED,
                 id="drift-open-at-the-synced-revision"),
    pytest.param(Situation("head", "head", drift_at="old"), SyncStatus.SYNCED,
                 id="drift-left-open-at-an-older-revision"),
    pytest.param(Situation("head", "old", drift_at="old"), SyncStatus.OUT_OF_SYNC, id="behind-and-drifted"),
    pytest.param(Situation("head", "head", failed_heal=True), SyncStatus.SYNCED,
                 id="after-a-failed-heal-that-found-nothing-left-to-heal"),
]


def _arrange(world: World, situation: Situation) -> None:
    with world.services.database.session(write=True) as session:
        ids = {sha: session.scalars(select(Revision.id).where(Revision.sha == sha)).one()
               for sha in (world.old_sha, world.head_sha)}
        by_name = {None: None, "old": ids[world.old_sha], "head": ids[world.head_sha]}
        env = _staging(session)
        env.desired_revision_id, env.synced_revision_id = by_name[situation.desired], by_name[situation.synced]
        for report in env.drift_reports:
            report.status = DriftStatus.RESOLVED
        if situation.drift_at is not None:
            session.add(DriftReport(environment_id=env.id, revision_id=by_name[situation.drift_at]))
        if situation.active is not None:
            session.add(Sync(environment_id=env.id, revision_id=by_name[situation.at], trigger=SyncTrigger.POLL,
                             status=situation.active))
        if situation.failed_heal:
            session.add(Sync(environment_id=env.id, revision_id=by_name[situation.at], trigger=SyncTrigger.DRIFT,
                             status=SyncLifecycle.FAILED, error="workloads: the health wait timed out"))


def _words(world: World) -> dict[str, str]:
    """Staging's sync status as each reader shows it."""
    vera = world.auth("vera")
    with TestClient(make_app(world.services)) as api:
        detail = api.get("/api/v1/environments/infra/staging", headers=vera).json()["sync_status"]
        listed = {e["name"]: e["sync_status"] for e in api.get("/api/v1/environments", headers=vera).json()}
        remote = {v.name: v.sync_status for v in HttpClient("http://testserver", world.tokens["vera"],
                                                             transport=api._transport).status()}
        metrics = re.search(r'tidegate_environment_info\{environment="staging",[^}]*sync_status="(\w+)"\}',
                            api.get("/metrics", headers=vera).text)
        overview = re.search(r'href="/environments/infra/staging".*?data-word="(\w+)"',
                             api.get("/", headers=vera).text if sign_in(api, "vera") else "", re.S)
    local = {v.name: v.sync_status for v in LocalClient(world.services, login="vera").status()}
    return {"api": detail, "api-list": listed["staging"], "cli-local": local["staging"],
            "cli-http": remote["staging"], "metrics": metrics.group(1) if metrics else "",
            "overview-page": overview.group(1) if overview else ""}


@pytest.mark.parametrize(("situation", "word"), SITUATIONS)
def test_every_reader_shows_the_one_derived_status_word(situation: Situation, word: SyncStatus,
                                                        fresh: Callable[[], World]) -> None:
    world = fresh()
    _arrange(world, situation)
    with world.services.database.session() as session:
        assert status_of(session, _staging(session)) is word
    assert _words(world) == dict.fromkeys(("api", "api-list", "cli-local", "cli-http", "metrics", "overview-page"),
                                          word.value)


# -- more stories ------------------------------------------------------------------------------------------

def test_resuming_an_environment_at_its_desired_revision_only_polls(fresh: Callable[[], World]) -> None:
    world = fresh()
    _arrange(world, Situation("head", "head"))
    before = _sync_ids(world)
    assert LocalClient(world.services, login=OPERATOR).resume("infra/staging") is None
    found = trace(world, before)
    assert found.audit == [(OPERATOR, "autosync.resumed", "infra/staging", {})]
    assert [kind for kind, _ in found.queued] == ["poll"] and found.syncs == []


def test_a_rollback_to_a_branch_commit_the_store_never_recorded_is_found_in_git(fresh: Callable[[], World]) -> None:
    """Polls record only the heads they see; a commit in between is still a fair rollback target."""
    world = fresh()
    with world.services.database.session(write=True) as session:
        env = _staging(session)
        old = session.scalars(select(Revision).where(Revision.sha == world.old_sha)).one()
        env.desired_revision_id = env.synced_revision_id
        for row in [*session.scalars(select(Sync).where(Sync.revision_id == old.id)),
                    *session.scalars(select(DriftReport).where(DriftReport.revision_id == old.id)), old]:
            session.delete(row)
    sync_id = LocalClient(world.services, login=OPERATOR).sync("infra/staging", world.old_sha[:10])
    with world.services.database.session() as session:
        row = session.get_one(Sync, sync_id)
        assert row.revision is not None and (row.revision.sha, row.revision.ref) == (world.old_sha, "main")


@pytest.mark.parametrize(("login", "environment", "error"), [
    pytest.param("sam", "infra/production", "sam lacks the operate permission on infra/production",
                 id="a-scoped-operator-elsewhere"),
    pytest.param("vera", "infra/staging", "vera lacks the operate permission on infra/staging", id="a-viewer"),
    pytest.param("otto", "infra/qa", "unknown environment 'infra/qa'", id="an-unknown-environment"),
])
def test_the_local_cli_is_refused_what_the_api_refuses(login: str, environment: str, error: str,
                                                       fresh: Callable[[], World]) -> None:
    world = fresh()
    client = LocalClient(world.services, login=login)
    acts: list[Callable[[], object]] = [lambda: client.sync(environment, world.old_sha),
                                        lambda: client.resume(environment)]
    for act in acts:
        with pytest.raises(ClientError, match=re.escape(error)):
            act()
    left = trace(world, set())
    assert (left.audit, left.queued) == ([], [])
