"""Routine log lines of the worker and beat at DEBUG, so their INFO log says what happened.

Beat queues the poll tick, the drift tick and the sweeper every few seconds, and Celery logs each
task's receipt and success at INFO: an idle installation wrote four lines every five seconds, and a
sync's lines drowned among them. Those records are demoted to DEBUG here (shown as DEBUG with
`TIDEGATE_LOG_LEVEL=DEBUG`, dropped at INFO): a tick's receipt and its success when it queued
nothing, beat's "sending due task" of a tick, a poll's receipt and its success when the head had
not moved and nothing was planned, and httpx's line per HTTP request. A tick that queued work,
every other task, and every warning or failure keep their level.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from reconciler.task_names import Task

TICKS = frozenset({str(Task.SCHEDULE), str(Task.DRIFT_TICK), str(Task.SWEEP)})
"""Tasks beat sends on a timer."""
QUIET_WHEN_RECEIVED = TICKS | {str(Task.POLL)}
IDLE_RETURNS = frozenset({"[]", "None"})
LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat", "httpx")
"""Where Celery logs a task's receipt, its success, and beat's sending of a due task; httpx logs
every request it makes (a preview's calls to the Git host) at INFO."""


class RoutineRecords(logging.Filter):
    """Demotes routine records (see the module) to DEBUG; drops them when DEBUG is not enabled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not routine(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def routine(record: logging.LogRecord) -> bool:
    """Whether an INFO record of Celery's is one of the per-tick ones."""
    message = str(record.msg)
    if record.name == "httpx":
        return message.startswith("HTTP Request:")
    if record.name == "celery.beat":
        args = record.args if isinstance(record.args, tuple) else ()
        return message.startswith("Scheduler: Sending due task") and len(args) == 2 and str(args[1]) in TICKS
    fields: Mapping[str, Any] = record.args if isinstance(record.args, Mapping) else {}
    name = str(fields.get("name", ""))
    if message.startswith("Task %(name)s[%(id)s] received"):
        return name in QUIET_WHEN_RECEIVED
    if message.startswith("Task %(name)s[%(id)s] succeeded"):
        returned = str(fields.get("return_value", ""))
        if name in TICKS:
            return returned in IDLE_RETURNS
        return name == str(Task.POLL) and idle_poll(returned)
    return False


def idle_poll(returned: str) -> bool:
    """A poll's result (as Celery shows it) said: the head did not move, nothing planned, no error."""
    return all(part in returned for part in ("'moved': False", "'planned': []", "'error': None"))


def install() -> None:
    """Attach the filter to the loggers Celery writes these records with (once per process)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RoutineRecords) for existing in logger.filters):
            logger.addFilter(RoutineRecords())
