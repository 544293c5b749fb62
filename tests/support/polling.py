"""Waiting for a running system to reach a state: the one polling loop the process-level suites share
(tests/support/system.py, tests/cluster, the swarm deploy test), so each says only what to explain
when the wait times out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float, what: str, explain: Callable[[], str] = str,
               interval: float = 0.5) -> T:
    """Poll `check` until it returns something truthy and return that; at the timeout fail naming `what`,
    followed by `explain()` (the logs, what is unfinished), which runs only then."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{explain()}")
        time.sleep(interval)
