"""Fixtures of the dashboard tests: real SQLite store, real Redis, real git repo, the real ASGI app."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from dashboard.app import create_router
from reconciler.runtime import Services
from store import Database, SecretBox
from tests.dashboard.world import World, add_stored_secret, build_world
from tests.support.doubles import NoTargets, RecordingQueue
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis, redis_client


@dataclass
class DashboardSettings:
    data_dir: Path
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8080"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def make_services(data_dir: Path, redis_server: EmbeddedRedis, key: str | None = None, *,
                  migrate: bool = True) -> Services:
    client = redis_client(redis_server.client_url)
    database = Database.embedded(data_dir)
    if migrate:
        database.upgrade()
    return Services(database=database, secrets=SecretBox(key or SecretBox.generate_key()), redis=client,
                    targets=NoTargets(), data_dir=data_dir, queue=RecordingQueue())


def make_app(services: Services) -> FastAPI:
    """What `tidegate.serve.create_app` builds, minus the webhook receivers (another package's)."""
    app = FastAPI(title="Tidegate", version="0.1.0")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(create_router(services, DashboardSettings(services.data_dir)))
    return app


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> tuple[World, str]:
    """Built once (users' scrypt hashes and migrations take a while); each test gets a copy of its store."""
    root = tmp_path_factory.mktemp("world")
    key = SecretBox.generate_key()
    services = make_services(root / "data", redis_server, key)
    world = build_world(services, root)
    add_stored_secret(services)
    services.database.dispose()
    return world, key


@pytest.fixture
def world(tmp_path: Path, redis_server: EmbeddedRedis, world_template: tuple[World, str]) -> Iterator[World]:
    template, key = world_template
    shutil.copytree(template.services.data_dir, tmp_path / "data", ignore=shutil.ignore_patterns("git", "checkouts"))
    services = make_services(tmp_path / "data", redis_server, key, migrate=False)
    services.redis.flushall()
    yield replace(template, services=services)
    services.database.dispose()


@pytest.fixture
def app(world: World) -> FastAPI:
    return make_app(world.services)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def queue(world: World) -> RecordingQueue:
    assert isinstance(world.services.queue, RecordingQueue)
    return world.services.queue


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis,
                  world_template: tuple[World, str]) -> Iterator[tuple[World, TestClient]]:
    """One store and client per module for tests that only read."""
    template, key = world_template
    root = tmp_path_factory.mktemp("reads")
    shutil.copytree(template.services.data_dir, root / "data", ignore=shutil.ignore_patterns("git", "checkouts"))
    world = replace(template, services=make_services(root / "data", redis_server, key, migrate=False))
    with TestClient(make_app(world.services)) as client:
        yield world, client
    world.services.database.dispose()
