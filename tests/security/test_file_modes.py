"""Story: Tidegate is pointed at a data directory that already exists (made by `mkdir -p`, an image, a
volume), or finds a store written by an older version under a permissive umask. Other local users
must not be able to read the store (password hashes, sealed secrets, audit log): the directory
becomes 0700 and tidegate.db, -wal and -shm 0600, whatever they were.

Seen failing before the fix: the existing directory stayed 0755 and the three files 0644.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from store import Database
from tidegate.cli import app
from tidegate.settings import Settings
from tidegate.wiring import open_store

DATABASE_FILES = ("tidegate.db", "tidegate.db-wal", "tidegate.db-shm")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def write_something(database: Database) -> None:
    """Leave a WAL behind: a write, with the connection kept open so -wal and -shm exist."""
    with database.session() as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
        session.execute(text("INSERT INTO probe VALUES (1)"))


@pytest.mark.usefixtures("permissive_umask")
def test_an_existing_world_readable_data_dir_and_store_become_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    old = Database(f"sqlite:///{data / 'tidegate.db'}")  # an older version, under umask 022
    write_something(old)
    for name in DATABASE_FILES:
        (data / name).chmod(0o644)
    assert mode(data) == 0o755 and all(mode(data / name) == 0o644 for name in DATABASE_FILES)
    store = open_store(Settings(data_dir=data, secret_key=None, database_url=None))
    try:
        assert mode(data) == 0o700
        assert {name: mode(data / name) for name in DATABASE_FILES} == dict.fromkeys(DATABASE_FILES, 0o600)
        assert mode(data / "secret.key") == 0o600
    finally:
        store.database.dispose()
        old.dispose()


@pytest.mark.usefixtures("permissive_umask")
def test_a_new_store_is_private_from_its_first_byte(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    result = CliRunner().invoke(app, ["init"], env={"TIDEGATE_DATA_DIR": str(data), "TIDEGATE_SECRET_KEY": None,
                                                    "TIDEGATE_DATABASE_URL": None})
    assert result.exit_code == 0, result.output
    database = Database.embedded(data)
    try:
        write_something(database)
        assert mode(data) == 0o700
        assert {name: mode(data / name) for name in DATABASE_FILES} == dict.fromkeys(DATABASE_FILES, 0o600)
    finally:
        database.dispose()


def test_the_embedded_database_narrows_an_existing_directory(tmp_path: Path) -> None:
    data = tmp_path / "volume"
    data.mkdir(mode=0o777)
    data.chmod(0o777)
    database = Database.embedded(data)
    try:
        assert mode(data) == 0o700
        database.upgrade()
        with database.session() as session:
            session.execute(text("SELECT 1"))
        assert mode(data / "tidegate.db") == 0o600
    finally:
        database.dispose()
