"""The sweeper: finds syncs whose worker vanished and hands them to a live one.

The broker redelivers an unacknowledged task only after its visibility timeout (which must exceed
the longest Terraform run); the environment lock expires much sooner. A sync that is planning,
approved or applying while nobody holds its environment's lock has lost its worker: the sweeper
queues it again, and the task's own checks decide what that means (planning restarts — plans have
no side effects; applying is failed and re-planned, never re-applied). Pending syncs that nobody
queued (a lost message) are queued again too.

This makes a sync's own row the outbox of the API: a sync requested or approved while the broker
was down is committed as `pending` or `approved`, the request is answered 202, and the first sweep
after the broker is back queues it (`runtime.hand_off`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from reconciler.locks import EnvironmentLock
from reconciler.pipeline import lock_name
from reconciler.runtime import QueueUnavailable, Services
from reconciler.syncs import L
from store import Sync, utcnow

log = logging.getLogger(__name__)


def sweep(services: Services, *, pending_grace: float = 60.0) -> list[int]:
    """Queue again every orphaned sync; returns their ids."""
    now = utcnow()
    orphaned: list[tuple[int, bool]] = []
    with services.database.session() as session:
        query = select(Sync).where(Sync.status.in_((L.PENDING, L.PLANNING, L.APPROVED, L.APPLYING)))
        for sync in session.scalars(query):
            env = sync.environment
            holder = EnvironmentLock(services.redis, lock_name(env.repository.name, env.name)).current()
            if holder is not None:
                continue
            if sync.status is L.PENDING and (now - sync.created_at < timedelta(seconds=pending_grace)
                                             or (sync.error or "").startswith("waiting:")):
                continue  # a waiting sync is queued again when what it waits for succeeds
            orphaned.append((sync.id, sync.status in (L.APPROVED, L.APPLYING)))
    # Each orphan is queued once per lock lifetime: the task takes the lock long before that, and
    # a queue that is merely busy must not fill with copies of the same request.
    orphaned = [(sync_id, applying) for sync_id, applying in orphaned
                if services.redis.set(_queued_key(sync_id), 1, nx=True, ex=int(max(60.0, services.lock_ttl * 2)))]
    sent: list[int] = []
    for sync_id, applying in orphaned:
        try:
            if applying:
                services.queue.apply(sync_id)
            else:
                services.queue.plan(sync_id)
        except QueueUnavailable as error:  # try these again at the next sweep, not a lock lifetime later
            services.redis.delete(*(_queued_key(s) for s, _ in orphaned if s not in sent))
            log.warning("sweep stopped, the broker is unavailable: %s", error)
            break
        sent.append(sync_id)
    return sent


def _queued_key(sync_id: int) -> str:
    return f"tidegate:sweep:queued:{sync_id}"
