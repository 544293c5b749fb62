"""The web UI over real HTTP (the ASGI app): login, every page, form actions with CSRF, no secrets."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from providers.stage import LiveHealth
from reconciler import observations
from store import Environment, Preview
from tests.dashboard.world import PASSWORD, SECRET_OUTPUT, SECRET_PAYLOAD, SECRET_STORED, World
from tests.support.doubles import RecordingQueue

CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def sign_in(client: TestClient, user: str, password: str = PASSWORD, next_page: str = "/") -> Any:
    form = client.get(f"/login?next={next_page}")
    return client.post("/login", data={"username": user, "password": password, "csrf_token": csrf_of(form.text),
                                       "next": next_page}, follow_redirects=False)


def pages(world: World) -> dict[str, str]:
    ids = world.ids
    return {"overview": "/", "staging": "/environments/infra/staging", "production": "/environments/infra/production",
            "sync": f"/syncs/{ids['staging_head']}", "pending-sync": f"/syncs/{ids['pending']}",
            "plan": f"/plans/{ids['plan']}", "drift-list": "/drift", "drift": f"/drift/{ids['drift']}",
            "approvals": "/approvals", "audit": "/audit", "previews": "/previews",
            "preview": f"/previews/{ids['preview']}", "secrets": "/secrets"}


def test_a_browser_without_a_session_is_sent_to_the_login_form(client: TestClient, world: World) -> None:
    for path in pages(world).values():
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path


def test_signing_in_returns_to_the_page_asked_for(client: TestClient) -> None:
    response = sign_in(client, "vera", next_page="/approvals")
    assert response.status_code == 303 and response.headers["location"] == "/approvals"
    assert "tidegate_session" in response.cookies or client.cookies.get("tidegate_session")


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(client: TestClient, target: str) -> None:
    form = client.get("/login")
    response = client.post("/login", data={"username": "vera", "password": PASSWORD, "next": target,
                                           "csrf_token": csrf_of(form.text)}, follow_redirects=False)
    assert response.headers["location"] == "/"


def test_a_wrong_password_is_401_and_the_sixth_try_is_rate_limited(client: TestClient, world: World) -> None:
    for _ in range(5):
        assert sign_in(client, "vera", "wrong password").status_code == 401
    locked = sign_in(client, "vera")  # even the right password waits now
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert "Too many failed attempts" in locked.text
    assert sign_in(client, "otto").status_code == 303  # another user is not locked out


def test_a_login_form_without_its_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "vera", "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 403


@pytest.mark.parametrize("page", ["overview", "staging", "production", "sync", "pending-sync", "plan",
                                  "drift-list", "drift", "approvals", "audit", "previews", "preview", "secrets"])
def test_every_page_renders_for_a_viewer_without_secrets(client: TestClient, world: World, page: str) -> None:
    sign_in(client, "vera")
    response = client.get(pages(world)[page])
    assert response.status_code == 200
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    for secret in (SECRET_OUTPUT, SECRET_PAYLOAD, SECRET_STORED, "gAAAAA"):
        assert secret not in response.text


def test_the_overview_shows_each_environment_with_status_words_and_icons(client: TestClient, world: World) -> None:
    sign_in(client, "vera")
    html = client.get("/").text
    assert 'data-env="infra/staging"' in html and 'data-env="infra/production"' in html
    for word in ("Drifted", "AwaitingApproval", "Healthy"):
        assert f'data-word="{word}"' in html
    assert "Scale web to three replicas" in html and "Alice Author" in html
    assert "3 items" in html


def test_the_environment_page_shows_the_pipeline_resources_history_and_timeline(client: TestClient,
                                                                                 world: World) -> None:
    with world.services.database.session() as session:  # a worker's look at the live objects
        observations.record(session, session.get_one(Environment, world.ids["staging"]), [
            LiveHealth("apps/Deployment/web/web", "Healthy", "1 replicas available", "web"),
            LiveHealth("/ConfigMap/web/settings", "Healthy", "exists", "settings")], [], assessed=True,
            stale_after=None)
    sign_in(client, "otto")
    html = client.get("/environments/infra/staging").text
    for stage in ("infrastructure", "configuration", "workloads"):
        assert f". {stage}</h3>" in html
    assert "<svg" in html and "Drift reports of infra/staging over time" in html
    assert "Roll back to " + world.old_sha[:7] in html
    tree = html[html.index('id="resource-tree"'):html.index("<h2>Drift</h2>")]  # workload → objects
    assert 'data-branch="settings"' in tree and 'data-kind="ConfigMap"' in tree
    assert 'data-address="apps/Deployment/web/web" data-sync="OutOfSync" data-health="Healthy"' in tree  # drifted
    assert 'href="/environments/infra/staging/objects/workloads?address=apps/Deployment/web/web"' in tree


def test_the_drift_page_shows_desired_and_live_side_by_side(client: TestClient, world: World) -> None:
    sign_in(client, "vera")
    html = client.get(f"/drift/{world.ids['drift']}").text
    assert "Desired (Git)" in html and "Live" in html
    assert ('<tr class="changed"><td><pre>max_connections = <mark>256</mark></pre></td>'
            '<td><pre>max_connections = <mark>4096</mark></pre>') in html
    assert "0.0.0.0/0" in html and "10.0.0.0/16" in html
    assert "Heal" not in html  # a viewer gets no buttons


def test_the_plan_page_shows_each_change_with_its_diff(client: TestClient, world: World) -> None:
    sign_in(client, "vera")
    html = client.get(f"/plans/{world.ids['plan']}").text
    assert "aws_security_group.nodes" in html and '<span class="add">    + 10.0.0.0/8</span>' in html
    assert "password = (sensitive)" in html


def test_a_form_action_without_the_csrf_token_is_refused(client: TestClient, world: World,
                                                          queue: RecordingQueue) -> None:
    sign_in(client, "otto")
    response = client.post("/environments/infra/staging/sync", data={"csrf_token": "nope"})
    assert response.status_code == 403 and queue.sent == []


def test_an_operator_syncs_from_the_environment_page(client: TestClient, world: World,
                                                     queue: RecordingQueue) -> None:
    sign_in(client, "otto")
    token = csrf_of(client.get("/environments/infra/staging").text)
    response = client.post("/environments/infra/staging/sync", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and "notice=Sync%20requested" in response.headers["location"]
    assert [kind for kind, _ in queue.sent] == ["plan"]


def test_a_viewer_pressing_sync_gets_a_403_page(client: TestClient, world: World, queue: RecordingQueue) -> None:
    sign_in(client, "vera")
    token = csrf_of(client.get("/").text)
    response = client.post("/environments/infra/staging/sync", data={"csrf_token": token})
    assert response.status_code == 403 and "lacks the operate permission" in response.text
    assert queue.sent == []


def test_the_author_pressing_approve_is_told_why_not(client: TestClient, world: World) -> None:
    sign_in(client, "alice")
    token = csrf_of(client.get(f"/syncs/{world.ids['pending']}").text)
    response = client.post(f"/syncs/{world.ids['pending']}/approve", data={"csrf_token": token})
    assert response.status_code == 403 and "own change" in response.text


def test_a_platform_lead_pressing_approve_for_their_own_change_in_the_form_gets_the_same_refusal_as_the_api(
        client: TestClient, world: World) -> None:
    """The web form, the API and the CLI all ask `reconciler.approvals`: alice wrote the head commit."""
    sign_in(client, "alice")
    token = csrf_of(client.get(f"/syncs/{world.ids['pending']}").text)
    form = client.post(f"/syncs/{world.ids['pending']}/approve", data={"csrf_token": token})
    api = client.post(f"/api/v1/syncs/{world.ids['pending']}/approve", headers=world.auth("alice"))
    assert form.status_code == api.status_code == 403
    assert "alice authored commit" in form.text and "alice authored commit" in api.json()["detail"]


@pytest.mark.parametrize("page", ["approvals", "pending-sync"])
def test_the_author_is_not_named_among_those_who_may_approve_the_change(client: TestClient, world: World,
                                                                         page: str) -> None:
    """alice is a platform lead with the approve permission but wrote the head commit: the server refuses
    her approval, so the list of who may approve names paula only and marks alice as the author."""
    sign_in(client, "vera")
    html = client.get(pages(world)[page]).text
    named = re.search(r'<p class="candidates">(.*?)</p>', html, re.S)
    assert named and re.findall(r"<strong>(\w+)</strong>", named.group(1)) == ["paula"]
    assert re.search(r'<p class="authors[^"]*">[^<]*alice \(author\)', html)


def test_a_preview_that_waits_for_a_go_ahead_says_so_and_how(client: TestClient, world: World) -> None:
    with world.services.database.session() as session:
        preview = session.get_one(Preview, world.ids["preview"])
        preview.held, preview.environments = "carol cannot push to the repository", {}
    sign_in(client, "vera")
    html = client.get(f"/previews/{world.ids['preview']}").text
    assert "Waiting: carol cannot push to the repository" in html
    assert f"/tidegate preview {'c' * 12}" in html
    shown = client.get(f"/api/v1/previews/{world.ids['preview']}", headers=world.auth("vera")).json()
    assert shown["held"] == "carol cannot push to the repository" and shown["environments"] == []


def test_signing_out_ends_the_session(client: TestClient) -> None:
    sign_in(client, "vera")
    token = csrf_of(client.get("/").text)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_password_change_ends_existing_sessions(client: TestClient, world: World) -> None:
    sign_in(client, "vera")
    assert client.get("/", follow_redirects=False).status_code == 200
    patched = client.patch("/api/v1/users/vera", headers=world.auth("root"), json={"password": "a new password"})
    assert patched.status_code == 200
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_scoped_viewer_sees_only_their_environment_in_a_preview(client: TestClient, world: World) -> None:
    sign_in(client, "sam")  # operator on infra/staging only
    html = client.get(f"/previews/{world.ids['preview']}").text
    assert "<h2>staging</h2>" in html and "<h2>production</h2>" not in html


def test_the_environment_page_says_when_the_live_world_was_last_seen_and_why_health_is_unknown(
        client: TestClient, world: World) -> None:
    sign_in(client, "otto")
    assert "Last observed: never" in client.get("/environments/infra/production").text
    with world.services.database.session() as session:
        env = session.scalars(select(Environment).where(Environment.name == "production")).one()
        observations.record(session, env, [], ["workloads: the cluster refused the credentials (401)"],
                            assessed=True, stale_after=600.0)
    html = client.get("/environments/infra/production").text
    assert "Last observed: <time" in html and "refused the credentials (401)" in html
    assert 'data-word="Unknown"' in html
