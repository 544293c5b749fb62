"""Through the real broker: a valid delivery leaves exactly one Celery message on the right Redis queue."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from reconciler.runtime import Services
from reconciler.tasks import CeleryQueue
from store import Database, GitHost, Repository, SecretBox
from tests.webhooks.conftest import DEFAULT_SECRET, ReceiverSettings
from tests.webhooks.deliveries import CLONE_URL, HEAD, comment, pull_request, push, review, sign
from tidegate.redis_server import EmbeddedRedis, redis_client
from tidegate.settings import Settings
from tidegate.worker import make_app
from webhooks.app import create_router


@pytest.fixture
def broker_client(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[tuple[TestClient, Any]]:
    redis = redis_client(redis_server.client_url)
    redis.flushall()
    make_app(Settings(data_dir=tmp_path, redis_url=redis_server.client_url))
    database = Database.embedded(tmp_path)
    database.upgrade()
    services = Services(database=database, secrets=SecretBox(SecretBox.generate_key()), redis=redis,
                        targets=None, data_dir=tmp_path, queue=CeleryQueue())  # type: ignore[arg-type]
    with database.session() as session:
        session.add(Repository(name="infra", url=CLONE_URL, branch="main"))
    app = FastAPI()
    app.include_router(create_router(services, ReceiverSettings(webhook_secret=SecretStr(DEFAULT_SECRET))))
    with TestClient(app) as client:
        yield client, redis
    database.dispose()


def _messages(redis: Any, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in redis.lrange(queue, 0, -1)]


@pytest.mark.parametrize("event,queue,task", [
    pytest.param(push(GitHost.GITHUB), "poll", "tidegate.poll", id="push-polls"),
    pytest.param(pull_request(GitHost.GITHUB, "opened"), "preview", "tidegate.preview", id="pr-opened-previews"),
    pytest.param(review(GitHost.GITHUB), "preview", "tidegate.review_recount", id="review-recounts"),
    pytest.param(comment(GitHost.GITHUB, "/tidegate preview"), "preview", "tidegate.preview_go_ahead",
                 id="a-members-comment-goes-ahead"),
])
def test_a_valid_delivery_puts_exactly_one_task_on_its_queue(broker_client: tuple[TestClient, Any],
                                                             event: tuple[str, dict[str, Any]], queue: str,
                                                             task: str) -> None:
    client, redis = broker_client
    delivery = sign(GitHost.GITHUB, *event, DEFAULT_SECRET)

    first = client.post(delivery.path, content=delivery.body, headers=delivery.headers)
    replay = client.post(delivery.path, content=delivery.body, headers=delivery.headers)

    assert (first.status_code, replay.status_code) == (202, 200)
    [message] = _messages(redis, queue)
    assert message["headers"]["task"] == task
    args = json.loads(base64.b64decode(message["body"]))[0]
    if task == "tidegate.preview":
        assert args[0]["head_sha"] == HEAD and args[0]["number"] == 7
    assert sum(len(_messages(redis, name)) for name in ("poll", "plan", "apply", "drift", "preview")) == 1
