"""`tidegate user add|list`, `tidegate group add`, `tidegate token create`: bootstrapping people from a shell.

The commands run through typer's runner against a real data directory (SQLite store, migrated by the
command itself); what they wrote is checked in the store, the way the dashboard will read it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from dashboard.identity import grants_of, groups_of, user_by_name
from dashboard.passwords import verify_password
from store import ApiToken, Database, Role, sqlite_url
from tidegate.cli_users import register


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIDEGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TIDEGATE_SECRET_KEY", raising=False)
    monkeypatch.delenv("TIDEGATE_DATABASE_URL", raising=False)
    return tmp_path / "data"


@pytest.fixture
def tidegate() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def run(app: typer.Typer, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_an_admin_is_bootstrapped_with_a_password_groups_and_roles(tidegate: typer.Typer, data_dir: Path) -> None:
    code, out, err = run(tidegate, "user", "add", "paula", "--email", "paula@example.com",
                         "--group", "platform-leads", "--role", "admin", "--role", "approver:infra/production",
                         "--password-stdin", stdin="a long password\n")
    assert code == 0, err
    assert "added user paula (admin on *, approver on infra/production; password set)" in out
    database = Database(sqlite_url(data_dir))
    with database.session() as session:
        user = user_by_name(session, "paula")
        assert user is not None and user.email == "paula@example.com"
        assert verify_password("a long password", user.password_hash)
        assert "a long password" not in (user.password_hash or "")
        groups = groups_of(session, user)
        assert groups == ["platform-leads"]
        assert {(g.role, g.scope) for g in grants_of(session, user, groups)} == {
            (Role.ADMIN, "*"), (Role.APPROVER, "infra/production")}


def test_a_token_is_printed_once_and_only_its_hash_is_stored(tidegate: typer.Typer, data_dir: Path) -> None:
    assert run(tidegate, "user", "add", "ci-bot", "--role", "operator")[0] == 0
    code, out, err = run(tidegate, "token", "create", "--user", "ci-bot", "--name", "pipeline")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("tg_") and "will not be shown again" in err
    with Database(sqlite_url(data_dir)).session() as session:
        row = session.scalars(select(ApiToken)).one()
        assert (row.name, row.prefix) == ("pipeline", token[:10])
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.encode() not in (data_dir / "tidegate.db").read_bytes()


def test_users_are_listed_with_groups_and_roles(tidegate: typer.Typer, data_dir: Path) -> None:
    run(tidegate, "group", "add", "platform-leads")
    run(tidegate, "user", "add", "vera", "--role", "viewer", "--group", "platform-leads")
    code, out, _ = run(tidegate, "user", "list")
    assert code == 0
    assert out.split() == ["vera", "email=-", "groups=platform-leads", "roles=viewer:*"]


@pytest.mark.parametrize(("args", "complaint"), [
    pytest.param(["user", "add", "x", "--role", "superuser"], "role: unknown role 'superuser'", id="unknown-role"),
    pytest.param(["user", "add", "x", "--role", "operator:staging"], "scope: scope 'staging'", id="bad-scope"),
    pytest.param(["user", "add", "has space"], "name: 'has space' is not a valid name", id="bad-name"),
    pytest.param(["token", "create", "--user", "ghost"], "no user 'ghost'", id="unknown-user"),
])
def test_bad_input_fails_with_a_message_naming_what_is_wrong(tidegate: typer.Typer, data_dir: Path,
                                                             args: list[str], complaint: str) -> None:
    code, _, err = run(tidegate, *args)
    assert code == 1 and complaint in err


def test_adding_a_user_twice_fails_and_a_short_password_is_refused(tidegate: typer.Typer, data_dir: Path) -> None:
    assert run(tidegate, "user", "add", "vera")[0] == 0
    code, _, err = run(tidegate, "user", "add", "vera")
    assert code == 1 and "already exists" in err
    code, _, err = run(tidegate, "user", "add", "otto", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 8 characters" in err


def test_a_user_is_linked_to_their_git_host_accounts_by_id(tidegate: typer.Typer, data_dir: Path) -> None:
    assert run(tidegate, "user", "add", "bob")[0] == 0
    assert run(tidegate, "user", "add", "andy")[0] == 0

    code, out, err = run(tidegate, "user", "link", "bob", "--github-id", "583231", "--gitlab-id", "77")

    assert code == 0 and "linked bob: github id 583231, gitlab id 77" in out, err
    database = Database(sqlite_url(data_dir))
    with database.session() as session:
        user = user_by_name(session, "bob")
        assert user is not None and (user.github_id, user.gitlab_id, user.gitea_id) == ("583231", "77", None)
    taken = run(tidegate, "user", "link", "andy", "--github-id", "583231")
    assert taken[0] == 1 and "github_id: github user id 583231 is already linked to bob" in taken[2]
    assert run(tidegate, "user", "link", "andy", "--gitea-id", "octocat")[2].startswith("error: gitea_id:")
    assert "name at least one" in run(tidegate, "user", "link", "andy")[2]
    assert "no user 'nobody'" in run(tidegate, "user", "link", "nobody", "--github-id", "1")[2]


def test_an_admin_sets_lists_and_removes_a_server_side_approval_policy(tidegate: typer.Typer, data_dir: Path) -> None:
    code, out, err = run(tidegate, "policy", "set", "infra/production", "--approver", "group:sre",
                         "--approver", "user:ann", "--min-approvals", "2")
    assert code == 0 and "infra/production: required, 2 of group:sre, user:ann" in out, err
    listed = run(tidegate, "policy", "list")[1]
    assert "infra/production  required=true  minApprovals=2  approvers=group:sre,user:ann" in listed

    assert run(tidegate, "policy", "remove", "infra/production")[0] == 0
    assert run(tidegate, "policy", "list")[1] == ""
    assert "no server-side approval policy" in run(tidegate, "policy", "remove", "infra/production")[2]


@pytest.mark.parametrize("args,message", [
    pytest.param(["infra/production"], "approvers", id="required-without-approvers"),
    pytest.param(["infra/production", "--approver", "sre"], "approvers", id="not-user-or-group"),
    pytest.param(["infra/production", "--approver", "group:sre", "--min-approvals", "11"], "minApprovals",
                 id="too-many-approvals"),
    pytest.param(["production", "--approver", "group:sre"], "scope", id="no-repository"),
])
def test_a_bad_policy_is_refused_naming_the_field(tidegate: typer.Typer, data_dir: Path, args: list[str],
                                                  message: str) -> None:
    code, _, err = run(tidegate, "policy", "set", *args)
    assert code == 1 and message in err, err
