"""Password hashes: scrypt with a random salt, so a stolen users table does not give passwords away.

scrypt is memory-hard (stdlib, no extra wheel); the parameters are stored with each hash so they can
be raised later without invalidating existing passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_N, _R, _P, _LEN = 2**14, 8, 1, 32
_SCHEME = "scrypt"
_DUMMY = f"{_SCHEME}${_N}${_R}${_P}${base64.b64encode(b'0' * 16).decode()}${base64.b64encode(b'0' * _LEN).decode()}"


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$hash` (base64 parts) of `password` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=_LEN)
    return "$".join([_SCHEME, str(_N), str(_R), str(_P), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches `stored`; takes as long for a missing hash, so timing names no users."""
    try:
        scheme, n, r, p, salt, expected = (stored or _DUMMY).split("$")
        digest = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(base64.b64decode(expected)), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return stored is not None and scheme == _SCHEME and hmac.compare_digest(digest, base64.b64decode(expected))
