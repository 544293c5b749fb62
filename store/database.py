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

from store.engine import create_database_engine, sqlite_url
from store.migrate import upgrade


class StoreBusy(RuntimeError):
    """Another writer holds SQLite's write lock (or moved past this transaction's snapshot).

    WAL readers never wait, but a transaction that read and then writes after another connection
    committed fails at once with "database is locked" whatever the busy timeout: the work is fine,
    it only needs to run again. Callers that can retry (the task layer, the API) treat it so.
    """


class Database:
    """An engine and its session factory; the one object other layers receive to reach the store."""

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self.url: URL = make_url(url)
        self.engine: Engine = create_database_engine(self.url, echo=echo)
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def embedded(cls, data_dir: Path, *, echo: bool = False) -> Database:
        """Open (creating the directory if needed) the SQLite store of the embedded default."""
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(sqlite_url(data_dir), echo=echo)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self.sessions.begin() as session:
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
