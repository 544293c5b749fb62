"""Authentication for the API and the pages: bearer tokens first, then the session cookie.

API calls without credentials get 401 (with `WWW-Authenticate: Bearer`); pages redirect to the
login form instead. A cookie-authenticated API call that changes something must repeat the
session's CSRF token in `X-CSRF-Token` (a bearer token is never sent by a browser on its own, so it
needs none).
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from dashboard.access import Principal
from dashboard.identity import active_token, user_by_name
from dashboard.sessions import COOKIE, SessionData, Sessions, stamp_of
from dashboard.usage import TokenUsage
from reconciler.access import principal_of
from store import Database, User

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
bearer = HTTPBearer(auto_error=False, description="An API token (`tidegate token create`); the dashboard's "
                    "session cookie also works, with X-CSRF-Token on changes.")
Bearer = Depends(bearer)


class Authenticator:
    """Finds who is calling; reads the store and never writes to it (a GET must not take SQLite's
    write lock: parallel readers would fail), so token use is noted in Redis by `TokenUsage`."""

    def __init__(self, database: Database, sessions: Sessions, usage: TokenUsage) -> None:
        self.database = database
        self.sessions = sessions
        self.usage = usage

    def identify(self, request: Request) -> Principal | None:
        """The principal behind the request's bearer token or session cookie, if valid."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        with self.database.session() as session:
            if scheme.lower() == "bearer" and token.strip():
                row = active_token(session, token.strip())
                user = row.user if row is not None else None
                via, csrf = "token", None
                if row is not None:
                    self.usage.seen(row.id)
            else:
                data = self.sessions.read(request.cookies.get(COOKIE))
                user = user_by_name(session, data.user) if data else None
                if user is not None and data is not None and not self._session_holds(session, data, user):
                    user = None
                via, csrf = "session", data.csrf if data else None
            if user is None:
                return None
            return principal_of(session, user, via, csrf)

    def _session_holds(self, session: Session, data: SessionData, user: User) -> bool:
        """Enabled user, same password as at login, and the server-side record still there (no logout)."""
        return (not user.disabled and hmac.compare_digest(stamp_of(user.password_hash), data.stamp)
                and self.sessions.live(session, data, user))

    def api(self, request: Request, _credentials: HTTPAuthorizationCredentials | None = Bearer) -> Principal:
        """FastAPI dependency of every API route: 401 without valid credentials, 403 on a bad CSRF token.

        `_credentials` only declares the bearer scheme in OpenAPI; `identify` reads the header itself."""
        principal = self.identify(request)
        if principal is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication required: send "
                                "'Authorization: Bearer <token>' or sign in", headers={"WWW-Authenticate": "Bearer"})
        if principal.via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token", "")
            if not principal.csrf or not hmac.compare_digest(sent, principal.csrf):
                raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-CSRF-Token header")
        return principal

    def page(self, request: Request) -> Principal:
        """FastAPI dependency of every page: unauthenticated browsers are sent to the login form."""
        principal = self.identify(request)
        if principal is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(status.HTTP_303_SEE_OTHER, "sign in first",
                                headers={"Location": f"/login?next={quote(target, safe='')}"})
        return principal

