"""Engines for the store's two databases: SQLite (embedded default) and PostgreSQL.

The same code runs on both, so SQLite is configured here to keep the promises PostgreSQL keeps
(foreign keys enforced, readers not blocked by a writer, writers waiting rather than failing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url

DATABASE_FILE_NAME = "tidegate.db"
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
"""How long a SQLite writer waits for another process's write lock before failing."""


def sqlite_url(data_dir: Path) -> str:
    """The embedded default URL: `sqlite:///<data_dir>/tidegate.db` (absolute, so cwd never matters)."""
    return URL.create("sqlite", database=str((data_dir / DATABASE_FILE_NAME).absolute())).render_as_string()


def create_database_engine(
    url: str | URL, *, echo: bool = False, foreign_keys: bool = True, sqlite_begin: str = "BEGIN"
) -> Engine:
    """Create an engine; on SQLite, turn on WAL, real transactions and foreign key enforcement.

    `foreign_keys=False` and `sqlite_begin="BEGIN IMMEDIATE"` exist for migrations: SQLite batch
    mode rebuilds tables by copying them, which enforced foreign keys would break or cascade
    through, and taking the write lock up front makes concurrent upgrades wait for each other.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, echo=echo, pool_pre_ping=True)
    engine = create_engine(parsed, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
    _configure_sqlite(engine, foreign_keys=foreign_keys, in_memory=_is_sqlite_memory(parsed))
    _emit_sqlite_begin(engine, sqlite_begin)
    return engine


def _is_sqlite_memory(url: URL) -> bool:
    """WAL needs a file; `sqlite://` and `:memory:` databases keep their own journal mode."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _configure_sqlite(engine: Engine, *, foreign_keys: bool, in_memory: bool) -> None:
    """Set per-connection pragmas, since SQLite forgets them with every new connection."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own implicit BEGIN skips DDL; see below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()


def _emit_sqlite_begin(engine: Engine, statement: str) -> None:
    """Begin transactions explicitly, so DDL (migrations) is transactional on SQLite too.

    Python's sqlite3 driver only opens a transaction before DML; this is SQLAlchemy's documented
    recipe for proper transactions with pysqlite.
    """

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(statement)
