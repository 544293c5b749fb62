"""The store's session: a transaction that lost SQLite's write race says so as `StoreBusy`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from store import Database, Repository, StoreBusy, sqlite_url
from store.migrate import upgrade


def test_a_read_then_write_after_another_commit_is_busy_not_a_crash(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    upgrade(url)
    first, second = Database(url), Database(url)
    try:
        with first.session() as session:
            session.add(Repository(name="infra", url="file:///infra"))
        with pytest.raises(StoreBusy, match="database is locked"), first.session() as reader:
            repository = reader.scalars(select(Repository)).one()  # this transaction's snapshot starts here
            with second.session() as writer:
                writer.scalars(select(Repository)).one().url = "file:///moved"
            repository.url = "file:///mine"
            reader.flush()
        with first.session() as session:
            assert session.scalars(select(Repository)).one().url == "file:///moved", "the lost write left nothing"
    finally:
        first.dispose()
        second.dispose()
