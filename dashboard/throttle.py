"""Login rate limit: a Redis counter of failed attempts per user and client address.

Redis, not process memory, because `tidegate serve` may run as several processes or machines; the
counter expires by itself, so a locked-out user waits `window` seconds at most.
"""

from __future__ import annotations

import hashlib

from redis import Redis
from redis.exceptions import RedisError


class LoginThrottle:
    def __init__(self, redis: Redis, *, limit: int = 5, window: int = 300) -> None:
        self.redis, self.limit, self.window = redis, limit, window

    def _key(self, user: str, address: str) -> str:
        digest = hashlib.sha256(f"{user.lower()}\0{address}".encode()).hexdigest()[:32]
        return f"tidegate:login-failures:{digest}"

    def retry_after(self, user: str, address: str) -> int | None:
        """Seconds until `user` may try again from `address`, or None when not locked out."""
        key = self._key(user, address)
        try:
            failures = int(self.redis.get(key) or 0)
            if failures < self.limit:
                return None
            ttl = int(self.redis.ttl(key))
        except RedisError:
            return self.window  # fail closed: without the counter there is no limit
        return max(ttl, 1)

    def failed(self, user: str, address: str) -> None:
        key = self._key(user, address)
        try:
            with self.redis.pipeline() as pipe:
                pipe.incr(key)
                pipe.expire(key, self.window, nx=True)
                pipe.execute()
        except RedisError:
            return

    def succeeded(self, user: str, address: str) -> None:
        try:
            self.redis.delete(self._key(user, address))
        except RedisError:
            return
