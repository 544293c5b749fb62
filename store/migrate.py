"""Schema migrations, run from code: callers need no alembic.ini, only a database URL.

The Alembic environment lives inside the package (`store/migrations/`), so an installed wheel can
upgrade its own database. Upgrades take a lock first (an advisory lock on PostgreSQL; on SQLite an
exclusive lock on a file beside the database, then the write lock) so that an API, a worker and a
scheduler starting together migrate once. The file lock matters on SQLite: a second connection
opened while the first migrates a new database asks for the write lock while holding a read lock,
which SQLite refuses at once ("database is locked") rather than wait, to avoid a deadlock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, make_url, text

from store.engine import create_database_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_ID = 0x7469646567617465
"""PostgreSQL advisory lock key ("tidegate" in ASCII) held while migrating."""


class MigrationError(Exception):
    """A migration left the database inconsistent (for example rows violating a foreign key)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code; with `connection`, env.py migrates over that connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (default: the latest); a no-op when already there."""
    with migration_connection(url) as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Downgrade the database at `url` to `revision` (`base` empties it); for operators and tests."""
    with migration_connection(url) as connection:
        command.downgrade(alembic_config(connection), revision)


def head_revision() -> str:
    """The revision the code expects the schema to be at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(url: str | URL) -> str | None:
    """The revision the database at `url` is at, or None for an empty database."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


@contextmanager
def migration_connection(url: str | URL) -> Iterator[Connection]:
    """A locked transaction to migrate in; committed only if the migrations left no dangling keys."""
    with _sqlite_file_lock(url):
        engine = create_database_engine(url, foreign_keys=False, sqlite_begin="BEGIN IMMEDIATE")
        try:
            with engine.begin() as connection:
                _lock(connection)
                yield connection
                _check_foreign_keys(connection)
        finally:
            engine.dispose()


@contextmanager
def _sqlite_file_lock(url: str | URL) -> Iterator[None]:
    """Hold `<database>.migrate.lock` exclusively (SQLite files only; a no-op elsewhere)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or parsed.query.get("mode") == "memory":
        yield
        return
    fd = os.open(f"{database}.migrate.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lock(connection: Connection) -> None:
    """Serialise concurrent upgrades on PostgreSQL (SQLite's BEGIN IMMEDIATE already did)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID})


def _check_foreign_keys(connection: Connection) -> None:
    """SQLite migrates with foreign keys off (batch mode copies tables); verify them before commit."""
    if connection.dialect.name != "sqlite":
        return
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        raise MigrationError(f"migration left rows violating foreign keys: {violations[:10]}")
