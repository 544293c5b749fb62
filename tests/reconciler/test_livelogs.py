"""A running stage's lines reach its result row in batches, redacted, and capped (reconciler.livelogs),
over a real SQLite store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.livelogs import LiveLog, Progress
from store import Database, Environment, Repository, Stage, Sync, SyncStageResult, SyncTrigger
from store.redaction import MASK, remember


class CountedLiveLog(LiveLog):
    """A live log that counts its writes to the store."""

    writes = 0

    def _append(self, text: str, progress: Progress | None) -> None:
        self.writes += 1
        super()._append(text, progress)


@pytest.fixture
def row(tmp_path: Path) -> Iterator[tuple[Database, int]]:
    """(the store, the id of a stage result row of a sync being applied)."""
    database = Database.embedded(tmp_path)
    database.upgrade()
    with database.session() as session:
        repository = Repository(name="infra", url="/dev/null")
        session.add(repository)
        session.flush()
        env = Environment(repository_id=repository.id, name="staging")
        session.add(env)
        session.flush()
        sync = Sync(environment_id=env.id, trigger=SyncTrigger.MANUAL)
        session.add(sync)
        session.flush()
        result = SyncStageResult(sync_id=sync.id, stage=Stage.WORKLOADS)
        session.add(result)
        session.flush()
        row_id = result.id
    yield database, row_id
    database.dispose()


def stored(database: Database, row_id: int) -> str:
    with database.session() as session:
        return session.get_one(SyncStageResult, row_id).log


def test_five_thousand_lines_are_a_handful_of_writes_not_five_thousand(row: tuple[Database, int]) -> None:
    database, row_id = row
    live = CountedLiveLog(database, row_id, batch=500)
    with live:
        for n in range(5000):
            live(f"Deployment web-{n}: configured")
    assert stored(database, row_id).splitlines() == [f"Deployment web-{n}: configured" for n in range(5000)]
    assert live.writes <= 12


def test_a_line_reaches_the_store_within_the_interval_while_the_stage_runs(row: tuple[Database, int]) -> None:
    database, row_id = row
    with LiveLog(database, row_id, interval=0.2) as live:
        live("aws_vpc.main: Creating...")
        deadline = time.monotonic() + 2.0
        while not stored(database, row_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored(database, row_id) == "aws_vpc.main: Creating...\n", "stored before the stage ended"
    assert live.streamed


def test_a_registered_secret_is_masked_in_the_stored_lines(row: tuple[Database, int]) -> None:
    database, row_id = row
    remember("s3cr3t-token-for-live-logs")
    with LiveLog(database, row_id) as live:
        live("password=s3cr3t-token-for-live-logs")
    assert stored(database, row_id) == f"password={MASK}\n"


def test_past_the_limit_lines_are_counted_not_kept(row: tuple[Database, int]) -> None:
    database, row_id = row
    with LiveLog(database, row_id, limit=20) as live:
        for line in ("0123456789", "abcdefgh", "left out", "this too"):
            live(line)
    assert stored(database, row_id).splitlines() == [
        "0123456789", "abcdefgh", "… 2 more lines not kept here (the live log holds 20 characters)"]


def test_the_latest_count_reaches_the_summary_while_the_stage_runs_in_few_writes(row: tuple[Database, int]) -> None:
    """A stage reporting each of 2,000 objects makes a handful of writes; readers see the latest count
    before the stage ends, next to the summary's other keys."""
    database, row_id = row
    with database.session() as session:
        session.get_one(SyncStageResult, row_id).summary = {"plan": "+2000 ~0 -0"}
    live = CountedLiveLog(database, row_id, interval=0.2)
    with live:
        for done in range(2001):
            live.progress(done, 2000, "objects")
        deadline = time.monotonic() + 2.0
        while summary(database, row_id).get("progress", {}).get("done") != 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert summary(database, row_id) == {"plan": "+2000 ~0 -0",
                                             "progress": {"done": 2000, "total": 2000, "unit": "objects"}}
    assert live.writes <= 3 and not live.streamed, "counts are no log lines"


def summary(database: Database, row_id: int) -> dict[str, Any]:
    with database.session() as session:
        return dict(session.get_one(SyncStageResult, row_id).summary or {})
