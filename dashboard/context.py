"""The objects every route of the dashboard shares, built once by `dashboard.app.create_router`."""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.actions import Actions
from dashboard.auth import Authenticator
from dashboard.sessions import Sessions
from dashboard.throttle import LoginThrottle
from dashboard.usage import TokenUsage
from reconciler.runtime import Services


@dataclass
class Context:
    services: Services
    sessions: Sessions
    auth: Authenticator
    actions: Actions
    throttle: LoginThrottle
    usage: TokenUsage
