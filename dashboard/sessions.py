"""The dashboard's sessions: a signed cookie (itsdangerous) naming a server-side session record.

The signing key is derived from Tidegate's secret key (TIDEGATE_SECRET_KEY or the data directory's
key file) with a purpose label, so the Fernet key itself never signs anything. The cookie carries
the user, the session's CSRF token, a stamp of the user's password hash (changing a password ends
every session of that user) and a random session id. Only the id's SHA-256 is stored, in
`dashboard_sessions` with its expiry: every request looks the record up, and logout deletes it, so a
copied cookie stops working at logout even though its signature is still valid.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store import DashboardSession, User, utcnow

COOKIE = "tidegate_session"
LOGIN_COOKIE = "tidegate_login"
MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class SessionData:
    user: str
    csrf: str
    stamp: str
    sid: str


def derive_key(secret_key: str, purpose: str) -> bytes:
    return hmac.new(secret_key.encode("utf-8"), f"tidegate dashboard {purpose} v1".encode(), hashlib.sha256).digest()


def stamp_of(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode("utf-8")).hexdigest()[:16]


def _record_key(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


class Sessions:
    """Issues, reads and ends sessions, and signs the pre-login CSRF token of the login form."""

    def __init__(self, secret_key: str, *, secure: bool) -> None:
        self._signer = URLSafeTimedSerializer(derive_key(secret_key, "sessions"), salt="session")
        self._login = URLSafeTimedSerializer(derive_key(secret_key, "sessions"), salt="login-form")
        self.secure = secure

    def open(self, session: Session, user: User) -> str:
        """Record a new session for `user` (in the caller's write transaction) and return its cookie.

        Expired records of every user are removed on the way: logins are rare, and this keeps the
        table as small as the number of live sessions without a scheduled job."""
        now = utcnow()
        session.execute(delete(DashboardSession).where(DashboardSession.expires_at <= now))
        sid = secrets.token_urlsafe(32)
        session.add(DashboardSession(token_hash=_record_key(sid), user_id=user.id, created_at=now,
                                     expires_at=now + timedelta(seconds=MAX_AGE)))
        return self._signer.dumps({"u": user.name, "c": secrets.token_urlsafe(24),
                                   "s": stamp_of(user.password_hash), "i": sid})

    def read(self, cookie: str | None) -> SessionData | None:
        """The cookie's contents when its signature and age are good (the record is checked by `live`)."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("u", "c", "s", "i")):
            return None
        return SessionData(data["u"], data["c"], data["s"], data["i"])

    @staticmethod
    def live(session: Session, data: SessionData, user: User) -> bool:
        """Whether the session's record exists, belongs to `user` and has not expired (a read only)."""
        row = session.scalars(select(DashboardSession).where(
            DashboardSession.token_hash == _record_key(data.sid))).one_or_none()
        return row is not None and row.user_id == user.id and row.expires_at > utcnow()

    @staticmethod
    def close(session: Session, data: SessionData) -> None:
        """Delete the session's record: every copy of its cookie is worthless from now on."""
        session.execute(delete(DashboardSession).where(DashboardSession.token_hash == _record_key(data.sid)))

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
