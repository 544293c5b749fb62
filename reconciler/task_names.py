"""Every Celery task's name and queue, in one place.

Tasks are `shared_task`s in `reconciler/` and `drift/`; senders (the Celery queues), the worker's
routes and beat's schedule all name them through `Task`, so no module calls a task of another layer
by a string of its own, and renaming one cannot leave a sender behind.
"""

from __future__ import annotations

from enum import StrEnum


class Task(StrEnum):
    POLL = "tidegate.poll"
    SCHEDULE = "tidegate.schedule"
    SWEEP = "tidegate.sweep"
    PLAN = "tidegate.plan"
    APPLY = "tidegate.apply"
    DRIFT = "tidegate.drift"
    DRIFT_TICK = "tidegate.drift_tick"
    PREVIEW = "tidegate.preview"
    GO_AHEAD = "tidegate.preview_go_ahead"
    RECOUNT = "tidegate.review_recount"

    @property
    def queue(self) -> str:
        """The queue of its kind of work: a slow Terraform apply never delays a webhook's preview."""
        return QUEUES[self]


QUEUES: dict[Task, str] = {
    Task.POLL: "poll", Task.SCHEDULE: "poll", Task.SWEEP: "poll",
    Task.PLAN: "plan", Task.APPLY: "apply",
    Task.DRIFT: "drift", Task.DRIFT_TICK: "drift",
    Task.PREVIEW: "preview", Task.GO_AHEAD: "preview", Task.RECOUNT: "preview",
}
