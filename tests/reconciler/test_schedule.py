"""Poll scheduling: interval plus jitter, each repository once per interval, however many ticks."""

from __future__ import annotations

import threading

from reconciler import schedule
from reconciler.runtime import Services
from store import Repository


def _repositories(services: Services, *intervals: int) -> list[int]:
    with services.database.session() as session:
        rows = [Repository(name=f"r{i}", url="/x", poll_interval_seconds=interval)
                for i, interval in enumerate(intervals)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def test_a_new_repository_is_due_at_once_then_after_its_interval_plus_jitter(services: Services) -> None:
    (repo,) = _repositories(services, 120)
    assert schedule.due_polls(services, now=1000.0, jitter=60) == [repo]
    assert schedule.due_polls(services, now=1119.0, jitter=60) == []
    following = float(services.redis.hget(schedule.NEXT_POLL, str(repo)) or 0)
    assert 1120.0 <= following <= 1180.0
    assert schedule.due_polls(services, now=following + 0.001, jitter=60) == [repo]


def test_concurrent_ticks_poll_each_repository_once(services: Services) -> None:
    ids = _repositories(services, 60, 60, 60)
    found: list[int] = []
    lock = threading.Lock()

    def tick() -> None:
        due = schedule.due_polls(services, now=5000.0)
        with lock:
            found.extend(due)

    threads = [threading.Thread(target=tick) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(found) == sorted(ids)
