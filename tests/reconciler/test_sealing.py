"""A worker's seal report reaches Redis soon after Redis comes up, not a whole refresh later."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from redis import Redis

from providers.sealed import SealStatus
from reconciler import sealing
from tests.support.polling import wait_until
from tests.support.redis_server import start_redis


def test_a_worker_started_before_its_redis_is_reported_within_seconds_of_redis_coming_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "redis"
    directory.mkdir()
    client = Redis(unix_socket_path=str(directory / "redis.sock"), socket_connect_timeout=1)
    stop = threading.Event()
    thread = sealing.keep_publishing(client, "worker-1:7", SealStatus(sealed=True, reason="bubblewrap"), stop)
    try:
        wait_until(lambda: "could not publish" in caplog.text or None, 30, "the first publish failing",
                   interval=0.1)  # nothing listens yet (redis-py retried before giving up)
        with start_redis(directory):
            started = time.monotonic()
            reports = wait_until(lambda: sealing.reports(client) or None, sealing.REFRESH_SECONDS,
                                 "the worker's seal report in Redis", interval=0.2)
            waited = time.monotonic() - started
            assert [report.worker for report in reports] == ["worker-1:7"]
            assert waited < sealing.REFRESH_SECONDS / 2, f"reported {waited:.1f} s after Redis came up"
            stop.set()
            thread.join(5)
            assert sealing.reports(client) == [], "a stopping worker withdraws its report"
    finally:
        stop.set()
        client.close()
