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
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from reconciler import pipeline, repositories, schedule, sweeper
from reconciler.errors import Transient
from reconciler.runtime import QueueUnavailable, services
from reconciler.task_names import Task
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


@shared_task(name=Task.POLL, **{**RETRY, "max_retries": 3})
def poll(repository_id: int, trigger: str = SyncTrigger.POLL.value) -> dict[str, Any]:
    result = repositories.poll(services(), repository_id, SyncTrigger(trigger))
    return {"head": result.head, "moved": result.moved, "planned": list(result.planned), "error": result.error}


@shared_task(name=Task.PLAN, **RETRY)
def plan(sync_id: int) -> None:
    pipeline.plan_sync(services(), sync_id)


@shared_task(name=Task.APPLY, **RETRY)
def apply(sync_id: int) -> None:
    pipeline.apply_sync(services(), sync_id)


@shared_task(name=Task.SCHEDULE, acks_late=False, ignore_result=True)
def tick() -> list[int]:
    """Beat: queue the polls that are due (drift has its own tick in drift/)."""
    svc = services()
    due = schedule.due_polls(svc, jitter=svc.poll_jitter)
    for repository_id in due:
        svc.queue.poll(repository_id)
    return due


@shared_task(name=Task.SWEEP, acks_late=False, ignore_result=True)
def sweep() -> list[int]:
    return sweeper.sweep(services())


PUBLISH_RETRY: dict[str, Any] = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
"""One quick reconnect (a pooled connection gone stale across a broker restart), then give up: a web
request waiting on Celery's default retries (or on a broker that stays down) would hang instead of
answering 503, and the host, the client or the sweeper sends again anyway."""


def send(task: str, args: list[Any], queue: str, countdown: float | None = None) -> None:
    """Publish one task; `QueueUnavailable` when the broker does not take it (nothing was sent)."""
    try:
        current_app.send_task(task, args=args, queue=queue, countdown=countdown, retry=True,
                              retry_policy=PUBLISH_RETRY)
    except (KombuOperationalError, RedisConnectionError, ConnectionError) as error:
        raise QueueUnavailable(f"the broker is unavailable, {task} was not queued: {error}") from error


class CeleryQueue:
    """`runtime.Queue` over Celery: each step goes to its queue by task name."""

    def plan(self, sync_id: int, *, countdown: float = 0.0) -> None:
        send(Task.PLAN, [sync_id], Task.PLAN.queue, countdown or None)

    def apply(self, sync_id: int) -> None:
        send(Task.APPLY, [sync_id], Task.APPLY.queue)

    def poll(self, repository_id: int) -> None:
        send(Task.POLL, [repository_id], Task.POLL.queue)

    def drift(self, environment_id: int, trigger: str) -> None:
        send(Task.DRIFT, [environment_id, trigger], Task.DRIFT.queue)
