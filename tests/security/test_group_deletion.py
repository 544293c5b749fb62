"""Story: an admin deletes a group; later someone creates a group of the same name (a new team, a typo,
a name reused years later). The old group's role bindings must not come back to life for it. And the
last-admin guard must count people who are admins, not binding rows of groups that no longer exist.

Seen failing before the fix: the bindings outlived the group (the new group's members were admins at
once), a binding to a group that never existed was accepted, and with a deleted group's admin
binding still counted, the last real admin binding could be removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from store import RoleBinding
from tests.dashboard.conftest import make_app
from tests.dashboard.world import World
from tests.security.auth_support import Template, build_template, dispose, world_copy
from tests.support.redis_server import start_redis
from tidegate.cli import app as tidegate_app
from tidegate.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration


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
def client(world: World) -> Iterator[TestClient]:
    with TestClient(make_app(world.services)) as test_client:
        yield test_client


def bindings_of(world: World, subject: str) -> list[tuple[str, str]]:
    with world.services.database.session() as session:
        return [(b.role.value, b.scope) for b in session.scalars(select(RoleBinding).where(
            RoleBinding.subject == subject))]


def test_a_deleted_groups_bindings_do_not_pass_to_a_new_group_of_that_name(client: TestClient, world: World) -> None:
    root = world.auth("root")
    assert client.post("/api/v1/groups", headers=root, json={"name": "sre"}).status_code == 201
    assert client.post("/api/v1/role-bindings", headers=root,
                       json={"subject": "group:sre", "role": "admin", "scope": "*"}).status_code == 201
    assert client.delete("/api/v1/groups/sre", headers=root).status_code == 204
    assert bindings_of(world, "group:sre") == []
    assert client.post("/api/v1/groups", headers=root, json={"name": "sre"}).status_code == 201
    assert client.put("/api/v1/groups/sre/members/nobody", headers=root).status_code == 200
    me = client.get("/api/v1/me", headers=world.auth("nobody")).json()
    assert me["grants"] == [], "nobody inherited the deleted group's admin role"
    assert client.get("/api/v1/users", headers=world.auth("nobody")).status_code == 403


@pytest.mark.parametrize("subject", ["group:never-created", "user:ghost"], ids=["unknown-group", "unknown-user"])
def test_a_binding_to_someone_who_does_not_exist_is_refused(client: TestClient, world: World, subject: str) -> None:
    response = client.post("/api/v1/role-bindings", headers=world.auth("root"),
                           json={"subject": subject, "role": "admin", "scope": "*"})
    assert response.status_code == 422, response.text
    assert bindings_of(world, subject) == []


def test_a_deleted_groups_admin_binding_does_not_count_for_the_last_admin_guard(
        client: TestClient, world: World) -> None:
    """Bindings of a group deleted before this fix are still in old stores: they make nobody an admin."""
    root = world.auth("root")
    with world.services.database.session() as session:
        session.add(RoleBinding(subject="group:disbanded", role="admin", scope="*"))  # a leftover row
    bindings = client.get("/api/v1/role-bindings", headers=root).json()
    [own] = [b["id"] for b in bindings if b["subject"] == "user:root" and b["role"] == "admin"]
    response = client.delete(f"/api/v1/role-bindings/{own}", headers=root)
    assert response.status_code == 409, response.text
    assert client.get("/api/v1/users", headers=root).status_code == 200, "root is still an admin"


def test_deleting_the_group_that_holds_the_only_admins_is_refused(client: TestClient, world: World) -> None:
    root = world.auth("root")
    assert client.post("/api/v1/groups", headers=root, json={"name": "admins"}).status_code == 201
    assert client.put("/api/v1/groups/admins/members/root", headers=root).status_code == 200
    assert client.post("/api/v1/role-bindings", headers=root,
                       json={"subject": "group:admins", "role": "admin", "scope": "*"}).status_code == 201
    [own] = [b["id"] for b in client.get("/api/v1/role-bindings", headers=root).json()
             if b["subject"] == "user:root" and b["role"] == "admin"]
    assert client.delete(f"/api/v1/role-bindings/{own}", headers=root).status_code == 204, "the group makes root admin"
    assert client.delete("/api/v1/groups/admins", headers=root).status_code == 409
    assert client.delete("/api/v1/groups/admins/members/root", headers=root).status_code == 409
    assert bindings_of(world, "group:admins") == [("admin", "*")]


def test_the_cli_removes_a_group_with_its_bindings(world: World, monkeypatch: pytest.MonkeyPatch,
                                                   template: Template) -> None:
    monkeypatch.setenv("TIDEGATE_DATA_DIR", str(world.services.data_dir))
    monkeypatch.setenv("TIDEGATE_SECRET_KEY", template.key)
    cli: typer.Typer = tidegate_app
    runner = CliRunner()
    assert runner.invoke(cli, ["group", "add", "oncall"]).exit_code == 0
    added = runner.invoke(cli, ["user", "add", "olga", "--role", "viewer", "--group", "oncall"])
    assert added.exit_code == 0, added.output
    with world.services.database.session() as session:
        session.add(RoleBinding(subject="group:oncall", role="operator", scope="*"))
    removed = runner.invoke(cli, ["group", "remove", "oncall"])
    assert removed.exit_code == 0, removed.output
    assert bindings_of(world, "group:oncall") == []
