"""Sync records: creating them, and the one state machine every change of status goes through.

pending → planning → awaiting_approval → approved → applying → succeeded | failed, and superseded
from any state before applying. Every transition made while holding an environment lock checks the
lock's fencing token first: a worker that lost its lock (it paused longer than the lock's life, or
it was presumed dead) can no longer write, so two workers never both move one sync.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler.locks import Lease, LockLost
from store import Environment, Revision, Sync, SyncLifecycle, SyncTrigger, utcnow

log = logging.getLogger(__name__)

L = SyncLifecycle
ACTIVE = (L.PENDING, L.PLANNING, L.AWAITING_APPROVAL, L.APPROVED, L.APPLYING)
TERMINAL = (L.SUCCEEDED, L.FAILED, L.SUPERSEDED)
ALLOWED: dict[SyncLifecycle, frozenset[SyncLifecycle]] = {
    L.PENDING: frozenset({L.PLANNING, L.FAILED, L.SUPERSEDED}),
    L.PLANNING: frozenset({L.PENDING, L.PLANNING, L.AWAITING_APPROVAL, L.APPROVED, L.FAILED, L.SUPERSEDED}),
    L.AWAITING_APPROVAL: frozenset({L.APPROVED, L.FAILED, L.SUPERSEDED, L.PLANNING}),
    L.APPROVED: frozenset({L.APPLYING, L.FAILED, L.SUPERSEDED, L.PLANNING}),
    L.APPLYING: frozenset({L.SUCCEEDED, L.FAILED, L.AWAITING_APPROVAL, L.SUPERSEDED}),
    L.SUCCEEDED: frozenset(),
    L.FAILED: frozenset(),
    L.SUPERSEDED: frozenset(),
}


class TransitionRefused(RuntimeError):
    """A status change the state machine does not allow (a bug or a stale worker)."""


def transition(sync: Sync, status: SyncLifecycle, lease: Lease | None = None, *, error: str | None = None) -> None:
    """Move `sync` to `status`, fenced by `lease` when given; sets start/finish times."""
    if lease is not None:
        if not lease.check():
            raise LockLost(f"lost the environment lock (token {lease.token}) before setting sync {sync.id} {status}")
        if sync.fencing_token is not None and sync.fencing_token > lease.token:
            raise LockLost(f"sync {sync.id} was taken over by token {sync.fencing_token} (ours {lease.token})")
        sync.fencing_token = lease.token
    if status not in ALLOWED[sync.status] and status != sync.status:
        raise TransitionRefused(f"sync {sync.id}: {sync.status} → {status} is not allowed")
    log.info("sync %s: %s -> %s", sync.id, sync.status, status)
    sync.status = status
    if status in (L.PLANNING, L.APPLYING) and sync.started_at is None:
        sync.started_at = utcnow()
    if status in TERMINAL:
        sync.finished_at = utcnow()
    if error is not None:
        sync.error = error


def active_syncs(session: Session, environment_id: int) -> Sequence[Sync]:
    query = select(Sync).where(Sync.environment_id == environment_id, Sync.status.in_(ACTIVE)).order_by(Sync.id)
    return session.scalars(query).all()


def newer_revision(session: Session, sync: Sync) -> str | None:
    """Why `sync`'s health wait should stop: a later sync of the same environment, for another
    revision, waits to plan (None when there is none). Flux cancels a health check the same way, so
    a fix pushed during a failing rollout is applied without waiting out the timeout."""
    query = (select(Sync).where(Sync.environment_id == sync.environment_id, Sync.id > sync.id,
                                Sync.revision_id != sync.revision_id,
                                Sync.status.in_((L.PENDING, L.PLANNING)))
             .order_by(Sync.id.desc()).limit(1))
    newer = session.scalars(query).first()
    if newer is None:
        return None
    sha = newer.revision.sha[:12] if newer.revision is not None else "a newer revision"
    return f"sync #{newer.id} of {sha} is ready to plan"


def request(session: Session, environment: Environment, revision: Revision, trigger: SyncTrigger) -> tuple[Sync, bool]:
    """The sync that will bring `environment` to `revision`: an active one for that revision if there
    is one (requests are idempotent), else a new pending one. Older active syncs that have not
    started applying are superseded. Returns (sync, created)."""
    for sync in active_syncs(session, environment.id):
        if sync.revision_id == revision.id:
            return sync, False
    for sync in active_syncs(session, environment.id):
        if sync.status is not L.APPLYING:
            transition(sync, L.SUPERSEDED, error=f"superseded by a sync of {revision.sha[:12]}")
    sync = Sync(environment_id=environment.id, revision_id=revision.id, trigger=trigger, status=L.PENDING)
    session.add(sync)
    session.flush()
    return sync, True
