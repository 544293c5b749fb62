"""When each environment's drift is checked: every `driftInterval` after its last check.

Like polls, the next due time lives in Redis (`tidegate:drift:next`) and is moved on atomically,
so any number of beat ticks check each environment once per interval. The interval comes from the
environment's synced revision (read once per revision and remembered).
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select

from reconciler import repositories
from reconciler.runtime import Services
from repo_schema.issues import InvalidRepo
from repo_schema.loader import load_repo
from store import Environment

NEXT_DRIFT = "tidegate:drift:next"


@lru_cache(maxsize=256)
def _interval(checkout: Path, environment: str) -> float | None:
    try:
        loaded = load_repo(checkout)
    except InvalidRepo:
        return None
    if environment not in loaded.environments:
        return None
    return loaded.sync_policy(environment).drift_interval.total_seconds()


def due_checks(services: Services, *, now: float | None = None) -> list[int]:
    """Synced environments whose drift check is due."""
    now = time.time() if now is None else now
    due: list[int] = []
    with services.database.session() as session:
        for env in session.scalars(select(Environment).where(Environment.synced_revision_id.is_not(None))):
            raw = services.redis.hget(NEXT_DRIFT, str(env.id))
            if raw is not None and float(raw) > now:
                continue
            assert env.synced_revision is not None
            interval = _interval(repositories.checkout(services, env.repository, env.synced_revision.sha), env.name)
            if interval is None:
                continue
            if raw is None:  # first sight: the sync that just happened was a full comparison
                services.redis.hset(NEXT_DRIFT, str(env.id), now + interval)
                continue
            if services.redis.hset(NEXT_DRIFT, str(env.id), now + interval) == 0:
                due.append(env.id)
    return due
