"""The local client's writes are made again when SQLite gave the write lock to a worker."""

from __future__ import annotations

import pytest

from store import StoreBusy
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
