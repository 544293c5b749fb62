"""The local client: writes made again when SQLite gave the write lock to a worker, and who it acts as."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.access import AccessRefused, Permission, local_principal
from store import Database, StoreBusy, User
from tidegate.client import retried_when_busy


def test_a_write_that_lost_the_race_is_made_again_until_it_lands() -> None:
    calls: list[str] = []

    @retried_when_busy(attempts=5, pause=0.0)
    def write(name: str) -> str:
        calls.append(name)
        if len(calls) < 3:
            raise StoreBusy("the store is busy: database is locked")
        return f"wrote {name}"

    assert write("sync") == "wrote sync" and calls == ["sync"] * 3


def test_a_store_that_stays_busy_is_reported_after_the_last_attempt() -> None:
    calls = 0

    @retried_when_busy(attempts=4, pause=0.0)
    def write() -> None:
        nonlocal calls
        calls += 1
        raise StoreBusy("the store is busy: database is locked")

    with pytest.raises(StoreBusy):
        write()
    assert calls == 4


def test_without_users_the_local_cli_is_single_user_and_names_itself_with_as(tmp_path: Path) -> None:
    """Single-user mode: the person at the terminal holds the data directory and every permission;
    `--as` only names them (audited `local LOGIN as NAME`). Once users exist it is over."""
    database = Database.embedded(tmp_path)
    database.upgrade()
    with database.session() as session:
        me, named = local_principal(session, "ops", None), local_principal(session, "ops", "paula")
        assert (me.name, me.audit_name, me.can(Permission.APPROVE, "infra/production")) == ("ops", "ops", True)
        assert (named.name, named.audit_name) == ("paula", "local ops as paula")

        session.add(User(name="ops"))
        session.flush()
        with pytest.raises(AccessRefused, match="only an admin"):
            local_principal(session, "ops", "paula")
        assert not local_principal(session, "ops", None).can(Permission.APPROVE, "infra/production")
        with pytest.raises(AccessRefused, match="no enabled Tidegate user named like your login 'eve'"):
            local_principal(session, "eve", None)
    database.dispose()
