"""Story: someone copies a signed-in user's session cookie (a shared machine, a proxy log, malware);
the user signs out. The copy must stop working at once, not when its signature expires in 12 hours.

Seen failing before the fix: the copied cookie still opened every page and the API after logout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from store import AuditEvent, DashboardSession
from tests.dashboard.world import World
from tests.security.auth_support import Template, build_template, dispose, sign_in, tidegate_serve, world_copy
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Template:
    return build_template(tmp_path_factory.mktemp("world"), redis_server)


@pytest.fixture
def world(tmp_path: Path, template: Template, redis_server: EmbeddedRedis) -> Iterator[World]:
    copy = world_copy(template, tmp_path / "data", redis_server)
    yield copy
    dispose(copy)


@pytest.fixture
def server(world: World, template: Template, redis_server: EmbeddedRedis) -> Iterator[str]:
    with tidegate_serve(world, template, redis_server) as url:
        yield url


def signed_in(url: str, user: str = "vera") -> httpx.Client:
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    assert sign_in(client, user).status_code == 303
    return client


def copied(url: str, cookie: str) -> httpx.Client:
    """Another browser holding the same session cookie."""
    return httpx.Client(base_url=url, follow_redirects=False, timeout=30, cookies={"tidegate_session": cookie})


def log_out(client: httpx.Client) -> None:
    token = CSRF_FIELD.search(client.get("/").text)
    assert token, "no CSRF field on the overview page"
    assert client.post("/logout", data={"csrf_token": token.group(1)}).status_code == 303


def sessions_of(world: World) -> int:
    with world.services.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(DashboardSession)) or 0)


def test_a_copied_cookie_dies_with_the_logout(server: str, world: World) -> None:
    victim = signed_in(server)
    cookie = victim.cookies["tidegate_session"]
    thief = copied(server, cookie)
    assert thief.get("/").status_code == 200, "before logout the copy works, as any session cookie would"
    assert thief.get("/api/v1/me").status_code == 200
    log_out(victim)
    page = thief.get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert thief.get("/api/v1/me").status_code == 401
    assert thief.get("/api/v1/environments").status_code == 401
    assert sessions_of(world) == 0
    with world.services.database.session() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "logout")).first() is not None


def test_logging_out_one_browser_leaves_the_users_other_sessions(server: str) -> None:
    laptop, phone = signed_in(server), signed_in(server)
    log_out(laptop)
    assert laptop.get("/").status_code == 303
    assert phone.get("/").status_code == 200


def test_the_store_keeps_only_a_digest_of_the_session_id(server: str, world: World) -> None:
    cookie = signed_in(server).cookies["tidegate_session"]
    database = (world.services.data_dir / "tidegate.db").read_bytes()
    for part in cookie.split("."):
        assert part.encode() not in database
    assert sessions_of(world) == 1
