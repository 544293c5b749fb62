"""Proof that a delivery comes from the Git host: each host's signature scheme, checked in constant time.

GitHub signs the raw body with HMAC-SHA256 (`X-Hub-Signature-256: sha256=<hex>`), Gitea sends the
bare hex digest (`X-Gitea-Signature`), the generic receiver uses GitHub's format under its own name
(`X-Tidegate-Signature`), and GitLab sends the shared secret itself (`X-Gitlab-Token`). Every
comparison goes through `hmac.compare_digest`, so the time a check takes tells a forger nothing
about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


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
