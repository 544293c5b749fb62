"""Engines for the store's two databases: SQLite (embedded default) and PostgreSQL.

The same code runs on both, so SQLite is configured here to keep the promises PostgreSQL keeps
(foreign keys enforced, readers not blocked by a writer, writers waiting rather than failing).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url

log = logging.getLogger(__name__)

DATABASE_FILE_NAME = "tidegate.db"
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
"""How long a SQLite writer waits for another process's write lock before failing."""
SQLITE_BEGIN_OPTION = "tidegate_sqlite_begin"
"""Execution option naming the statement that begins a transaction on SQLite (see `_emit_sqlite_begin`)."""


@dataclass(frozen=True)
class PoolLimits:
    """How many PostgreSQL connections one process's pool may hold, and how long a session waits
    for one when all are in use.

    Every process that opens the store has one pool (a worker has one per pool child, and two in
    its main process), so these numbers are what bounds the connections a worker takes from the
    server's `max_connections`: at most `size + overflow` per pool (deploy/README.md, sizing).
    The defaults are SQLAlchemy's own. SQLite ignores them: it has no server to exhaust."""

    size: int = 5
    """Connections kept open once used (`pool_size`)."""
    overflow: int = 10
    """More connections opened under load and closed when returned (`max_overflow`)."""
    timeout: float = 30.0
    """Seconds a session waits for a free connection before failing (`pool_timeout`)."""

    def __post_init__(self) -> None:
        problems = [f"size must be a whole number of at least 1, not {self.size!r}"
                    if not _whole(self.size) or self.size < 1 else "",
                    f"overflow must be a whole number of at least 0, not {self.overflow!r}"
                    if not _whole(self.overflow) or self.overflow < 0 else "",
                    f"timeout must be a number of seconds above 0, not {self.timeout!r}"
                    if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float)
                    or not self.timeout > 0 else ""]
        if any(problems):
            raise ValueError("connection pool: " + "; ".join(problem for problem in problems if problem))

    @property
    def most(self) -> int:
        """The most connections this pool ever holds at once."""
        return self.size + self.overflow


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sqlite_url(data_dir: Path) -> str:
    """The embedded default URL: `sqlite:///<data_dir>/tidegate.db` (absolute, so cwd never matters)."""
    return URL.create("sqlite", database=str((data_dir / DATABASE_FILE_NAME).absolute())).render_as_string()


def create_database_engine(
    url: str | URL, *, echo: bool = False, foreign_keys: bool = True, sqlite_begin: str = "BEGIN",
    pool: PoolLimits | None = None,
) -> Engine:
    """Create an engine; on SQLite, turn on WAL, real transactions and foreign key enforcement.

    `foreign_keys=False` and `sqlite_begin="BEGIN IMMEDIATE"` exist for migrations: SQLite batch
    mode rebuilds tables by copying them, which enforced foreign keys would break or cascade
    through, and taking the write lock up front makes concurrent upgrades wait for each other.
    `pool` bounds a server database's connections (the defaults when None); SQLite ignores it.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        limits = pool or PoolLimits()
        return create_engine(parsed, echo=echo, pool_pre_ping=True, pool_size=limits.size,
                             max_overflow=limits.overflow, pool_timeout=limits.timeout)
    in_memory = _is_sqlite_memory(parsed)
    if not in_memory:
        private_database_files(Path(str(parsed.database)))
    engine = create_engine(parsed, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
    _configure_sqlite(engine, foreign_keys=foreign_keys, in_memory=in_memory)
    _emit_sqlite_begin(engine, sqlite_begin)
    return engine


def private_database_files(database: Path) -> None:
    """Make the SQLite file and its `-wal`/`-shm` companions 0600, creating the file so if it is new.

    SQLite creates a database with the process's umask (0644 typically) and gives the companions the
    main file's mode, so a file created 0600 keeps them private too; files left by an older version
    or another umask are narrowed here, on every start. The store holds password hashes, sealed
    secrets and the audit log: nobody but the service user may read it, whatever the directory."""
    if database.parent.is_dir() and not database.exists():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        try:
            if path.exists() and stat.S_IMODE(path.stat().st_mode) != 0o600:
                path.chmod(0o600)
        except PermissionError:
            log.warning("cannot make %s private (mode 0600): not its owner", path)


def _is_sqlite_memory(url: URL) -> bool:
    """WAL needs a file; `sqlite://` and `:memory:` databases keep their own journal mode."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _configure_sqlite(engine: Engine, *, foreign_keys: bool, in_memory: bool) -> None:
    """Set per-connection pragmas, since SQLite forgets them with every new connection."""
    database = None if in_memory else Path(str(engine.url.database))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own implicit BEGIN skips DDL; see below
        if database is not None:  # before WAL mode creates the companions, which copy the file's mode
            private_database_files(database)
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
    recipe for proper transactions with pysqlite. A connection whose execution options carry
    `SQLITE_BEGIN_OPTION` (the store's write sessions) begins with that statement instead.
    """

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(SQLITE_BEGIN_OPTION, statement))
