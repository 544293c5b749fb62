"""Git poll latency per repository, kept in Redis as the counters of a Prometheus histogram.

Polls run in any worker process and the metrics are scraped from any `tidegate serve`, so the
counts live where both meet: one Redis hash per repository holding cumulative bucket counts, the
count and the sum. Recording never fails a poll; a lost sample only makes the histogram shorter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds. `ls-remote` costs ~7 ms on a file URL and ~50 to 70 ms over git daemon or HTTP; a poll
that finds a moved head also fetches and validates, which takes seconds."""
_PREFIX = "tidegate:metrics:git_poll:"


@dataclass(frozen=True)
class PollLatency:
    """One repository's histogram: cumulative counts per upper bound, then the total count and sum."""

    repository: str
    cumulative: tuple[tuple[float, int], ...]
    count: int
    total_seconds: float


def record(redis: Redis, repository: str, seconds: float) -> None:
    """Count one poll of `repository` that took `seconds`."""
    key = _PREFIX + repository
    pipe = redis.pipeline(transaction=False)
    for bound in BUCKETS:
        if seconds <= bound:
            pipe.hincrby(key, f"le:{bound}", 1)
    pipe.hincrby(key, "count", 1)
    pipe.hincrbyfloat(key, "sum", seconds)
    try:
        pipe.execute()
    except RedisError as error:
        log.debug("poll latency of %s not recorded: %s", repository, error)


def read(redis: Redis) -> list[PollLatency]:
    """Every repository's histogram, by name."""
    found: list[PollLatency] = []
    for key in sorted(redis.scan_iter(match=_PREFIX + "*")):
        fields = {_text(name): _text(value) for name, value in redis.hgetall(key).items()}
        if "count" not in fields:
            continue
        cumulative = tuple((bound, int(fields.get(f"le:{bound}", "0"))) for bound in BUCKETS)
        found.append(PollLatency(_text(key).removeprefix(_PREFIX), cumulative, int(fields["count"]),
                                 float(fields.get("sum", "0"))))
    return found


def counts(redis: Redis, repositories: list[str]) -> dict[str, int]:
    """How many polls of each of `repositories` were recorded so far (0 for none), in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for repository in repositories:
        pipe.hget(_PREFIX + repository, "count")
    return {repository: int(value or 0) for repository, value in zip(repositories, pipe.execute(), strict=True)}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
