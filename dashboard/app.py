"""The dashboard's HTTP surface: `create_router(services, settings)` for `tidegate serve` to mount.

Composition only: it derives the session key, builds the shared objects and includes the API, the
pages (the secrets page too: it builds on `dashboard.pages`) and /metrics. Settings arrive as an
object with `data_dir`, `secret_key` and `public_url` (`tidegate.settings.Settings`), described by a
Protocol because this layer may not import `tidegate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from fastapi import APIRouter, Depends, Response

from dashboard.access import Permission, Principal
from dashboard.actions import Actions, require
from dashboard.api import ERRORS, create_api
from dashboard.auth import Authenticator
from dashboard.context import Context
from dashboard.metrics import render
from dashboard.pages import create_pages
from dashboard.secret_pages import create_secret_pages
from dashboard.sessions import Sessions
from dashboard.throttle import LoginThrottle
from dashboard.usage import TokenUsage
from reconciler.runtime import Services
from store import load_or_create_key


class Secret(Protocol):
    def get_secret_value(self) -> str: ...


class DashboardSettings(Protocol):
    @property
    def data_dir(self) -> Path: ...

    @property
    def secret_key(self) -> Secret | None: ...

    @property
    def public_url(self) -> str: ...


def secret_key_of(settings: DashboardSettings) -> str:
    """TIDEGATE_SECRET_KEY when set, else the data directory's key file (as `tidegate.wiring` does)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    return load_or_create_key(settings.data_dir)


def create_context(services: Services, settings: DashboardSettings) -> Context:
    sessions = Sessions(secret_key_of(settings), secure=settings.public_url.startswith("https://"))
    usage = TokenUsage(services.redis)
    return Context(services=services, sessions=sessions, auth=Authenticator(services.database, sessions, usage),
                   actions=Actions(services), throttle=LoginThrottle(services.redis), usage=usage)


def create_router(services: Services, settings: DashboardSettings) -> APIRouter:
    """The API under /api/v1, the pages under /, and /metrics (bearer token or session, read on *)."""
    ctx = create_context(services, settings)
    router = APIRouter()
    router.include_router(create_api(ctx))
    router.include_router(create_pages(ctx))
    router.include_router(create_secret_pages(ctx))
    caller = Depends(ctx.auth.api)

    @router.get("/metrics", tags=["metrics"], response_class=Response,
                summary="Prometheus metrics (every name tidegate_*); needs a token with read on *",
                responses={**ERRORS, 200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics(principal: Principal = caller) -> Response:
        require(principal, Permission.READ)
        return Response(render(services), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
