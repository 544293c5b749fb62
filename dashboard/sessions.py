"""The dashboard's session cookie: signed (itsdangerous), expiring, and carrying its CSRF token.

The signing key is derived from Tidegate's secret key (TIDEGATE_SECRET_KEY or the data directory's
key file) with a purpose label, so the Fernet key itself never signs anything. The cookie holds a
stamp of the user's password hash: changing a password ends every session of that user.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "tidegate_session"
LOGIN_COOKIE = "tidegate_login"
MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class SessionData:
    user: str
    csrf: str
    stamp: str


def derive_key(secret_key: str, purpose: str) -> bytes:
    return hmac.new(secret_key.encode("utf-8"), f"tidegate dashboard {purpose} v1".encode(), hashlib.sha256).digest()


def stamp_of(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode("utf-8")).hexdigest()[:16]


class Sessions:
    """Issues and reads session cookies, and the pre-login CSRF token of the login form."""

    def __init__(self, secret_key: str, *, secure: bool) -> None:
        self._signer = URLSafeTimedSerializer(derive_key(secret_key, "sessions"), salt="session")
        self._login = URLSafeTimedSerializer(derive_key(secret_key, "sessions"), salt="login-form")
        self.secure = secure

    def issue(self, user: str, password_hash: str | None) -> str:
        return self._signer.dumps({"u": user, "c": secrets.token_urlsafe(24), "s": stamp_of(password_hash)})

    def read(self, cookie: str | None) -> SessionData | None:
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("u", "c", "s")):
            return None
        return SessionData(data["u"], data["c"], data["s"])

    def login_token(self) -> str:
        """A signed nonce for the login form (double-submitted: cookie and hidden field must match)."""
        return self._login.dumps(secrets.token_urlsafe(16))

    def login_token_valid(self, cookie: str | None, field: str | None) -> bool:
        if not cookie or not field or not hmac.compare_digest(cookie, field):
            return False
        try:
            self._login.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return True
