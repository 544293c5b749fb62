"""Drift's Celery tasks (`shared_task`: only `tidegate/` builds the app)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from drift import detect, schedule
from reconciler.runtime import services
from reconciler.task_names import Task
from reconciler.tasks import RETRY


@shared_task(name=Task.DRIFT, **RETRY)
def drift(environment_id: int, trigger: str = "schedule") -> dict[str, Any]:
    observation = detect.check(services(), environment_id, trigger)
    return {"environment": observation.environment, "items": len(observation.items), "errors": observation.errors,
            "report": observation.report_id, "heal": observation.heal_sync_id, "skipped": observation.skipped}


@shared_task(name=Task.DRIFT_TICK, acks_late=False, ignore_result=True)
def tick() -> list[int]:
    svc = services()
    due = schedule.due_checks(svc)
    for environment_id in due:
        svc.queue.drift(environment_id, "schedule")
    return due
