"""A running stage's log, reaching the store while the stage runs.

A stage hands each line of its log to `StageContext.on_line` as it has it (Terraform's `-json`
messages, each Ansible event's output). `LiveLog` is that sink for a sync: it buffers the lines and
appends them to the stage's `SyncStageResult.log` in the store, at most every `interval` seconds or
once `batch` lines wait — so a 5,000-object apply is a few dozen small writes, not 5,000.

Why the store and not a Redis stream: the stage result row is already where every reader looks
(`tidegate show --logs`, `tidegate logs`, the API, the dashboard's server-sent events, which send
what the row gained since their last look), on every machine, in both the SQLite and the
PostgreSQL installations; it is kept after the sync ends and after Redis restarts, and the column
redacts every registered secret on write as the rest of the logs are redacted
(`store.types.RedactedText`). A stream would be a second copy with its own trimming, its own
reader in every client and its own redaction, for a latency (sub-second) nobody reading a
Terraform apply needs. The log only grows while the stage runs (whole lines, in order), so a
reader that remembers how much it has seen reads only what is new.

The same writes carry the stage's count (`StageContext.on_progress`: objects applied, hosts done)
into the row's summary as `progress`, which `sync --wait` and `up` show while the stage runs; the
summary written when the stage ends replaces it.

A stage that streams keeps that log when it ends; one that cannot (it has no per-line output) has
its whole log written once at the end, as before. A live log is capped at `LIMIT` characters:
past that, one line says how much was left out (the stage's own artifacts keep everything).
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import NamedTuple

from store import Database, StoreBusy, SyncStageResult

log = logging.getLogger(__name__)

LIMIT = 200_000
"""Characters of one stage's log kept in the store (as for the log written at the end)."""
INTERVAL = 0.5
"""Seconds between two writes of one stage's log, at most (a line waits no longer than this)."""
BATCH = 500
"""Lines that make a write at once, without waiting for the interval."""


class Progress(NamedTuple):
    """How far a running stage is: `done` of `total` `unit` (objects, hosts)."""

    done: int
    total: int
    unit: str


class LiveLog:
    """The line sink of one stage result row: `log(line)` from any thread; used as a context
    manager, a background thread writes the buffered lines and the last ones are written on exit."""

    def __init__(self, database: Database, row_id: int, *, interval: float = INTERVAL, batch: int = BATCH,
                 limit: int = LIMIT) -> None:
        self.database = database
        self.row_id = row_id
        self.interval = interval
        self.batch = batch
        self.limit = limit
        self.written = 0
        """Characters appended to the row so far."""
        self.dropped = 0
        """Lines left out past the limit."""
        self._pending: list[str] = []
        self._progress: Progress | None = None
        """The last count the stage reported, until it is written."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._writer = threading.Thread(target=self._run, name=f"live-log-{row_id}", daemon=True)

    def __call__(self, line: str) -> None:
        """Take one line (without its newline); it reaches the store within `interval` seconds."""
        with self._lock:
            self._pending.append(line)
            full = len(self._pending) >= self.batch
        if full:
            self._wake.set()

    def progress(self, done: int, total: int, unit: str) -> None:
        """Take the stage's latest count (`StageContext.on_progress`); the stage result's summary
        holds it as `progress` within `interval` seconds (only the latest is kept)."""
        with self._lock:
            self._progress = Progress(done, total, unit)

    @property
    def streamed(self) -> bool:
        """Whether any line reached the store (the stage's log is then this one)."""
        return self.written > 0

    def __enter__(self) -> LiveLog:
        self._writer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stopped.set()
        self._wake.set()
        self._writer.join(timeout=30)
        self.flush(final=True)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        """Append the waiting lines to the row. A busy store keeps them for the next write (never
        the stage's failure); on the final flush it is tried a few more times."""
        with self._lock:
            lines, self._pending = self._pending, []
            progress, self._progress = self._progress, None
        text = self._within_limit(lines, final=final)
        if not text and progress is None:
            return
        for attempt in range(5 if final else 1):
            try:
                self._append(text, progress)
                self.written += len(text)
                return
            except StoreBusy:
                if not final:
                    with self._lock:  # tried again at the next write, before the newer lines
                        self._pending[:0] = text.splitlines()
                        self._progress = self._progress or progress
                    return
                threading.Event().wait(0.2 * (attempt + 1))
        log.warning("stage result %s: %d characters of live log could not be stored", self.row_id, len(text))

    def _within_limit(self, lines: list[str], *, final: bool) -> str:
        """The lines that still fit under the limit, as text; a note of what was left out at the end."""
        kept: list[str] = []
        room = self.limit - self.written
        for line in lines:
            if self.dropped == 0 and len(line) + 1 <= room:
                kept.append(line)
                room -= len(line) + 1
            else:
                self.dropped += 1
        text = "".join(f"{line}\n" for line in kept)
        if final and self.dropped:
            text += f"… {self.dropped} more lines not kept here (the live log holds {self.limit} characters)\n"
        return text

    def _append(self, text: str, progress: Progress | None) -> None:
        with self.database.session(write=True) as session:
            row = session.get_one(SyncStageResult, self.row_id)
            if text:
                row.log = (row.log or "") + text
            if progress is not None:  # a new dict: the JSON column sees the change
                row.summary = {**(row.summary or {}), "progress": progress._asdict()}
