"""Redis locks with fencing tokens: one lock per environment, and leader election for live watches.

A Redis lock can be lost without its holder noticing (a long GC pause, a stalled worker, an
expiry during a partition), so a lock alone does not make applies exclusive. Every acquire
therefore gets a fencing token from a counter that never goes backwards; it is stored with the
sync, and holders `check()`/`ensure()` the lease before every state change so a stale holder stops
instead of overwriting a newer one. All compare-and-act steps are Lua scripts, so they are atomic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis
from redis.commands.core import Script

log = logging.getLogger(__name__)

# KEYS: lock, fence counter. ARGV: owner, ttl ms. Returns the new token, or false if the lock is held.
_ACQUIRE = """
if redis.call('exists', KEYS[1]) == 1 then return false end
local token = redis.call('incr', KEYS[2])
redis.call('set', KEYS[1], token .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return token
"""
# KEYS: lock. ARGV: value, ttl ms. Extends the expiry only while the value is still ours.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: lock. ARGV: value. Deletes only our own lock, never a later holder's.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LockHeld(Exception):
    """A blocking acquire timed out; `owner` is who held the lock at that moment (None if it just freed)."""

    def __init__(self, key: str, owner: str | None, token: int | None) -> None:
        super().__init__(f"{key} is held by {owner!r} (fencing token {token})")
        self.key, self.owner, self.token = key, owner, token


class LockLost(Exception):
    """The lease expired or was taken over; the holder must stop before changing any state."""


@dataclass(frozen=True)
class _Scripts:
    acquire: Script
    renew: Script
    release: Script

    @classmethod
    def register(cls, client: redis.Redis) -> _Scripts:
        return cls(client.register_script(_ACQUIRE), client.register_script(_RENEW), client.register_script(_RELEASE))


@dataclass
class Lease:
    """One successful acquire. `token` orders holders: a larger token always belongs to a later one."""

    token: int
    owner: str
    key: str
    ttl: float
    _client: redis.Redis = field(repr=False)
    _scripts: _Scripts = field(repr=False)
    # Local deadline measured from *before* each acquire/renew request, so it never outlives the key.
    _valid_until: float = field(repr=False)
    lost: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def value(self) -> str:
        return f"{self.token}:{self.owner}"

    def renew(self) -> bool:
        """Extend the expiry by `ttl`; False (and the lease marked lost) if it is no longer ours."""
        if self.lost.is_set():
            return False
        started = time.monotonic()
        if self._scripts.renew(keys=[self.key], args=[self.value, _ms(self.ttl)], client=self._client) == 1:
            self._valid_until = started + self.ttl
            return True
        self.lost.set()
        return False

    def release(self) -> bool:
        """Give the lock up; False if it had already expired (a later holder's lock is left alone)."""
        self.lost.set()
        return bool(self._scripts.release(keys=[self.key], args=[self.value], client=self._client))

    def check(self) -> bool:
        """Still ours? Unreachable Redis counts as no: a holder that cannot prove ownership must stop."""
        if self.lost.is_set() or time.monotonic() >= self._valid_until:
            return False
        try:
            return _text(self._client.get(self.key)) == self.value
        except redis.RedisError:
            log.warning("cannot reach Redis to check %s; treating the lease as lost", self.key)
            return False

    def ensure(self) -> None:
        """Raise LockLost unless the lease is still ours; call it before every state change."""
        if not self.check():
            self.lost.set()
            raise LockLost(f"{self.key} (token {self.token}, owner {self.owner!r}) is no longer held")

    @contextmanager
    def keepalive(self, interval: float | None = None) -> Iterator[Lease]:
        """Renew in a daemon thread every `interval` (ttl/3) while the block runs; on failure set `lost`."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._renew_until, args=(stop, interval or self.ttl / 3), name=f"keepalive {self.key}", daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def _renew_until(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval) and not self.lost.is_set():
            try:
                if not self.renew():
                    log.warning("lost %s (token %s): renewal refused", self.key, self.token)
                    return
            except redis.RedisError as error:
                # Retry on the next tick while that can still be in time; otherwise give up now.
                if time.monotonic() + interval >= self._valid_until:
                    log.warning("lost %s (token %s): cannot renew: %s", self.key, self.token, error)
                    self.lost.set()
                    return


class _FencedLock:
    """A lock key with its own never-decreasing fencing counter; shared by both public locks."""

    def __init__(self, client: redis.Redis, key: str, fence_key: str, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.client, self.key, self.fence_key, self.ttl = client, key, fence_key, ttl
        self._scripts = _Scripts.register(client)

    def try_acquire(self, owner: str) -> Lease | None:
        started = time.monotonic()
        token = self._scripts.acquire(keys=[self.key, self.fence_key], args=[owner, _ms(self.ttl)], client=self.client)
        if token is None:
            return None
        return Lease(int(token), owner, self.key, self.ttl, self.client, self._scripts, started + self.ttl)

    def acquire(self, owner: str, blocking_timeout: float | None) -> Lease | None:
        deadline = None if blocking_timeout is None else time.monotonic() + blocking_timeout
        delay = 0.005
        while (lease := self.try_acquire(owner)) is None:
            if deadline is not None and time.monotonic() >= deadline:
                if blocking_timeout == 0:
                    return None
                holder = self.current()
                raise LockHeld(self.key, holder[1] if holder else None, holder[0] if holder else None)
            pause = delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0.0))
            time.sleep(pause)
            delay = min(delay * 2, 0.1)
        return lease

    def current(self) -> tuple[int, str] | None:
        value = _text(self.client.get(self.key))
        if value is None:
            return None
        token, _, owner = value.partition(":")
        return int(token), owner


class EnvironmentLock:
    """The lock that keeps two workers from planning or applying one environment at once."""

    def __init__(self, client: redis.Redis, name: str, ttl: float = 60.0) -> None:
        self.name = name
        self._lock = _FencedLock(client, f"tidegate:lock:env:{name}", f"tidegate:fence:env:{name}", ttl)

    @property
    def key(self) -> str:
        return self._lock.key

    def acquire(self, owner: str, blocking_timeout: float | None = 0) -> Lease | None:
        """Take the lock. 0 tries once (None if held); a positive timeout waits then raises LockHeld;
        None waits for as long as it takes."""
        return self._lock.acquire(owner, blocking_timeout)

    def current(self) -> tuple[int, str] | None:
        """(token, owner) of the live holder, or None when the environment is free."""
        return self._lock.current()


class LeaderLock:
    """Leader election: exactly one process runs the work (e.g. the live Kubernetes watches) at a time.

    If the leader dies its key expires and another candidate takes over within `ttl` plus one
    `retry_interval`; if the leader merely stalls, its failed renewal sets the event its work watches.
    """

    def __init__(self, client: redis.Redis, name: str, ttl: float = 15.0, retry_interval: float | None = None) -> None:
        self.name = name
        self.retry_interval = retry_interval or ttl / 5
        self._lock = _FencedLock(client, f"tidegate:lock:leader:{name}", f"tidegate:fence:leader:{name}", ttl)

    def current(self) -> tuple[int, str] | None:
        """(token, owner) of the current leader, or None."""
        return self._lock.current()

    def run(self, owner: str, on_elected: Callable[[threading.Event], None], stop: threading.Event) -> None:
        """Campaign until `stop` is set. While elected, `on_elected(lost)` runs in a thread and must
        return soon after `lost` is set: on lost leadership, on `stop`, or before the lease is released."""
        while not stop.is_set():
            try:
                lease = self._lock.try_acquire(owner)
            except redis.RedisError as error:
                log.warning("leader election %s: %s", self.name, error)
                lease = None
            if lease is None:
                stop.wait(self.retry_interval)
                continue
            self._lead(lease, on_elected, stop)
            if not stop.is_set():
                # Do not re-elect ourselves in a tight loop when the work keeps ending at once.
                stop.wait(self.retry_interval)

    def _lead(self, lease: Lease, on_elected: Callable[[threading.Event], None], stop: threading.Event) -> None:
        log.info("%s is leader of %s (token %s)", lease.owner, self.name, lease.token)
        work = threading.Thread(target=on_elected, args=(lease.lost,), name=f"leader {self.name}", daemon=True)
        with lease.keepalive():
            work.start()
            poll = min(self.retry_interval, 0.5)
            while work.is_alive() and not lease.lost.is_set() and not stop.wait(poll):
                pass
            lease.lost.set()
            work.join()
        try:
            lease.release()
        except redis.RedisError as error:
            log.warning("could not release leadership of %s (it expires by itself): %s", self.name, error)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: object) -> str | None:
    """GET's result as text, whether the client decodes responses or not."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
