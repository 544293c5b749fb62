"""Story: an operator registers a repository as `https://user:TOKEN@host/…` (it works with git, after all).
The token would sit in plain text in the store and be shown by `repo list`, the API and the logs.
It is refused with a pointer to `--token-env`; a row written that way by an older version is never
printed either.

Seen failing before the fix: the URL was stored as given and `tidegate repo list` printed the token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from dashboard.identity import Grant, bind, create_user, issue_token
from reconciler import repositories
from store import Database, Repository, Role, SecretBox
from tests.dashboard.conftest import make_app
from tests.security.auth_support import services_on
from tests.support.redis_server import start_redis
from tidegate.cli import app
from tidegate.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration
TOKEN = "ghp_S3cretT0kenThatMustNeverBeShown"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def cli(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[tuple[CliRunner, dict[str, str | None]]]:
    env: dict[str, str | None] = {
        "TIDEGATE_DATA_DIR": str(tmp_path / "data"), "TIDEGATE_SECRET_KEY": SecretBox.generate_key(),
        "TIDEGATE_REDIS_URL": redis_server.client_url, "TIDEGATE_DATABASE_URL": None, "TIDEGATE_SERVER": None}
    runner = CliRunner()
    assert runner.invoke(app, ["init"], env=env).exit_code == 0
    yield runner, env


def stored_urls(env: dict[str, str | None]) -> list[str]:
    database = Database.embedded(Path(str(env["TIDEGATE_DATA_DIR"])))
    try:
        with database.session() as session:
            return list(session.scalars(select(Repository.url)))
    finally:
        database.dispose()


@pytest.mark.parametrize("url", [f"https://x-access-token:{TOKEN}@git.example.test/acme/infra.git",
                                 f"https://{TOKEN}@git.example.test/acme/infra.git",
                                 f"http://ci:{TOKEN}@git.example.test/acme/infra.git",
                                 f"ssh://git:{TOKEN}@git.example.test/acme/infra.git"],
                         ids=["user-and-token", "token-as-user", "plain-http", "ssh-with-password"])
def test_repo_add_refuses_a_url_with_a_credential_and_does_not_echo_it(
        cli: tuple[CliRunner, dict[str, str | None]], url: str) -> None:
    runner, env = cli
    result = runner.invoke(app, ["repo", "add", "infra", url], env=env)
    assert result.exit_code == 1
    assert "--token-env" in result.output and TOKEN not in result.output
    assert stored_urls(env) == []


@pytest.mark.parametrize("url", ["ssh://git@git.example.test/acme/infra.git", "git@git.example.test:acme/infra.git",
                                 "https://git.example.test/acme/infra.git"],
                         ids=["ssh-user", "scp-like", "no-user"])
def test_urls_without_a_secret_are_registered(cli: tuple[CliRunner, dict[str, str | None]], url: str) -> None:
    runner, env = cli
    result = runner.invoke(app, ["repo", "add", "infra", url], env=env)
    assert result.exit_code == 0, result.output
    assert stored_urls(env) == [url]


def test_a_url_stored_by_an_older_version_is_never_printed(
        tmp_path: Path, redis_server: EmbeddedRedis, cli: tuple[CliRunner, dict[str, str | None]],
        caplog: pytest.LogCaptureFixture) -> None:
    runner, env = cli
    data = Path(str(env["TIDEGATE_DATA_DIR"]))
    services = services_on(data, redis_server, str(env["TIDEGATE_SECRET_KEY"]), migrate=False)
    with services.database.session() as session:  # as `repo add` stored it before this fix
        session.add(Repository(name="legacy", url=f"https://ci:{TOKEN}@127.0.0.1:1/acme/infra.git"))
        admin = create_user(session, "root")
        bind(session, "user:root", Grant(Role.ADMIN, "*"))
        token = issue_token(session, admin)[1]
        repository_id = session.scalars(select(Repository.id)).one()
    listed = runner.invoke(app, ["repo", "list"], env=env)
    assert listed.exit_code == 0 and "127.0.0.1:1/acme/infra.git" in listed.output and TOKEN not in listed.output
    with caplog.at_level(logging.DEBUG):
        result = repositories.poll(services, repository_id)
    assert result.error and TOKEN not in result.error
    assert TOKEN not in caplog.text
    with services.database.session() as session:
        assert TOKEN not in (session.get_one(Repository, repository_id).poll_error or "")
    with TestClient(make_app(services)) as client:
        answer = client.get("/api/v1/repositories", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and TOKEN not in answer.text
    services.database.dispose()
