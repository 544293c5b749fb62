"""Stored secrets over the API as stories: values are write-only, admins manage the scopes they administer.

The value used here holds a quote, a backslash, a newline and a non-ASCII letter, so its JSON-escaped
form differs from the plain one; every check looks for all the forms a value could leak in.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from store import AuditEvent
from tests.dashboard.world import SECRET_STORED, World, add_environment_admin

VALUE = 'kube-token "ünïcode"\\path\nline-two=c2VjcmV0'
ENV_SECRET = {"repository": "infra", "environment": "staging"}


def leaked_forms(value: str) -> list[str]:
    """Every way a response could carry `value`: plain, JSON-escaped (either ASCII mode), base64 (either
    alphabet, padding stripped as many encoders do)."""
    raw = value.encode("utf-8")
    encoded = [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    return [value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            *(form.rstrip("=") for form in encoded)]


def assert_never_shown(text: str, value: str = VALUE) -> None:
    for form in leaked_forms(value):
        assert form not in text, f"the value leaked as {form!r}"


@pytest.fixture
def stager(world: World) -> dict[str, str]:
    """The headers of `ed`, an admin of infra/staging only (a role binding `admin` on that scope)."""
    return add_environment_admin(world)


def put(client: TestClient, headers: dict[str, str], name: str, **body: Any) -> Any:
    return client.put(f"/api/v1/secrets/{name}", headers=headers, json={"value": VALUE, **body})


def names(client: TestClient, headers: dict[str, str]) -> list[tuple[str, str]]:
    return [(s["scope"], s["name"]) for s in client.get("/api/v1/secrets", headers=headers).json()]


def test_an_admin_sets_a_secret_and_no_response_ever_holds_its_value(client: TestClient, world: World) -> None:
    root = world.auth("root")
    response = put(client, root, "deploy-key")
    assert response.status_code == 200, response.text
    shown = response.json()
    assert (shown["name"], shown["scope"], shown["updated_by"]) == ("deploy-key", "*", "root")
    assert shown["fingerprint"].startswith("hmac-sha256:") and "value" not in shown
    listed = client.get("/api/v1/secrets", headers=root)
    audit = client.get("/api/v1/audit", headers=root)
    for text in (response.text, listed.text, audit.text):
        assert_never_shown(text)
        assert_never_shown(text, SECRET_STORED)
    assert ("*", "deploy-key") in names(client, root)
    [event] = [e for e in audit.json() if e["action"] == "secret.set" and e["target"] == "*:deploy-key"]
    assert event["actor"] == "root" and event["details"] == {"fingerprint": shown["fingerprint"]}


def test_the_fingerprint_changes_with_the_value_and_only_with_it(client: TestClient, world: World) -> None:
    root = world.auth("root")
    first = put(client, root, "deploy-key").json()["fingerprint"]
    assert put(client, root, "deploy-key").json()["fingerprint"] == first
    assert put(client, root, "deploy-key", value="another value").json()["fingerprint"] != first
    assert [n for n in names(client, root) if n[1] == "deploy-key"] == [("*", "deploy-key")]


def test_an_environment_admin_manages_the_secrets_of_their_environment_only(
        client: TestClient, world: World, stager: dict[str, str]) -> None:
    created = put(client, stager, "deploy-key", **ENV_SECRET)
    assert created.status_code == 200, created.text
    assert created.json()["scope"] == "infra/staging" and created.json()["updated_by"] == "ed"
    assert names(client, stager) == [("infra/staging", "deploy-key")]  # not root's global secret
    for scope in ({}, {"repository": "infra"}, {"repository": "infra", "environment": "production"}):
        refused = put(client, stager, "deploy-key", **scope)
        assert refused.status_code == 403, scope
        assert_never_shown(refused.text)
    assert client.delete("/api/v1/secrets/registry-password", headers=stager).status_code == 403
    gone = client.delete("/api/v1/secrets/deploy-key", headers=stager, params=ENV_SECRET)
    assert gone.status_code == 204
    assert names(client, stager) == []
    assert names(client, world.auth("root")) == [("*", "registry-password")]


def test_a_refused_change_leaves_no_trace_in_the_audit_log(client: TestClient, world: World,
                                                          stager: dict[str, str]) -> None:
    put(client, stager, "deploy-key", repository="infra", environment="production")
    with world.services.database.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.actor == "ed")))
    assert actions == []


@pytest.mark.parametrize(("name", "body", "field"), [
    pytest.param("has space", {"value": VALUE}, "name", id="bad-name"),
    pytest.param("-leading-dash", {"value": VALUE}, "name", id="name-starting-with-a-dash"),
    pytest.param("deploy-key", {"value": VALUE, "environment": "staging"}, "repository",
                 id="environment-without-repository"),
    pytest.param("deploy-key", {"value": VALUE, "repository": "in fra"}, "repository", id="bad-repository"),
    pytest.param("deploy-key", {"value": ""}, "value", id="empty-value"),
    pytest.param("deploy-key", {}, "value", id="missing-value"),
    pytest.param("deploy-key", {"value": VALUE, "scope": "*"}, "scope", id="unknown-field"),
])
def test_bad_input_is_a_422_naming_the_field_and_never_the_value(
        client: TestClient, world: World, name: str, body: dict[str, Any], field: str) -> None:
    response = client.put(f"/api/v1/secrets/{name}", headers=world.auth("root"), json=body)
    assert response.status_code == 422, response.text
    assert field in [problem["loc"][-1] for problem in response.json()["detail"]]
    assert_never_shown(response.text)
    assert ("*", "deploy-key") not in names(client, world.auth("root"))


@pytest.mark.parametrize("params", [{}, {"repository": "infra"}, ENV_SECRET])
def test_deleting_a_secret_that_is_not_there_is_a_404(client: TestClient, world: World,
                                                     params: dict[str, str]) -> None:
    response = client.delete("/api/v1/secrets/no-such-secret", headers=world.auth("root"), params=params)
    assert response.status_code == 404 and "no-such-secret" in response.json()["detail"]


def test_a_secret_is_deleted_from_its_own_scope_only(client: TestClient, world: World) -> None:
    root = world.auth("root")
    assert put(client, root, "registry-password", **ENV_SECRET).status_code == 200
    assert client.delete("/api/v1/secrets/registry-password", headers=root,
                         params={"repository": "infra"}).status_code == 404
    assert client.delete("/api/v1/secrets/registry-password", headers=root).status_code == 204
    assert names(client, root) == [("infra/staging", "registry-password")]
