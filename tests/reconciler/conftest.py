"""The reconciler's services over a real SQLite store and a real Redis, with a queue that records
what would be sent to the broker (the tests here are about the rules, not about Celery)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.runtime import Services
from reconciler.targets import Connection
from store import Database, Environment, Repository, Revision, SecretBox
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis, redis_client


@dataclass
class RecordingQueue:
    sent: list[tuple[str, int]] = field(default_factory=list)

    def plan(self, sync_id: int, *, countdown: float = 0.0) -> None:
        self.sent.append(("plan", sync_id))

    def apply(self, sync_id: int) -> None:
        self.sent.append(("apply", sync_id))

    def poll(self, repository_id: int) -> None:
        self.sent.append(("poll", repository_id))

    def drift(self, environment_id: int, trigger: str) -> None:
        self.sent.append(("drift", environment_id))


class NoTargets:
    def infrastructure(self, repository: str, environment: str) -> Connection:
        raise AssertionError("no stage runs in these tests")

    configuration = workloads = infrastructure  # type: ignore[assignment]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def services(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[Services]:
    client = redis_client(redis_server.client_url)
    client.flushall()
    database = Database.embedded(tmp_path / "data")
    database.upgrade()
    yield Services(database=database, secrets=SecretBox(SecretBox.generate_key()), redis=client,
                   targets=NoTargets(), data_dir=tmp_path / "data", queue=RecordingQueue())
    database.dispose()


@pytest.fixture
def environment(services: Services) -> tuple[int, int]:
    """(environment id, revision id): staging of a registered repository at one revision."""
    with services.database.session() as session:
        repository = Repository(name="infra", url="/nowhere", branch="main")
        session.add(repository)
        session.flush()
        revision = Revision(repository_id=repository.id, ref="main", sha="a" * 40,
                            author="Alice Author <alice@example.com>", message="change",
                            committed_at=datetime(2026, 11, 1, tzinfo=UTC))
        env = Environment(repository_id=repository.id, name="staging")
        session.add_all([revision, env])
        session.flush()
        return env.id, revision.id
