"""The /secrets page over real HTTP: admins set and delete through CSRF-protected forms, values never return."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.dashboard.test_pages import csrf_of, sign_in
from tests.dashboard.test_secrets_api import VALUE, assert_never_shown
from tests.dashboard.world import ENVIRONMENT_ADMIN, SECRET_STORED, World, add_environment_admin

NAV_LINK = '<a href="/secrets">'


def set_form(client: TestClient, **fields: str) -> Any:
    """Post the set form as the signed-in user, with the CSRF token the page carries."""
    token = csrf_of(client.get("/secrets").text)
    data = {"name": "deploy-key", "scope": "*", "value": VALUE, "csrf_token": token, **fields}
    return client.post("/secrets", data=data, follow_redirects=False)


def test_an_admin_sets_a_secret_and_sees_its_row_but_never_its_value(client: TestClient, world: World) -> None:
    sign_in(client, "root")
    response = set_form(client)
    assert response.status_code == 303 and response.headers["location"].startswith("/secrets?notice=")
    shown = client.get(response.headers["location"])
    assert shown.status_code == 200 and NAV_LINK in shown.text
    assert 'data-secret="*:deploy-key"' in shown.text and 'data-secret="*:registry-password"' in shown.text
    assert "Secret deploy-key set in *" in shown.text and "hmac-sha256:" in shown.text
    assert_never_shown(shown.text)
    assert_never_shown(shown.text, SECRET_STORED)
    assert_never_shown(client.get("/audit").text)


@pytest.mark.parametrize(("fields", "said"), [
    pytest.param({"name": "has space"}, "name:", id="bad-name"),
    pytest.param({"value": ""}, "value:", id="empty-value"),
    pytest.param({"scope": "in fra/staging"}, "repository:", id="bad-scope"),
])
def test_a_refused_form_is_shown_again_without_its_value(client: TestClient, world: World,
                                                        fields: dict[str, str], said: str) -> None:
    sign_in(client, "root")
    response = set_form(client, **fields)
    assert response.status_code == 422 and said in response.text
    assert 'aria-invalid="true"' in response.text
    assert_never_shown(response.text)
    assert 'data-secret="*:deploy-key"' not in response.text


def test_the_set_and_delete_forms_need_the_csrf_token(client: TestClient, world: World) -> None:
    sign_in(client, "root")
    assert set_form(client, csrf_token="forged").status_code == 403
    deleted = client.post("/secrets/delete", data={"name": "registry-password", "scope": "*", "csrf_token": "x"})
    assert deleted.status_code == 403
    page = client.get("/secrets").text
    assert 'data-secret="*:deploy-key"' not in page and 'data-secret="*:registry-password"' in page


def test_an_admin_deletes_a_secret_from_its_row(client: TestClient, world: World) -> None:
    sign_in(client, "root")
    token = csrf_of(client.get("/secrets").text)
    response = client.post("/secrets/delete", data={"name": "registry-password", "scope": "*", "csrf_token": token},
                           follow_redirects=False)
    assert response.status_code == 303
    assert 'data-secret="*:registry-password"' not in client.get(response.headers["location"]).text
    again = client.post("/secrets/delete", data={"name": "registry-password", "scope": "*", "csrf_token": token})
    assert again.status_code == 404 and "no secret" in again.text


def test_an_environment_admin_is_offered_their_environment_only(client: TestClient, world: World) -> None:
    add_environment_admin(world)
    sign_in(client, ENVIRONMENT_ADMIN)
    page = client.get("/secrets").text
    assert NAV_LINK in page and 'data-secret="*:registry-password"' not in page
    assert '<option value="infra/staging">' in page and '<option value="*">' not in page
    assert set_form(client, scope="infra/staging").status_code == 303
    for scope in ("*", "infra", "infra/production"):
        refused = set_form(client, scope=scope)
        assert refused.status_code == 403 and "lacks the admin permission" in refused.text, scope
        assert_never_shown(refused.text)
    assert 'data-secret="infra/staging:deploy-key"' in client.get("/secrets").text


@pytest.mark.parametrize("user", ["vera", "otto", "paula", "nobody"])
def test_someone_who_administers_nothing_sees_no_secrets_and_no_forms(client: TestClient, world: World,
                                                                      user: str) -> None:
    sign_in(client, user)
    response = client.get("/secrets")
    assert response.status_code == 200
    assert "registry-password" not in response.text and "<form method=\"post\" action=\"/secrets" not in response.text
    assert NAV_LINK not in response.text and NAV_LINK not in client.get("/").text
    assert set_form(client).status_code == 403
