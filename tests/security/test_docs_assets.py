"""Story: someone opens the API docs of an air-gapped install (or of any install, which would tell a
CDN who reads which API). `/docs` and `/redoc` must render from this server alone: a real browser
(Debian's chromium) loads them and no request leaves for another host. The pages that answer
without a login are exactly the ones the README lists.

Seen failing before the fix: both pages asked cdn.jsdelivr.net (and /redoc fonts.googleapis.com)
for their scripts and rendered nothing.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Request, sync_playwright

from tests.dashboard.world import World
from tests.security.auth_support import Template, build_template, dispose, tidegate_serve, world_copy
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
LINKED = re.compile(r'(?:src|href)=["\']([^"\']+)["\']|url: ?["\']([^"\']+)["\']')


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Template:
    return build_template(tmp_path_factory.mktemp("world"), redis_server)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, template: Template,
           redis_server: EmbeddedRedis) -> Iterator[tuple[str, World]]:
    world = world_copy(template, tmp_path_factory.mktemp("data") / "data", redis_server)
    with tidegate_serve(world, template, redis_server) as url:
        yield url, world
    dispose(world)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is missing: bash scripts/setup.sh --dev installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_link_only_to_this_server(server: tuple[str, World], page: str) -> None:
    url, _ = server
    html = httpx.get(url + page).text
    links = [a or b for a, b in LINKED.findall(html)]
    assert links, "the page links its assets"
    for link in links:
        assert not urlsplit(link).netloc and not link.startswith("//"), f"{page} links {link}"
        assert httpx.get(url + link).status_code == 200, link


@pytest.mark.parametrize(("page", "rendered"), [("/docs", ".swagger-ui .info .title"),
                                                ("/redoc", "h1")], ids=["swagger-ui", "redoc"])
def test_a_browser_renders_the_docs_without_asking_another_host(server: tuple[str, World], browser: Browser,
                                                                 page: str, rendered: str) -> None:
    url, _ = server
    requested: list[Request] = []
    tab = browser.new_page()
    tab.on("request", lambda request: requested.append(request))
    tab.goto(url + page)
    tab.wait_for_selector(rendered, timeout=30_000)
    assert "Tidegate" in tab.inner_text(rendered)
    tab.wait_for_load_state("networkidle")
    tab.close()
    foreign = {r.url: r.failure for r in requested
               if urlsplit(r.url.removeprefix("blob:")).netloc not in (urlsplit(url).netloc, "")}
    # ReDoc's bundle always adds its maker's logo from their CDN: the page's policy stops the browser
    # before anything is sent (Playwright reports a request that failed with "csp").
    assert all(failure == "csp" for failure in foreign.values()), foreign


def test_only_the_pages_the_readme_names_answer_without_a_login(server: tuple[str, World]) -> None:
    url, world = server
    assert "/docs" in README.read_text() and "/redoc" in README.read_text()
    open_pages = ["/healthz", "/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui.css", "/login",
                  "/static/dashboard.css"]
    for path in open_pages:
        assert httpx.get(url + path).status_code == 200, path
    closed = {"/api/v1/environments": 401, "/api/v1/me": 401, "/metrics": 401, "/": 303, "/approvals": 303,
              f"/syncs/{world.ids['pending']}": 303}
    assert {path: httpx.get(url + path).status_code for path in closed} == closed
