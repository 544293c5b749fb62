"""The connection to the store: one `Database` per process, built from a URL.

The embedded default is a SQLite file in the data directory, shared by the API, the worker and the
scheduler of `tidegate up`; several machines share a PostgreSQL server instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.engine import SQLITE_BEGIN_OPTION, PoolLimits, create_database_engine, sqlite_url
from store.files import private_directory
from store.migrate import upgrade


class StoreBusy(RuntimeError):
    """Another writer holds SQLite's write lock (or moved past this transaction's snapshot).

    WAL readers never wait, but a transaction that read and then writes after another connection
    committed fails at once with "database is locked" whatever the busy timeout: the work is fine,
    it only needs to run again. Callers that can retry (the task layer, the API) treat it so.
    Sessions opened with `write=True` take the write lock when they begin (`BEGIN IMMEDIATE`), so
    they wait up to the busy timeout instead; they raise this only when that runs out.
    """


class Database:
    """An engine and its session factory; the one object other layers receive to reach the store."""

    def __init__(self, url: str | URL, *, echo: bool = False, pool: PoolLimits | None = None) -> None:
        self.url: URL = make_url(url)
        self.pool = pool or PoolLimits()
        """The bounds of this process's connections to a PostgreSQL server (SQLite ignores them)."""
        self.engine: Engine = create_database_engine(self.url, echo=echo, pool=self.pool)
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        writer = self.engine.execution_options(**{SQLITE_BEGIN_OPTION: "BEGIN IMMEDIATE"})
        self.writers: sessionmaker[Session] = sessionmaker(writer, expire_on_commit=False)

    @classmethod
    def embedded(cls, data_dir: Path, *, echo: bool = False) -> Database:
        """Open (creating the directory if needed) the SQLite store of the embedded default."""
        private_directory(data_dir)
        return cls(sqlite_url(data_dir), echo=echo)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises.

        `write=True` is for short transactions that will write: on SQLite they take the write lock
        up front and wait for it (busy timeout) rather than fail when another connection commits
        between their first read and their first write. Keep slow work (git, hashing) out of them:
        every other writer waits while one is open. Readers are never blocked either way (WAL)."""
        try:
            with (self.writers if write else self.sessions).begin() as session:
                yield session
        except OperationalError as error:
            if "database is locked" in str(error.orig) or "database is busy" in str(error.orig):
                raise StoreBusy(f"the store is busy: {error.orig}") from error
            raise

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` (the latest by default); safe to call on every start.

        Migrations run over their own connection, so an in-memory SQLite database (one per
        connection) cannot be migrated: use a file, as `embedded` does.
        """
        upgrade(self.url, revision)

    def dispose(self) -> None:
        """Close pooled connections (at shutdown, and in a child process after fork)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"
