"""When each API token was last used, kept in Redis so that a read-only request writes nothing.

Writing `api_tokens.last_used_at` on every bearer request turned every GET into a store write; on
SQLite only one writer runs at a time, so parallel readers failed (48 GETs, 16 at a time: 26 answered 503).
Redis takes the timestamp instead (one HSET, no lock), and the admin views read it back; the
column keeps what older versions wrote. Losing Redis loses only this bookkeeping, never a request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError

KEY = "tidegate:api-token-last-used"


class TokenUsage:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def seen(self, token_id: int) -> None:
        """Note that the token authenticated a request now (best effort)."""
        try:
            self.redis.hset(KEY, str(token_id), str(int(time.time())))
        except RedisError:
            return

    def last_used(self, token_ids: Iterable[int]) -> dict[int, datetime]:
        """The noted times of these tokens (those never noted, or everything when Redis is down, are absent)."""
        ids = list(token_ids)
        if not ids:
            return {}
        try:
            values = self.redis.hmget(KEY, [str(i) for i in ids])
        except RedisError:
            return {}
        return {i: datetime.fromtimestamp(int(v), UTC) for i, v in zip(ids, values, strict=True) if v is not None}

    def forget(self, token_ids: Iterable[int]) -> None:
        """Revoked tokens leave nothing behind (best effort)."""
        ids = [str(i) for i in token_ids]
        if not ids:
            return
        try:
            self.redis.hdel(KEY, *ids)
        except RedisError:
            return
