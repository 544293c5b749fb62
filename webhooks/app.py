"""The webhook endpoints of `tidegate serve`: `POST /webhooks/{github,gitlab,gitea,generic}`.

Composition only: each route reads the body under a size cap (413 before reading past it) and
hands it to `Receiver.handle` in the thread pool, so a database write never blocks the event loop.
A broker outage answers 503 with Retry-After (never a 500), having recorded nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from reconciler.preview_tasks import CeleryPreviewQueue, PreviewQueue
from reconciler.runtime import QueueUnavailable, Services
from store import GitHost
from webhooks.receiver import MAX_BODY, Answer, Receiver, WebhookSettings, refused

log = logging.getLogger(__name__)
RETRY_AFTER = 30
"""Seconds a host is asked to wait before delivering again when the broker is down."""

DESCRIPTIONS = {
    GitHost.GITHUB: "GitHub: `X-Hub-Signature-256` (HMAC-SHA256), `X-GitHub-Event`, `X-GitHub-Delivery`.",
    GitHost.GITLAB: "GitLab: `X-Gitlab-Token`, `X-Gitlab-Event`, `X-Gitlab-Event-UUID`.",
    GitHost.GITEA: "Gitea: `X-Gitea-Signature` (hex HMAC-SHA256), `X-Gitea-Event`, `X-Gitea-Delivery`.",
    GitHost.GENERIC: "Generic: `X-Tidegate-Signature: sha256=<hex HMAC-SHA256>`, `X-Tidegate-Event` (push, "
                     "ping), `X-Tidegate-Delivery`; body `{\"repository\": {\"url\": ...}, \"ref\": ...}`.",
}


def create_router(services: Services, settings: WebhookSettings,
                  previews: PreviewQueue | None = None) -> APIRouter:
    """The four receivers; `previews` defaults to the Celery `preview` queue."""
    receiver = Receiver(services, settings, previews or CeleryPreviewQueue())
    router = APIRouter(prefix="/webhooks", tags=["webhooks"])
    for host in GitHost:
        router.add_api_route(f"/{host.value}", _endpoint(receiver, host), methods=["POST"],
                             summary=f"Receive a {host.value} webhook", description=DESCRIPTIONS[host],
                             status_code=202, response_model=Answer)
    return router


def _endpoint(receiver: Receiver, host: GitHost) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def receive(request: Request) -> JSONResponse:
        body = await read_capped(request, MAX_BODY)
        if isinstance(body, Answer):
            return _json(body)
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            return _json(await run_in_threadpool(receiver.handle, host, headers, body))
        except QueueUnavailable as error:
            return unavailable(host, error)
    receive.__name__ = f"receive_{host.value}"
    return receive


def unavailable(host: GitHost, error: QueueUnavailable) -> JSONResponse:
    """The broker is down: the delivery's transaction rolled back, so nothing is recorded and the
    host's redelivery is a first delivery, not a replay. 503 + Retry-After asks the host to send it again."""
    log.warning("webhook %s refused with 503: %s", host.value, error)
    answer = refused(503, "the queue is unavailable; nothing was recorded, deliver again later")
    return JSONResponse(answer.model_dump(exclude={"status_code"}), status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER)})


async def read_capped(request: Request, limit: int) -> bytes | Answer:
    """The body, or a refusal: 413 as soon as the declared or the streamed size passes `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            return refused(400, "invalid Content-Length")
        if int(declared) > limit:
            return refused(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return refused(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.model_dump(exclude={"status_code"}), status_code=answer.status_code)
