"""The webhook receivers over a real SQLite store, mounted in a FastAPI app, with queues that record."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from reconciler.hosts.approvals import RecountRequest
from reconciler.previews import GoAheadRequest, PreviewRequest
from reconciler.runtime import Services
from store import Database, Repository, SecretBox, WebhookDelivery
from tests.support.redis_server import start_redis
from tests.webhooks.deliveries import CLONE_URL, FULL_NAME
from tidegate.redis_server import EmbeddedRedis, redis_client
from webhooks.app import create_router

DEFAULT_SECRET = "default-webhook-secret"
REPO_SECRET = "repository-webhook-secret"


@dataclass
class Recorder:
    """Every job the receivers enqueued, in order (`runtime.Queue` and `PreviewQueue` at once)."""

    jobs: list[tuple[str, object]] = field(default_factory=list)

    def plan(self, sync_id: int, *, countdown: float = 0.0) -> None:
        self.jobs.append(("plan", sync_id))

    def apply(self, sync_id: int) -> None:
        self.jobs.append(("apply", sync_id))

    def poll(self, repository_id: int) -> None:
        self.jobs.append(("poll", repository_id))

    def drift(self, environment_id: int, trigger: str) -> None:
        self.jobs.append(("drift", environment_id))

    def preview(self, request: PreviewRequest) -> None:
        self.jobs.append(("preview", request))

    def recount(self, request: RecountRequest) -> None:
        self.jobs.append(("recount", request))

    def go_ahead(self, request: GoAheadRequest) -> None:
        self.jobs.append(("go_ahead", request))


@dataclass
class ReceiverSettings:
    """The two settings receivers read (`tidegate.settings.Settings` has them among many)."""

    webhook_secret: SecretStr | None = field(default_factory=lambda: SecretStr(DEFAULT_SECRET))
    public_url: str = "https://tidegate.example.test"


@dataclass
class Hooks:
    """The receivers under test and what they did."""

    client: TestClient
    services: Services
    jobs: Recorder
    repository_id: int

    def deliveries(self) -> int:
        with self.services.database.session() as session:
            return int(session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def make_hooks(data: Path, redis: EmbeddedRedis, *, own_secret: str | None = None) -> Iterator[Hooks]:
    database = Database.embedded(data)
    database.upgrade()
    jobs = Recorder()
    box = SecretBox(SecretBox.generate_key())
    services = Services(database=database, secrets=box, redis=redis_client(redis.client_url), targets=None,  # type: ignore[arg-type]
                        data_dir=data, queue=jobs)
    with database.session() as session:
        repository = Repository(name="infra", url=CLONE_URL, branch="main", host_repository=FULL_NAME,
                                webhook_secret=box.seal(own_secret) if own_secret else None)
        session.add(repository)
        session.flush()
        repository_id = repository.id
    app = FastAPI()
    app.include_router(create_router(services, ReceiverSettings(), previews=jobs))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Hooks(client, services, jobs, repository_id)
    database.dispose()


@pytest.fixture
def hooks(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[Hooks]:
    """A repository registered without its own secret (deliveries are signed with the default)."""
    yield from make_hooks(tmp_path / "data", redis_server)


@pytest.fixture
def hooks_with_own_secret(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[Hooks]:
    yield from make_hooks(tmp_path / "data", redis_server, own_secret=REPO_SECRET)


@pytest.fixture(scope="module")
def shared_hooks(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Iterator[Hooks]:
    """One app for many hypothesis examples (a fresh store per example would take minutes)."""
    yield from make_hooks(tmp_path_factory.mktemp("fuzz"), redis_server)
