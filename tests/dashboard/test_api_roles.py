"""Every API endpoint against every kind of caller: anonymous, no roles, viewer, operator, approver, admin.

Reads are checked on one shared store (they change nothing); each action gets a fresh store, so one
case's effect never decides another's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.dashboard.world import World

ROLES = ("anonymous", "nobody", "vera", "otto", "paula", "root")
"""nobody: signed up, no bindings; vera: viewer; otto: operator; paula: approver in the policy; root: admin."""


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    expect: dict[str, int]
    body: dict[str, Any] | None = None

    def url(self, world: World) -> str:
        return self.path.format(**world.ids, old=world.old_sha[:8])


def everyone(code: int, **overrides: int) -> dict[str, int]:
    expected = {role: code for role in ROLES}
    expected["anonymous"] = 401
    expected.update(overrides)
    return expected


READER = everyone(200, nobody=403)
"""Readable by anyone with a role; 403 for a user without any."""
FILTERED = everyone(200)
"""Lists filtered to what the caller may read: empty, not forbidden, for a user without roles."""
ADMIN_ONLY = everyone(403, root=200)

READS = {
    "me": Call("GET", "/api/v1/me", everyone(200)),
    "repositories": Call("GET", "/api/v1/repositories", READER),
    "environments": Call("GET", "/api/v1/environments", FILTERED),
    "environment": Call("GET", "/api/v1/environments/infra/production", READER),
    "history": Call("GET", "/api/v1/environments/infra/staging/syncs", READER),
    "sync": Call("GET", "/api/v1/syncs/{pending}", READER),
    "sync-logs": Call("GET", "/api/v1/syncs/{staging_head}/logs", READER),
    "plan": Call("GET", "/api/v1/plans/{plan}", READER),
    "approvals": Call("GET", "/api/v1/approvals", FILTERED),
    "previews": Call("GET", "/api/v1/previews", FILTERED),
    "preview": Call("GET", "/api/v1/previews/{preview}", READER),
    "drift-reports": Call("GET", "/api/v1/drift-reports", FILTERED),
    "env-drift-reports": Call("GET", "/api/v1/drift-reports?environment=infra/staging&status=open", FILTERED),
    "drift-report": Call("GET", "/api/v1/drift-reports/{drift}", READER),
    "audit": Call("GET", "/api/v1/audit", READER),
    "metrics": Call("GET", "/metrics", READER),
    "users": Call("GET", "/api/v1/users", ADMIN_ONLY),
    "user": Call("GET", "/api/v1/users/vera", ADMIN_ONLY),
    "groups": Call("GET", "/api/v1/groups", ADMIN_ONLY),
    "role-bindings": Call("GET", "/api/v1/role-bindings", ADMIN_ONLY),
    "secrets": Call("GET", "/api/v1/secrets", FILTERED),
    "healthz": Call("GET", "/healthz", everyone(200, anonymous=200)),
    "resources": Call("GET", "/api/v1/environments/infra/staging/resources", READER),
}

OPERATOR = everyone(403, otto=202, root=202)
ACTIONS = {
    "sync-now": Call("POST", "/api/v1/environments/infra/staging/sync", OPERATOR),
    "rollback": Call("POST", "/api/v1/environments/infra/staging/sync", OPERATOR, {"revision": "{old}"}),
    "poll": Call("POST", "/api/v1/repositories/infra/poll", OPERATOR),
    "pause": Call("POST", "/api/v1/environments/infra/staging/pause", everyone(403, otto=200, root=200)),
    "resume": Call("POST", "/api/v1/environments/infra/staging/resume", everyone(403, otto=200, root=200)),
    # root is admin but not in production's approvers (group:platform-leads): the policy refuses.
    "approve": Call("POST", "/api/v1/syncs/{pending}/approve", everyone(403, paula=200), {"comment": "ok"}),
    "reject": Call("POST", "/api/v1/syncs/{pending}/reject", everyone(403, paula=200)),
    "drift-accept": Call("POST", "/api/v1/drift-reports/{drift}/accept", everyone(403, otto=200, root=200)),
    "drift-heal": Call("POST", "/api/v1/drift-reports/{drift}/heal", OPERATOR),
    "add-user": Call("POST", "/api/v1/users", everyone(403, root=201), {"name": "newbie", "groups": ["qa"]}),
    "patch-user": Call("PATCH", "/api/v1/users/vera", ADMIN_ONLY, {"email": "v@example.com"}),
    "delete-user": Call("DELETE", "/api/v1/users/andy", everyone(403, root=204)),
    "token-for-other": Call("POST", "/api/v1/users/andy/tokens", everyone(403, root=201)),
    "add-group": Call("POST", "/api/v1/groups", everyone(403, root=201), {"name": "sre"}),
    "add-member": Call("PUT", "/api/v1/groups/platform-leads/members/vera", ADMIN_ONLY),
    "remove-member": Call("DELETE", "/api/v1/groups/platform-leads/members/paula", ADMIN_ONLY),
    "delete-group": Call("DELETE", "/api/v1/groups/platform-leads", everyone(403, root=204)),
    "bind": Call("POST", "/api/v1/role-bindings", everyone(403, root=201),
                 {"subject": "group:platform-leads", "role": "viewer", "scope": "infra/staging"}),
    "set-secret": Call("PUT", "/api/v1/secrets/deploy-key", ADMIN_ONLY, {"value": "s3cret"}),
    "set-env-secret": Call("PUT", "/api/v1/secrets/deploy-key", ADMIN_ONLY,
                           {"value": "s3cret", "repository": "infra", "environment": "staging"}),
    "delete-secret": Call("DELETE", "/api/v1/secrets/registry-password", everyone(403, root=204)),
}


def cases(table: dict[str, Call]) -> list[Any]:
    return [pytest.param(call, role, id=f"{role}-{name}") for name, call in table.items() for role in ROLES]


def send(client: TestClient, world: World, call: Call, role: str) -> Any:
    headers = {} if role == "anonymous" else world.auth(role)
    body = None
    if call.body is not None:
        body = {k: v.format(old=world.old_sha[:8]) if isinstance(v, str) else v for k, v in call.body.items()}
    return client.request(call.method, call.url(world), headers=headers, json=body)


@pytest.mark.parametrize(("call", "role"), cases(READS))
def test_each_reader_sees_what_their_role_allows(shared_client: Any, call: Call, role: str) -> None:
    world, client = shared_client
    response = send(client, world, call, role)
    assert response.status_code == call.expect[role], response.text
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("call", "role"), cases(ACTIONS))
def test_each_action_is_allowed_only_to_its_roles(client: TestClient, world: World, call: Call, role: str) -> None:
    response = send(client, world, call, role)
    assert response.status_code == call.expect[role], response.text
    assert response.status_code < 500


@pytest.mark.parametrize("path", ["/api/v1/environments/infra/staging/diff",
                                  "/api/v1/environments/infra/staging/resources/workloads/live?address=apps/Deployment/web/web"],
                         ids=["diff", "live-object"])
@pytest.mark.parametrize(("role", "code"), [("anonymous", 401), ("nobody", 403)], ids=["anonymous", "no-roles"])
def test_what_runs_repository_code_or_reads_the_cluster_is_refused_before_it_runs(
        shared_client: Any, path: str, role: str, code: int) -> None:
    """A diff plans the repository's code and a live object is read from the target: neither starts for
    a caller who may not read the environment (the refusal comes first, in milliseconds)."""
    world, client = shared_client
    response = client.get(path, headers={} if role == "anonymous" else world.auth(role))
    assert response.status_code == code, response.text


def test_a_reader_cannot_use_the_live_view_to_read_an_object_tidegate_does_not_manage(shared_client: Any) -> None:
    """The live view reads only addresses in the environment's tree: not another namespace's Secret."""
    world, client = shared_client
    response = client.get("/api/v1/environments/infra/staging/resources/workloads/live",
                          params={"address": "/Secret/kube-system/bootstrap-token"}, headers=world.auth("vera"))
    assert response.status_code == 404, response.text
    assert "manages no workloads object" in response.json()["detail"]


def test_a_user_without_roles_sees_no_environments(shared_client: Any) -> None:
    world, client = shared_client
    assert client.get("/api/v1/environments", headers=world.auth("nobody")).json() == []
    assert client.get("/api/v1/approvals", headers=world.auth("nobody")).json() == []


@pytest.mark.parametrize("role", ["nobody", "vera", "otto", "paula"])
def test_only_admins_see_stored_secrets_even_by_name(shared_client: Any, role: str) -> None:
    """The secrets list is filtered to what the caller administers: the world's global secret is root's alone."""
    world, client = shared_client
    assert client.get("/api/v1/secrets", headers=world.auth(role)).json() == []
    assert [s["name"] for s in client.get("/api/v1/secrets", headers=world.auth("root")).json()] == [
        "registry-password"]
