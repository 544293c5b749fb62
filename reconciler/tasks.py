"""The reconciler's Celery tasks (`shared_task`: only `tidegate/` builds the app).

Queues by kind of work (`poll`, `plan`, `apply`, `drift`, `preview`) so a slow Terraform apply
never delays a poll. Every task is idempotent by its record (a sync knows how far it got), is
acknowledged late (a worker killed mid-task leaves it to be redelivered), and retries with
exponential backoff and jitter on `Transient` errors (and a busy SQLite store) only.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app, shared_task

from reconciler import pipeline, repositories, schedule, sweeper
from reconciler.errors import Transient
from reconciler.runtime import services
from store import StoreBusy, SyncTrigger

log = logging.getLogger(__name__)

RETRY: dict[str, Any] = {
    "autoretry_for": (Transient, StoreBusy),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": None,
    "acks_late": True,
    "reject_on_worker_lost": True,
}


@shared_task(name="tidegate.poll", **{**RETRY, "max_retries": 3})
def poll(repository_id: int, trigger: str = SyncTrigger.POLL.value) -> dict[str, Any]:
    result = repositories.poll(services(), repository_id, SyncTrigger(trigger))
    return {"head": result.head, "moved": result.moved, "planned": list(result.planned), "error": result.error}


@shared_task(name="tidegate.plan", **RETRY)
def plan(sync_id: int) -> None:
    pipeline.plan_sync(services(), sync_id)


@shared_task(name="tidegate.apply", **RETRY)
def apply(sync_id: int) -> None:
    pipeline.apply_sync(services(), sync_id)


@shared_task(name="tidegate.schedule", acks_late=False, ignore_result=True)
def tick() -> list[int]:
    """Beat: queue the polls that are due (drift has its own tick in drift/)."""
    svc = services()
    due = schedule.due_polls(svc, jitter=svc.poll_jitter)
    for repository_id in due:
        svc.queue.poll(repository_id)
    return due


@shared_task(name="tidegate.sweep", acks_late=False, ignore_result=True)
def sweep() -> list[int]:
    return sweeper.sweep(services())


class CeleryQueue:
    """`runtime.Queue` over Celery: each step goes to its queue by task name."""

    def plan(self, sync_id: int, *, countdown: float = 0.0) -> None:
        current_app.send_task("tidegate.plan", args=[sync_id], queue="plan", countdown=countdown or None)

    def apply(self, sync_id: int) -> None:
        current_app.send_task("tidegate.apply", args=[sync_id], queue="apply")

    def poll(self, repository_id: int) -> None:
        current_app.send_task("tidegate.poll", args=[repository_id], queue="poll")

    def drift(self, environment_id: int, trigger: str) -> None:
        current_app.send_task("tidegate.drift", args=[environment_id, trigger], queue="drift")
