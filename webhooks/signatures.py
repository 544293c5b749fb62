"""Proof that a delivery comes from the Git host: each host's signature scheme, checked in constant time.

GitHub signs the raw body with HMAC-SHA256 (`X-Hub-Signature-256: sha256=<hex>`), Gitea sends the
bare hex digest (`X-Gitea-Signature`), the generic receiver uses GitHub's format under its own name
(`X-Tidegate-Signature`) over `<X-Tidegate-Timestamp>.<body>`, and GitLab sends the shared secret
itself (`X-Gitlab-Token`). Every
comparison goes through `hmac.compare_digest`, so the time a check takes tells a forger nothing
about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import time

PREFIX = "sha256="
TIMESTAMP_HEADER = "x-tidegate-timestamp"
MAX_SKEW = 300
"""Seconds a generic delivery's signed timestamp may differ from this server's clock."""


def hex_digest(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the raw body, as lower-case hex (what senders put in their headers)."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "surrogateescape"))


def valid_prefixed(secret: str, body: bytes, header: str) -> bool:
    """GitHub and generic: `sha256=<hex>` (the algorithm prefix is part of what is compared)."""
    return _same(PREFIX + hex_digest(secret, body), header.strip().lower())


def valid_hex(secret: str, body: bytes, header: str) -> bool:
    """Gitea: the bare hex digest."""
    return _same(hex_digest(secret, body), header.strip().lower())


def valid_token(secret: str, header: str) -> bool:
    """GitLab: the secret token itself, compared in constant time."""
    return _same(secret, header)


def stamped(timestamp: str | None, body: bytes, now: float | None = None) -> bytes | str:
    """What a generic delivery's signature covers: `<timestamp>.<body>`, or why it is refused.

    The body alone would let a captured delivery be replayed forever under a new delivery id; with
    the sender's clock in the signed bytes, a copy is worthless after `MAX_SKEW` seconds (and the
    receivers remember accepted digests for longer than that)."""
    value = (timestamp or "").strip()
    if not value.isdigit() or len(value) > 12:
        return f"missing or invalid {TIMESTAMP_HEADER} header (unix seconds, signed with the body)"
    skew = abs((time.time() if now is None else now) - int(value))
    if skew > MAX_SKEW:
        return f"{TIMESTAMP_HEADER} is {int(skew)} s away from this server's clock (at most {MAX_SKEW} s)"
    return value.encode("ascii") + b"." + body
