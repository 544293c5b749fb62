"""Progress of a sync people can watch (`sync --wait`, `approve --wait`): which stage, which step,
for how long, and counts where the stage's live log says them.

Read from what every client already returns (`show_sync`: the sync's status, its stages' rows with
their start and their live log, the plan's changes), so it works in-process and over HTTP alike.
Counts: what the running stage reports (`StageContext.on_progress`, kept in its result's summary
while it runs, `reconciler.livelogs`): Kubernetes objects applied / total, Ansible hosts done /
total through the running task. Terraform resources done / planned come from the `... complete`
lines Terraform prints as each resource finishes (in the live log). Before a stage reports, the
count of changes its plan holds is shown.

On a terminal a rich status line is redrawn in place; otherwise one line is printed per change of
state, and a heartbeat line with the elapsed time when nothing changed for `HEARTBEAT` seconds,
so a log file or CI job never goes silent while something runs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console

from tidegate.client import FINISHED, Client, SyncView

HEARTBEAT = 10.0
"""Seconds of silence after which a plain (non-terminal) watcher prints that it still waits."""
SETTLED = (*FINISHED, "awaiting_approval")
_TF_DONE = re.compile(r": (Creation|Modifications|Destruction) complete")
_STEP = {"pending": "queued", "planning": "plan", "awaiting_approval": "approval", "approved": "apply",
         "applying": "apply"}


@dataclass(frozen=True)
class SyncProgress:
    sync_id: int
    status: str
    stage: str | None
    step: str
    done: int | None
    total: int | None
    noun: str

    def state(self) -> str:
        """What changed-or-not is judged on (no elapsed time in it)."""
        counts = f": {self.done}/{self.total} {self.noun}" if self.done is not None and self.total else (
            f": {self.total} {self.noun} planned" if self.total else "")
        where = f" {self.stage}" if self.stage else ""
        return f"sync #{self.sync_id} {self.status}{where} ({self.step}){counts}"


def progress_of(view: SyncView) -> SyncProgress:
    """Where the sync is: the stage that is applying (or the last one that ran), its step and counts."""
    running = next((stage for stage in view.stages if stage.status == "applying"), None)
    if running is None:
        return SyncProgress(view.id, view.status, None, _STEP.get(view.status, "done"), None, None, "")
    planned = view.plan.get(running.stage) or {}
    total = len(planned.get("changes") or []) or None
    step = "apply and health" if running.stage == "workloads" else "apply"
    reported = running.summary.get("progress")
    if isinstance(reported, dict):  # the stage's own count (StageContext.on_progress)
        return SyncProgress(view.id, view.status, running.stage, step, int(reported["done"]),
                            int(reported["total"]), str(reported["unit"]))
    if running.stage == "infrastructure":
        return SyncProgress(view.id, view.status, running.stage, "apply",
                            len(_TF_DONE.findall(running.log)), total, "resources")
    noun = "host tasks" if running.stage == "configuration" else "objects"
    return SyncProgress(view.id, view.status, running.stage, step, None, total, noun)


def watch_sync(client: Client, sync_id: int, timeout: float, console: Console, *, period: float = 1.0,
               heartbeat: float = HEARTBEAT) -> SyncView | None:
    """Follow a sync until it settles (finished, or waiting for approval); None after `timeout`."""
    deadline = time.monotonic() + timeout
    shown, said_at = "", 0.0
    status = console.status("") if console.is_terminal else None
    if status is not None:
        status.start()
    try:
        while time.monotonic() < deadline:
            view = client.show_sync(sync_id)
            state, elapsed = progress_of(view).state(), _since(view)
            if status is not None:
                status.update(f"{state} [dim]{elapsed}[/dim]")
            elif state != shown or time.monotonic() - said_at >= heartbeat:
                console.print(f"{state}, {elapsed}" + ("" if state != shown else " (still running)"), markup=False)
                said_at = time.monotonic()
            shown = state
            if view.status in SETTLED:
                return view
            time.sleep(period)
    finally:
        if status is not None:
            status.stop()
    return None


def _since(view: SyncView) -> str:
    """Elapsed since the sync was created, as `42s` or `3m07s`."""
    seconds = max(0, round((datetime.now(UTC) - view.created_at).total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
