"""Story: a team's dashboards, scripts and CLIs read the API of the embedded default (SQLite) at once,
while a worker writes. Readers never get a 503 (a GET writes nothing), and an API write that meets
the worker's write lock waits for it and succeeds instead of failing.

Seen failing before the fix: many of the 64 readers got 503 (every bearer request wrote
`api_tokens.last_used_at`), and the pause behind the worker's transaction got 503 (its read
snapshot went stale when the worker committed, which SQLite refuses at once).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from store import Environment
from tests.dashboard.world import World
from tests.security.auth_support import Template, build_template, dispose, tidegate_serve, world_copy
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration
READERS = 64
READERS_AS = ("vera", "otto", "root", "sam")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Template:
    return build_template(tmp_path_factory.mktemp("world"), redis_server)


@pytest.fixture
def world(tmp_path: Path, template: Template, redis_server: EmbeddedRedis) -> Iterator[World]:
    copy = world_copy(template, tmp_path / "data", redis_server)
    yield copy
    dispose(copy)


@pytest.fixture
def server(world: World, template: Template, redis_server: EmbeddedRedis) -> Iterator[str]:
    with tidegate_serve(world, template, redis_server) as url:
        yield url


def read_everything(url: str, world: World, n: int, start: threading.Barrier) -> list[int]:
    """One reader: a few GETs as one of several users, all readers starting together."""
    paths = ["/api/v1/environments", f"/api/v1/syncs/{world.ids['staging_head']}", "/api/v1/me",
             "/api/v1/environments/infra/staging/syncs", "/api/v1/approvals"]
    with httpx.Client(base_url=url, headers=world.auth(READERS_AS[n % len(READERS_AS)]), timeout=60) as client:
        start.wait()
        return [client.get(path).status_code for path in paths]


def test_sixty_four_parallel_readers_never_get_a_503(server: str, world: World) -> None:
    start = threading.Barrier(READERS)
    with ThreadPoolExecutor(READERS) as pool:
        answers = Counter(code for codes in pool.map(lambda n: read_everything(server, world, n, start),
                                                     range(READERS)) for code in codes)
    assert answers == {200: READERS * 5}, answers


def test_tokens_used_by_readers_show_when_they_were_last_used(server: str, world: World) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.get("/api/v1/me", headers=world.auth("vera")).status_code == 200
        vera = client.get("/api/v1/users/vera", headers=world.auth("root")).json()
    assert vera["tokens"][0]["last_used_at"] is not None


def test_a_write_meeting_a_workers_transaction_waits_and_succeeds(server: str, world: World) -> None:
    """A worker (another connection) holds the write lock while readers read; the API's pause waits."""
    holding, answers = threading.Event(), Counter[int]()

    def worker_transaction() -> None:
        connection = sqlite3.connect(world.services.data_dir / "tidegate.db", isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("UPDATE environments SET health = health")
            holding.set()
            time.sleep(1.5)
            connection.execute("COMMIT")
        finally:
            connection.close()

    def readers() -> None:
        start = threading.Barrier(16)
        with ThreadPoolExecutor(16) as pool:
            answers.update(c for codes in pool.map(lambda n: read_everything(server, world, n, start), range(16))
                           for c in codes)

    threads = [threading.Thread(target=worker_transaction), threading.Thread(target=readers)]
    threads[0].start()
    assert holding.wait(10)
    threads[1].start()
    with httpx.Client(base_url=server, timeout=60) as client:
        paused = client.post("/api/v1/environments/infra/staging/pause", headers=world.auth("otto"))
    for thread in threads:
        thread.join(60)
    assert paused.status_code == 200, paused.text
    assert answers == {200: 16 * 5}, answers
    with world.services.database.session() as session:
        assert session.scalars(select(Environment.auto_sync_paused).where(Environment.name == "staging")).one()
