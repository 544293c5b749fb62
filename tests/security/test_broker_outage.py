"""Story: the broker (Redis) goes down while `tidegate serve` keeps answering.

A signed webhook gets 503 with Retry-After and leaves no record, so the host's redelivery after
the outage is accepted (not mistaken for a replay). A poll asked for through the API gets 503 and
records nothing. An approval is recorded with its sync `approved` and answered 202: the sync's row
is the outbox entry, and the sweeper queues its apply once Redis is back. Nothing answers 500.

Seen failing before the fix: the webhook answered 500 (traceback in the log), the poll 500 with
its audit row committed, the approval 500 although it was committed (and a retry said 409).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from reconciler import sweeper
from reconciler.tasks import CeleryQueue
from store import Approval, AuditEvent, GitHost, Repository, Sync, SyncLifecycle, WebhookDelivery
from tests.dashboard.world import World
from tests.security.auth_support import Template, build_template, dispose, tidegate_serve, world_copy
from tests.support.redis_server import start_redis
from tests.webhooks.deliveries import push, sign
from tidegate.redis_server import EmbeddedRedis, redis_client

pytestmark = pytest.mark.integration
DEFAULT_SECRET = "default-webhook-secret"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield build_template(tmp_path_factory.mktemp("world"), server)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, which the test stops and starts again."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def world(tmp_path: Path, template: Template, broker: EmbeddedRedis) -> Iterator[World]:
    copy = world_copy(template, tmp_path / "data", broker, CeleryQueue())
    yield copy
    dispose(copy)


@pytest.fixture
def api(world: World, template: Template, broker: EmbeddedRedis) -> Iterator[httpx.Client]:
    with tidegate_serve(world, template, broker) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def queued(broker: EmbeddedRedis, queue: str) -> list[tuple[str, list[object]]]:
    """(task name, args) of every message waiting in a Celery queue (kombu keeps a Redis list per queue)."""
    found = []
    for raw in redis_client(broker.client_url).lrange(queue, 0, -1):
        message = json.loads(raw)
        assert message["properties"]["body_encoding"] == "base64"
        found.append((message["headers"]["task"], json.loads(base64.b64decode(message["body"]))[0]))
    return found


def count(world: World, model: type[object], *where: object) -> int:
    with world.services.database.session() as session:
        query = select(func.count()).select_from(model)
        return int(session.scalar(query.where(*where)) or 0)  # type: ignore[arg-type]


def signed_push(world: World, delivery: str) -> tuple[dict[str, str], bytes]:
    with world.services.database.session() as session:
        url = session.scalars(select(Repository.url)).one()
    event, payload = push(GitHost.GITHUB, url=url)
    signed = sign(GitHost.GITHUB, event, payload, DEFAULT_SECRET, delivery=delivery)
    return signed.headers, signed.body


def test_a_webhook_during_the_outage_is_503_and_its_redelivery_is_accepted(
        api: httpx.Client, world: World, broker: EmbeddedRedis) -> None:
    headers, body = signed_push(world, "delivery-during-outage")
    broker.stop()
    refused = api.post("/webhooks/github", headers=headers, content=body)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) > 0
    assert count(world, WebhookDelivery) == 0, "nothing recorded: the redelivery must not look like a replay"
    broker.start()
    accepted = api.post("/webhooks/github", headers=headers, content=body)
    assert accepted.status_code == 202 and accepted.json()["outcome"] == "accepted", accepted.text
    assert count(world, WebhookDelivery) == 1
    assert [name for name, _ in queued(broker, "poll")] == ["tidegate.poll"]


def test_a_poll_through_the_api_during_the_outage_is_503_and_records_nothing(
        api: httpx.Client, world: World, broker: EmbeddedRedis) -> None:
    broker.stop()
    refused = api.post("/api/v1/repositories/infra/poll", headers=world.auth("otto"))
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0, refused.text
    assert count(world, AuditEvent, AuditEvent.action == "repository.poll") == 0
    broker.start()
    assert api.post("/api/v1/repositories/infra/poll", headers=world.auth("otto")).status_code == 202
    assert count(world, AuditEvent, AuditEvent.action == "repository.poll") == 1
    assert [name for name, _ in queued(broker, "poll")] == ["tidegate.poll"]


def test_an_approval_during_the_outage_is_kept_and_the_sweeper_queues_its_apply(
        api: httpx.Client, world: World, broker: EmbeddedRedis) -> None:
    pending = world.ids["pending"]
    broker.stop()
    answer = api.post(f"/api/v1/syncs/{pending}/approve", headers=world.auth("paula"), json={"comment": "ok"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["approved"] is True and answer.json()["queued"] is False
    with world.services.database.session() as session:
        assert session.get_one(Sync, pending).status is SyncLifecycle.APPROVED
    assert count(world, Approval, Approval.sync_id == pending) == 1
    broker.start()
    assert sweeper.sweep(world.services) == [pending]
    assert queued(broker, "apply") == [("tidegate.apply", [pending])]


def test_a_sync_requested_during_the_outage_is_planned_once_the_broker_is_back(
        api: httpx.Client, world: World, broker: EmbeddedRedis) -> None:
    broker.stop()
    answer = api.post("/api/v1/environments/infra/staging/sync", headers=world.auth("otto"))
    assert answer.status_code == 202, answer.text
    sync_id = answer.json()["sync_id"]
    broker.start()
    assert sweeper.sweep(world.services, pending_grace=0) == [sync_id]
    assert queued(broker, "plan") == [("tidegate.plan", [sync_id])]
