"""What each worker's seal says, kept in Redis so that `tidegate status` and `/healthz` can tell.

A worker that cannot seal repository code (providers/sealed.py) refuses it: every plan, apply,
drift check and preview it takes fails with the reason. That must not be found only in its log,
so each worker publishes its seal status under its own key, refreshed while it lives and gone
(expired) soon after it dies; any server or CLI reads them all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading

from pydantic import BaseModel
from redis import Redis
from redis.exceptions import RedisError

from providers.sealed import SealStatus

log = logging.getLogger(__name__)

PREFIX = "tidegate:seal:"
REFRESH_SECONDS = 20.0
RETRY_SECONDS = 2.0
"""After a publish that failed (Redis not up yet: a worker and its broker started together), the
next try comes this soon, not a whole refresh later: a worker healthy and pingable must not be
missing from /healthz for 20 seconds."""
TTL_SECONDS = 60


class SealReport(BaseModel):
    """One worker's answer: sealed, or refusing repository code and why."""

    worker: str
    sealed: bool
    reason: str


def publish(redis: Redis, worker: str, status: SealStatus) -> bool:
    """Whether the report reached Redis."""
    report = SealReport(worker=worker, sealed=status.sealed, reason=status.reason)
    try:
        redis.set(PREFIX + worker, report.model_dump_json(), ex=TTL_SECONDS)
    except RedisError as error:
        log.warning("could not publish the seal status of %s: %s", worker, error)
        return False
    return True


def withdraw(redis: Redis, worker: str) -> None:
    """The worker stops: its report goes at once (it would expire anyway, after TTL_SECONDS)."""
    with contextlib.suppress(RedisError):
        redis.delete(PREFIX + worker)


def keep_publishing(redis: Redis, worker: str, status: SealStatus, stop: threading.Event) -> threading.Thread:
    """Publish now and every REFRESH_SECONDS (RETRY_SECONDS after a failure) until `stop` is set (a
    daemon thread of the worker)."""

    def loop() -> None:
        while True:
            published = publish(redis, worker, status)
            if stop.wait(REFRESH_SECONDS if published else RETRY_SECONDS):
                break
        withdraw(redis, worker)

    thread = threading.Thread(target=loop, name="seal-status", daemon=True)
    thread.start()
    return thread


def reports(redis: Redis) -> list[SealReport]:
    """Every live worker's report, sorted by worker name (empty when none runs or Redis is down)."""
    try:
        keys = sorted(redis.scan_iter(match=PREFIX + "*", count=100))
        values = redis.mget(keys) if keys else []
    except RedisError:
        return []
    found = []
    for value in values:
        if value:
            try:
                found.append(SealReport.model_validate(json.loads(value)))
            except ValueError:
                continue
    return found
