"""Who holds a Terraform state lock, and whether this run may break it.

A sealed terraform command runs under a host name of its own (`run_hostname`) and writes
`user@host` into the lock it takes (`Who`). When the reconciler tells the stage which worker runs
it, that host name starts with the worker's identity, so a lock left by a worker that was killed
mid-apply names the worker; the reconciler's heartbeats then say whether that worker is dead.

The verdict decides what a run does with a lock it finds:

* `own`: this run's own terraform command left it (it has exited): release it by its ID;
* `dead`: the worker named in `Who` is known dead (its heartbeat is gone; its terraform died with
  it, bwrap runs it `--die-with-parent` in its own PID namespace): break it by its ID;
* `alive` / `unknown` (a live worker, a `Who` that names no worker, nobody to ask, or the question
  failed): never touched; the run waits, then fails with StateLocked naming the holder.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger(__name__)

_WORKER = re.compile(r"^[A-Za-z0-9._:-]{1,48}$")
_RUN_HOST = re.compile(r"^(?P<worker>[A-Za-z0-9._:-]{1,48})-tf[0-9a-f]{10}$")
_TAG = "w."
"""Marks a host name that starts with a worker's identity (one made without a worker starts with
the machine's name, which names no worker and must never be taken for one)."""


class Holder(StrEnum):
    """What is known of a state lock's holder."""

    own = "own"
    dead = "dead"
    alive = "alive"
    unknown = "unknown"


def run_hostname(worker: str | None = None) -> str:
    """A host name unique to one run: `w.<worker>-tf<random>` when the worker is known (and fits a
    host name), else this machine's name and the random suffix, e.g. `vm-tf3f9a0c21d4`."""
    suffix = f"-tf{secrets.token_hex(5)}"
    if worker is not None and _WORKER.match(worker):
        return f"{_TAG}{worker}{suffix}"
    if worker is not None:
        log.warning("worker identity %r does not fit a host name: the run's state locks will not name it", worker)
    machine = socket.gethostname().split(".")[0][:40] or "host"
    return f"{machine}{suffix}"


def worker_of(who: str) -> str | None:
    """The worker a lock's `Who` (`user@host`) names, or None when it names none."""
    user, at, host = who.strip().rpartition("@")
    if not at or not user or not host.startswith(_TAG):
        return None
    found = _RUN_HOST.match(host[len(_TAG):])
    return found.group("worker") if found else None


def judge(who: str, *, own_host: str | None, worker_dead: Callable[[str], bool | None] | None) -> Holder:
    """The verdict on a lock held by `who` (see the module's docstring); anything in doubt is
    `unknown`, which is never broken."""
    host = who.strip().rpartition("@")[2]
    if own_host is not None and "@" in who and host == own_host:
        return Holder.own
    worker = worker_of(who)
    if worker is None or worker_dead is None:
        return Holder.unknown
    try:
        dead = worker_dead(worker)
    except Exception as error:
        log.warning("could not tell whether worker %s is alive: %s", worker, error)
        return Holder.unknown
    if dead is True:
        return Holder.dead
    if dead is False:
        return Holder.alive
    return Holder.unknown
