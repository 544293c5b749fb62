"""When each repository is polled: its interval plus a random jitter, as Argo CD 3 does.

The beat process ticks every few seconds; each tick asks `due_polls` which repositories are due
and queues a poll for each. The next due time lives in Redis (`tidegate:poll:next`), so any number
of beat restarts or ticks never polls a repository more often than its interval allows. A local
ref watch or a webhook polls at once, outside this schedule.
"""

from __future__ import annotations

import random
import time

from sqlalchemy import select

from reconciler.runtime import Services
from store import Repository

NEXT_POLL = "tidegate:poll:next"
DEFAULT_JITTER = 60.0


def due_polls(services: Services, *, now: float | None = None, jitter: float = DEFAULT_JITTER) -> list[int]:
    """Repositories whose next poll time has come; their next time is moved on atomically."""
    now = time.time() if now is None else now
    with services.database.session() as session:
        repositories = [(r.id, r.poll_interval_seconds) for r in session.scalars(select(Repository))]
    due: list[int] = []
    for repository_id, interval in repositories:
        field = str(repository_id)
        raw = services.redis.hget(NEXT_POLL, field)
        if raw is not None and float(raw) > now:
            continue
        following = now + interval + random.uniform(0, min(jitter, interval / 2))
        # HSET only if the value is still the one we read: two beat ticks never both poll.
        if _swap(services, field, raw, following):
            due.append(repository_id)
    return due


def poll_now(services: Services, repository_id: int, interval: float, jitter: float = DEFAULT_JITTER) -> None:
    """A poll happened outside the schedule (webhook, local watch): the next one starts from now."""
    services.redis.hset(NEXT_POLL, str(repository_id), time.time() + interval + random.uniform(0, jitter))


_SWAP = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current == false and ARGV[2] == '') or current == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


def _swap(services: Services, field: str, expected: bytes | str | None, value: float) -> bool:
    script = services.redis.register_script(_SWAP)
    old = expected.decode() if isinstance(expected, bytes) else (expected or "")
    return bool(script(keys=[NEXT_POLL], args=[field, old, repr(value)]))
