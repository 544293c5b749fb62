"""schemathesis against the OpenAPI spec the app serves: no 5xx, and every response matches the spec.

It runs as the admin (so most operations get past authorisation) on a store of its own; example
counts are bounded so the whole run stays around a minute. The log stream is left out: generated
`follow=true` requests on a sync that never finishes would stream until their timeout; its
behaviour is tested in test_api_stories and test_browser.

The schema is loaded when the module is imported, before fixtures exist, so schemathesis talks to
a small ASGI proxy: at import it serves the spec from an app whose services are never touched (the
spec does not depend on them), and the `real_app` fixture points it at the app over the test store.
(`schemathesis.pytest.from_fixture` would avoid the proxy, but fails under pytest 9.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from tempfile import gettempdir
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from redis import Redis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from dashboard.app import create_router
from reconciler.runtime import Services
from store import Database, SecretBox
from tests.dashboard.conftest import DashboardSettings, make_app
from tests.dashboard.world import World
from tests.support.doubles import NoTargets, RecordingQueue

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          ignored_auth]
"""Not `negative_data_rejection`: like most APIs this one ignores unknown query parameters, which that
check counts as accepting invalid data (bad bodies and parameters are tested as 422s in test_api_stories)."""


class Proxy:
    """An ASGI app that forwards to whichever app it currently points at."""

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


def spec_only_app() -> Any:
    """The app as `make_app` builds it, over services that are never called (only /openapi.json is)."""
    unused = Path(gettempdir()) / "tidegate-spec-only"
    services = Services(database=Database(f"sqlite:///{unused}/never.db"), secrets=SecretBox(SecretBox.generate_key()),
                        redis=Redis(unix_socket_path=str(unused / "never.sock")), targets=NoTargets(),
                        data_dir=unused, queue=RecordingQueue())
    from fastapi import FastAPI

    app = FastAPI(title="Tidegate", version="0.1.0")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(create_router(services, DashboardSettings(unused, SecretStr(SecretBox.generate_key()))))
    return app


PROXY = Proxy()
PROXY.target = spec_only_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", PROXY).exclude(path_regex=r"/logs$")


@pytest.fixture(scope="module")
def admin(shared_client: tuple[World, Any]) -> Iterator[dict[str, str]]:
    """The admin's token, with the proxy pointing at the real app over this module's store."""
    world, _ = shared_client
    PROXY.target = make_app(world.services)
    yield world.auth("root")
    PROXY.target = spec_only_app()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_never_fails_and_always_answers_as_documented(case: Any, admin: dict[str, str]) -> None:
    case.call_and_validate(headers=admin, checks=CHECKS)
