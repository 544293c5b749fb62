"""Fixtures of the dashboard tests: real SQLite store, real Redis, real git repo, the real ASGI app,
and for the browser tests a real uvicorn and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from dashboard.app import create_router
from reconciler.runtime import Services
from store import Database, SecretBox
from tests.dashboard.world import PASSWORD, World, add_stored_secret, build_world
from tests.support.doubles import NoTargets, RecordingQueue
from tests.support.git_server import free_port
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


# --- the browser tests: uvicorn on a free port, Debian's chromium through Playwright -------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
"""Screenshots of the browser tests, kept at the repository root (gitignored), numbered in story order."""


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` served by a real uvicorn in a thread; yields its base URL."""
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                             timeout_graceful_shutdown=1))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per module (each test opens its own contexts: cookies apart)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


def signed_in(chromium: Any, site: str, user: str, width: int = 1280) -> Any:
    """A fresh browser context (its own cookies) signed in as `user`; returns its page."""
    from playwright.sync_api import expect

    page = chromium.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{site}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header .who")).to_contain_text(user)
    return page
