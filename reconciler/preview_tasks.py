"""Celery tasks for pull requests: the preview of a PR head, a member's go-ahead for a waiting head,
and the recount of PR review approvals.

Both run on the `preview` queue, so a slow Terraform apply or a long poll never delays a PR's
comment. The webhook receivers only enqueue (`PreviewQueue`); the work happens here.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from celery import shared_task

from reconciler import previews
from reconciler.hosts import approvals
from reconciler.runtime import services
from reconciler.task_names import Task
from reconciler.tasks import RETRY, send

log = logging.getLogger(__name__)

RECOUNT_WAIT = 30.0
"""Seconds between looks for the merged revision's sync while it is still being planned."""
RECOUNT_TRIES = 60


class PreviewQueue(Protocol):
    """How receivers hand PR work to a worker (Celery in production, a recorder in tests); each
    method raises `runtime.QueueUnavailable` when the broker cannot take the message."""

    def preview(self, request: previews.PreviewRequest) -> None: ...

    def recount(self, request: approvals.RecountRequest) -> None: ...

    def go_ahead(self, request: previews.GoAheadRequest) -> None: ...


@shared_task(name=Task.PREVIEW, **{**RETRY, "max_retries": 3})
def preview(request: dict[str, Any]) -> dict[str, Any]:
    outcome = previews.run(services(), previews.PreviewRequest.model_validate(request))
    return outcome.model_dump(mode="json")


@shared_task(name=Task.GO_AHEAD, **{**RETRY, "max_retries": 3})
def go_ahead(request: dict[str, Any]) -> dict[str, Any]:
    outcome = previews.go_ahead(services(), previews.GoAheadRequest.model_validate(request))
    if not outcome.accepted:
        log.info("/tidegate preview not honoured: %s", outcome.reason)
    return outcome.model_dump(mode="json")


@shared_task(name=Task.RECOUNT, bind=True, acks_late=True, max_retries=RECOUNT_TRIES)
def recount(self: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Count PR review approvals; while the merged revision is still being planned, look again later."""
    outcome = approvals.recount(services(), approvals.RecountRequest.model_validate(request))
    if outcome.waiting:
        raise self.retry(countdown=RECOUNT_WAIT)
    return outcome.model_dump(mode="json")


class CeleryPreviewQueue:
    """`PreviewQueue` over Celery: every task goes to the `preview` queue."""

    def preview(self, request: previews.PreviewRequest) -> None:
        send(Task.PREVIEW, [request.model_dump(mode="json")], Task.PREVIEW.queue)

    def recount(self, request: approvals.RecountRequest) -> None:
        send(Task.RECOUNT, [request.model_dump(mode="json")], Task.RECOUNT.queue)

    def go_ahead(self, request: previews.GoAheadRequest) -> None:
        send(Task.GO_AHEAD, [request.model_dump(mode="json")], Task.GO_AHEAD.queue)
