"""How many PostgreSQL connections one process takes: its pool's bounds, on a real server.

Every process that opens the store (each worker pool child, a worker's main process twice, each
serve) has one pool; the deployment's `max_connections` is sized from these bounds
(deploy/README.md), so they must hold on the server itself, not only in SQLAlchemy's counters.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from store import Database, PoolLimits
from tests.store.conftest import PostgresServer


def _connections(server: PostgresServer, database: str) -> int:
    with server.admin() as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()
    assert row is not None
    return int(str(row[0]))


@pytest.fixture
def pool_database(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty database of its own on the session's server (its connections are counted by name)."""
    name = f"pool_{secrets.token_hex(6)}"
    postgres_server.create_database(name)
    yield name
    postgres_server.drop_database(name)


def test_a_process_never_holds_more_than_size_plus_overflow_connections_and_keeps_only_size(
        postgres_server: PostgresServer, pool_database: str) -> None:
    name = pool_database
    database = Database(postgres_server.url(name), pool=PoolLimits(size=2, overflow=1, timeout=0.5))
    try:
        with ExitStack() as held:
            for _ in range(3):  # every connection the pool allows, each held by a session in use
                held.enter_context(database.session()).execute(text("SELECT 1"))
            assert _connections(postgres_server, name) == 3
            started = time.monotonic()
            with pytest.raises(PoolTimeout, match="limit of size 2 overflow 1"), database.session() as one_more:
                one_more.execute(text("SELECT 1"))
            assert 0.4 < time.monotonic() - started < 5, "the fourth session waited pool_timeout, then failed"
            assert _connections(postgres_server, name) == 3, "the server never saw a fourth connection"
        assert _connections(postgres_server, name) == 2, "overflow connections close when returned; size stay"
    finally:
        database.dispose()
    assert _connections(postgres_server, name) == 0


@pytest.mark.parametrize(("limits", "message"), [
    ({"size": 0}, "size must be a whole number of at least 1, not 0"),
    ({"overflow": -1}, "overflow must be a whole number of at least 0, not -1"),
    ({"size": 2.5}, "size must be a whole number of at least 1, not 2.5"),
    ({"timeout": 0}, "timeout must be a number of seconds above 0, not 0"),
], ids=["no-connections", "negative-overflow", "fractional-size", "zero-timeout"])
def test_impossible_pool_bounds_are_refused_naming_the_bound(limits: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoolLimits(**limits)  # type: ignore[arg-type]
