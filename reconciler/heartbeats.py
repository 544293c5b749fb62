"""Each worker process's heartbeat in Redis, so that what it left held can be judged after it dies.

A worker killed mid-apply leaves Terraform's state lock behind, naming it (providers/terraform/
holders.py). Breaking that lock is safe only once the worker is dead: its terraform ran under
bwrap `--die-with-parent`, so it died too. Every process that runs tasks (each prefork child, whose
identity `services.owner` is `host:pid`) keeps `tidegate:heartbeat:<owner>` alive with a TTL from a
thread of its own, and records itself in the `tidegate:workers` hash when it starts.

* key present: alive;
* key gone but the worker recorded: dead (SIGKILL, OOM, lost machine: the thread died with it);
* never recorded: unknown (not one of ours, or Redis lost its data): never judged dead.

Why not Celery's own worker heartbeats: they are per worker node (`celery@host`), not per pool
child that runs the task and holds the lock, and they travel as events that need `-E` and a
receiver listening at the moment the worker dies; a key with a TTL is a fact any process can read.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "tidegate:heartbeat:"
WORKERS = "tidegate:workers"
REFRESH_SECONDS = 10.0
TTL_SECONDS = 30
"""A dead worker is known dead at most this long after it died (three missed refreshes)."""


def beat(redis: Redis, worker: str, ttl: int = TTL_SECONDS) -> None:
    """Say `worker` is alive for `ttl` seconds more, and that it is one of ours."""
    try:
        with redis.pipeline() as pipe:
            pipe.set(PREFIX + worker, str(time.time()), ex=ttl)
            pipe.hsetnx(WORKERS, worker, str(time.time()))
            pipe.execute()
    except RedisError as error:
        log.warning("could not publish the heartbeat of %s: %s", worker, error)


def keep_beating(redis: Redis, worker: str, stop: threading.Event, *, every: float = REFRESH_SECONDS,
                 ttl: int = TTL_SECONDS) -> threading.Thread:
    """Beat now and every `every` seconds until `stop` is set, then withdraw (a daemon thread: it
    dies with its process, which is the point)."""
    beat(redis, worker, ttl)

    def loop() -> None:
        while not stop.wait(every):
            beat(redis, worker, ttl)
        with contextlib.suppress(RedisError):
            redis.delete(PREFIX + worker)

    thread = threading.Thread(target=loop, name="heartbeat", daemon=True)
    thread.start()
    return thread


def is_dead(redis: Redis, worker: str) -> bool | None:
    """True when `worker` was one of ours and its heartbeat is gone, False while it beats, None
    when it was never recorded (or Redis cannot tell: the caller must not act on that)."""
    try:
        if redis.exists(PREFIX + worker):
            return False
        return True if redis.hexists(WORKERS, worker) else None
    except RedisError as error:
        log.warning("could not read the heartbeat of %s: %s", worker, error)
        return None
