"""A worker's heartbeat in Redis says whether what it left held may be broken."""

from __future__ import annotations

import threading
import time
import uuid

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from reconciler import heartbeats
from tidegate.redis_server import EmbeddedRedis, redis_client


def _worker() -> str:
    return f"vm-{uuid.uuid4().hex[:8]}:{time.monotonic_ns() % 100000}"


def test_a_beating_worker_is_alive_and_a_silent_one_dead_after_its_ttl(redis_server: EmbeddedRedis) -> None:
    redis: Redis = redis_client(redis_server.client_url)
    worker, stop = _worker(), threading.Event()
    heartbeats.keep_beating(redis, worker, stop, every=0.2, ttl=1)
    time.sleep(1.5)  # past one TTL: the refreshes keep it
    assert heartbeats.is_dead(redis, worker) is False

    killed = _worker()
    heartbeats.beat(redis, killed, ttl=1)  # then nothing: as a SIGKILLed process
    assert heartbeats.is_dead(redis, killed) is False
    time.sleep(1.6)
    assert heartbeats.is_dead(redis, killed) is True
    stop.set()


def test_a_worker_never_recorded_is_unknown_not_dead(redis_server: EmbeddedRedis) -> None:
    assert heartbeats.is_dead(redis_client(redis_server.client_url), _worker()) is None


def test_an_unreachable_redis_knows_nothing(redis_server: EmbeddedRedis) -> None:
    # No retries: redis-py's default (3, with exponential backoff) only makes the refusal take ~4 s.
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    assert heartbeats.is_dead(unreachable, _worker()) is None
