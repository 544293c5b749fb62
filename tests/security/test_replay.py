"""Story: someone who saw a signed webhook (a proxy, a log, a compromised CI runner) sends it again
under a new delivery id, or sends forged copies first to make the genuine one look like a replay.

Every receiver refuses the same signed body within the replay window (nothing enqueued); the generic
receiver signs a timestamp with the body and refuses more than 5 minutes of skew; only accepted
deliveries are remembered, so forged or unsigned copies never block the genuine delivery.

Seen failing before the fix: the body replayed under a new delivery id was accepted and enqueued
again on all four receivers (and again and again: no body was remembered); the generic receiver
accepted a signature over the body alone, without a timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from store import GitHost, WebhookDelivery, utcnow
from tests.support.redis_server import start_redis
from tests.webhooks.conftest import DEFAULT_SECRET, Hooks, make_hooks
from tests.webhooks.deliveries import Delivery, push, sign
from tidegate.redis_server import EmbeddedRedis

HOSTS = [pytest.param(host, id=host.value) for host in GitHost]
FORGED = {GitHost.GITHUB: "sha256=" + "0" * 64, GitHost.GITEA: "0" * 64, GitHost.GENERIC: "sha256=" + "0" * 64,
          GitHost.GITLAB: "a guessed token"}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def hooks(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[Hooks]:
    yield from make_hooks(tmp_path / "data", redis_server)


def send(hooks: Hooks, delivery: Delivery, **headers: str) -> tuple[int, str]:
    response = hooks.client.post(delivery.path, content=delivery.body, headers={**delivery.headers, **headers})
    return response.status_code, response.json()["outcome"]


def delivery_header(host: GitHost) -> str:
    return {GitHost.GITHUB: "X-GitHub-Delivery", GitHost.GITLAB: "X-Gitlab-Event-UUID",
            GitHost.GITEA: "X-Gitea-Delivery", GitHost.GENERIC: "X-Tidegate-Delivery"}[host]


def signature_header(host: GitHost) -> str:
    return {GitHost.GITHUB: "X-Hub-Signature-256", GitHost.GITLAB: "X-Gitlab-Token",
            GitHost.GITEA: "X-Gitea-Signature", GitHost.GENERIC: "X-Tidegate-Signature"}[host]


def genuine(host: GitHost, delivery: str = "genuine-1", timestamp: int | None = None) -> Delivery:
    event, payload = push(host)
    return sign(host, event, payload, DEFAULT_SECRET, delivery=delivery, timestamp=timestamp)


@pytest.mark.parametrize("host", HOSTS)
def test_a_signed_body_replayed_under_a_new_delivery_id_is_refused(hooks: Hooks, host: GitHost) -> None:
    original = genuine(host)
    assert send(hooks, original) == (202, "accepted")
    assert send(hooks, original, **{delivery_header(host): "attacker-chosen-id"}) == (200, "replayed")
    assert hooks.jobs.jobs == [("poll", hooks.repository_id)], "the replay enqueued nothing"
    assert hooks.deliveries() == 1


@pytest.mark.parametrize("host", HOSTS)
def test_forged_and_unsigned_copies_sent_first_do_not_block_the_genuine_delivery(hooks: Hooks,
                                                                                   host: GitHost) -> None:
    original = genuine(host)
    forged = original.headers | {signature_header(host): FORGED[host]}
    unsigned = {k: v for k, v in original.headers.items() if k != signature_header(host)}
    for headers in (forged, unsigned):
        for delivery_id in ("genuine-1", "another-id"):
            response = hooks.client.post(original.path, content=original.body,
                                         headers=headers | {delivery_header(host): delivery_id})
            assert response.status_code == 401, response.text
    assert hooks.deliveries() == 0, "refused deliveries are not remembered"
    assert send(hooks, original) == (202, "accepted")
    assert hooks.jobs.jobs == [("poll", hooks.repository_id)]


@pytest.mark.parametrize("skew", [-301, 301, 3600], ids=["five-minutes-old-and-more", "from-the-future", "an-hour"])
def test_the_generic_receiver_refuses_a_timestamp_more_than_five_minutes_off(hooks: Hooks, skew: int) -> None:
    stale = genuine(GitHost.GENERIC, timestamp=int(time.time()) - skew)
    status, outcome = send(hooks, stale)
    assert (status, outcome) == (401, "refused")
    assert hooks.jobs.jobs == [] and hooks.deliveries() == 0


def test_the_generic_receiver_refuses_a_body_signed_without_its_timestamp(hooks: Hooks) -> None:
    """The scheme before this fix: HMAC over the body alone, no X-Tidegate-Timestamp."""
    event, payload = push(GitHost.GENERIC)
    body = json.dumps(payload).encode()
    digest = hmac.new(DEFAULT_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Tidegate-Event": event, "X-Tidegate-Delivery": "old-style",
               "X-Tidegate-Signature": f"sha256={digest}"}
    response = hooks.client.post("/webhooks/generic", content=body, headers=headers)
    assert response.status_code == 401 and "X-Tidegate-Timestamp".lower() in response.text.lower()
    stamped_with_old_signature = headers | {"X-Tidegate-Timestamp": str(int(time.time()))}
    assert hooks.client.post("/webhooks/generic", content=body, headers=stamped_with_old_signature).status_code == 401
    assert hooks.jobs.jobs == []


def test_the_same_generic_body_sent_later_with_a_new_timestamp_is_a_new_delivery(hooks: Hooks) -> None:
    """Generic senders often post identical bodies for every push: the signed timestamp tells them apart."""
    now = int(time.time())
    assert send(hooks, genuine(GitHost.GENERIC, "push-1", now - 60)) == (202, "accepted")
    assert send(hooks, genuine(GitHost.GENERIC, "push-2", now)) == (202, "accepted")
    assert send(hooks, genuine(GitHost.GENERIC, "push-3", now)) == (200, "replayed")
    assert len(hooks.jobs.jobs) == 2


def test_a_body_is_remembered_for_the_replay_window_only(hooks: Hooks) -> None:
    original = genuine(GitHost.GITHUB)
    assert send(hooks, original) == (202, "accepted")
    with hooks.services.database.session() as session:
        session.execute(update(WebhookDelivery).values(received_at=utcnow() - timedelta(hours=25)))
    assert send(hooks, original, **{"X-GitHub-Delivery": "a-day-later"}) == (202, "accepted")
    assert send(hooks, original, **{"X-GitHub-Delivery": "and-again"}) == (200, "replayed")
