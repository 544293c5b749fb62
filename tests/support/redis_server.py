"""A real Redis for tests: the very server `tidegate up` runs, started in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tidegate.redis_server import EmbeddedRedis


@contextmanager
def start_redis(tmp_dir: Path, binary: Path | None = None) -> Iterator[EmbeddedRedis]:
    """Yield a running EmbeddedRedis whose socket and AOF live in `tmp_dir`; stopped on exit."""
    with EmbeddedRedis(tmp_dir, binary=binary) as server:
        yield server
