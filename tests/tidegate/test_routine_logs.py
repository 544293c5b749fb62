"""An idle worker's INFO log stays quiet: beat's ticks, their receipts and their empty results, and
polls that found nothing are DEBUG lines; the work itself keeps its INFO lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

from tidegate import routine_logs
from tidegate.redis_server import EmbeddedRedis

IDLE_POLL = "{'head': 'abc', 'moved': False, 'planned': [], 'error': None}"


def _record(logger: str, message: str, args: dict[str, object] | tuple[str, ...]) -> logging.LogRecord:
    """A record as Celery makes it: a dict of fields (one mapping argument) or positional arguments."""
    return logging.LogRecord(logger, logging.INFO, __file__, 1, message, (args,) if isinstance(args, dict) else args,
                             None)


def _success(name: str, returned: str) -> logging.LogRecord:
    return _record("celery.app.trace", LOG_SUCCESS, {"id": "1", "name": name, "return_value": returned,
                                                      "runtime": 0.01, "args": "()", "kwargs": "{}"})


@pytest.mark.parametrize("record,quiet", [
    pytest.param(_record("celery.worker.strategy", LOG_RECEIVED, {"id": "1", "name": "tidegate.schedule"}), True,
                 id="poll-tick-received"),
    pytest.param(_success("tidegate.drift_tick", "[]"), True, id="drift-tick-that-queued-nothing"),
    pytest.param(_success("tidegate.sweep", "[]"), True, id="sweep-that-found-nothing"),
    pytest.param(_record("celery.beat", "Scheduler: Sending due task %s (%s)", ("poll-tick", "tidegate.schedule")),
                 True, id="beat-sends-a-tick"),
    pytest.param(_record("celery.worker.strategy", LOG_RECEIVED, {"id": "1", "name": "tidegate.poll"}), True,
                 id="poll-received"),
    pytest.param(_success("tidegate.poll", IDLE_POLL), True, id="poll-whose-head-did-not-move"),
    pytest.param(_success("tidegate.poll", IDLE_POLL.replace("'moved': False", "'moved': True")), False,
                 id="poll-that-found-a-new-head"),
    pytest.param(_success("tidegate.poll", IDLE_POLL.replace("'error': None", "'error': 'ls-remote failed'")),
                 False, id="poll-that-failed"),
    pytest.param(_success("tidegate.drift_tick", "[3]"), False, id="drift-tick-that-queued-a-check"),
    pytest.param(_record("celery.worker.strategy", LOG_RECEIVED, {"id": "1", "name": "tidegate.apply"}), False,
                 id="apply-received"),
    pytest.param(_record("celery.beat", "Scheduler: Sending due task %s (%s)", ("x", "tidegate.drift")), False,
                 id="beat-sends-a-drift-check"),
    pytest.param(_record("httpx", "HTTP Request: %s %s", ("GET", "http://198.51.100.7/api/v1")), True,
                 id="an-http-request-to-the-git-host"),
])
def test_only_per_tick_records_are_demoted_to_debug(record: logging.LogRecord, quiet: bool) -> None:
    kept = routine_logs.RoutineRecords().filter(record)

    assert (kept, record.levelname) == ((False, "DEBUG") if quiet else (True, "INFO"))


def _run_idle(tmp: Path, redis: EmbeddedRedis, level: str, enough: Callable[[str], bool],
              timeout: float = 30.0) -> tuple[str, str]:
    """`tidegate worker` and `tidegate beat` on an empty store with a fast tick, run until their two
    logs together are `enough` (or `timeout` seconds after the worker is ready); their two logs."""
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(tmp / "data"), "TIDEGATE_REDIS_URL": redis.client_url,
           "TIDEGATE_SCHEDULER_TICK": "0.5", "TIDEGATE_SWEEP_INTERVAL": "1", "TIDEGATE_LOG_LEVEL": level}
    subprocess.run([sys.executable, "-m", "tidegate", "init"], env=env, check=True, capture_output=True)
    logs = {name: tmp / f"{name}-{level}.log" for name in ("worker", "beat")}
    processes = [subprocess.Popen([sys.executable, "-m", "tidegate", name, *(["--concurrency", "1"]
                                                                             if name == "worker" else [])],
                                  env=env, stdout=path.open("wb"), stderr=subprocess.STDOUT)
                 for name, path in logs.items()]
    try:
        deadline = time.monotonic() + 60
        while " ready." not in logs["worker"].read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        deadline = time.monotonic() + timeout
        while not enough(logs["worker"].read_text() + logs["beat"].read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    return logs["worker"].read_text(), logs["beat"].read_text()


@pytest.mark.integration
def test_an_idle_worker_logs_its_ticks_only_at_debug(tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    """One run at DEBUG shows both halves: the ticks happen, and none of their lines is INFO (at INFO,
    the level every installation runs at, DEBUG records are dropped: the table above)."""
    worker, beat = _run_idle(tmp_path, redis_server, "DEBUG", enough=lambda logs: len(_tick_lines(logs)) >= 8)

    assert " ready." in worker, worker
    tick_lines = _tick_lines(worker + beat)
    assert len(tick_lines) >= 8, worker + beat
    assert [line for line in tick_lines if "DEBUG" not in line] == []


def _tick_lines(logs: str) -> list[str]:
    """The log lines about beat's ticks (the worker's start banner, which lists every task, aside)."""
    return [line for line in logs.splitlines()
            if ("Task tidegate." in line or "Sending due task" in line)
            and any(tick in line for tick in routine_logs.TICKS)]
