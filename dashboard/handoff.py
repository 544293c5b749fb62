"""Actions that must queue work inside their transaction: a broker outage refuses them with 503.

A poll leaves no record the sweeper could find again, so it is queued before the action's
transaction commits: when the broker does not take it, the transaction (and its audit row) rolls
back and the caller gets 503 with Retry-After — nothing recorded, nothing lost. Work whose record
outlives the outage (a pending or approved sync) uses `reconciler.runtime.hand_off` instead.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, status

from reconciler.runtime import QueueUnavailable

RETRY_AFTER = 30
"""Seconds a client is asked to wait when the broker is down."""


class QueueDown(HTTPException):
    """503 + Retry-After: the broker did not take the work; nothing was recorded."""

    def __init__(self, error: QueueUnavailable) -> None:
        super().__init__(status.HTTP_503_SERVICE_UNAVAILABLE, "the work queue is unavailable, so nothing was "
                         f"recorded; try again shortly ({error})", headers={"Retry-After": str(RETRY_AFTER)})


def queue_or_refuse(send: Callable[[], None]) -> None:
    """Send inside the caller's transaction; QueueDown (which rolls it back) when the broker is down."""
    try:
        send()
    except QueueUnavailable as error:
        raise QueueDown(error) from error
