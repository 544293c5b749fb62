"""The API's rules as stories: approvals, rollbacks, drift, people, tokens, bad input, metrics, secrets."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from reconciler import pollstats
from reconciler.status import status_of
from store import (
    ApiToken,
    AuditEvent,
    DriftReport,
    Environment,
    GitHost,
    Sync,
    SyncLifecycle,
    WebhookDelivery,
)
from tests.dashboard.world import SECRET_OUTPUT, SECRET_PAYLOAD, SECRET_STORED, World
from tests.support.doubles import RecordingQueue


def audit(world: World, action: str) -> list[AuditEvent]:
    with world.services.database.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def sync_row(world: World, sync_id: int) -> tuple[SyncLifecycle, str | None, str]:
    with world.services.database.session() as session:
        row = session.get_one(Sync, sync_id)
        return row.status, row.revision.sha if row.revision else None, status_of(session, row.environment).value


# -- approvals ---------------------------------------------------------------------------------


def test_an_approver_named_by_the_policy_approves_and_the_apply_is_queued(
        client: TestClient, world: World, queue: RecordingQueue) -> None:
    response = client.post(f"/api/v1/syncs/{world.ids['pending']}/approve", headers=world.auth("paula"),
                           json={"comment": "three replicas look right"})
    assert response.status_code == 200, response.text
    assert response.json() | {"fingerprint": None} == {
        "sync_id": world.ids["pending"], "fingerprint": None, "approvals": 1, "required": 1, "approved": True,
        "status": "approved", "detail": f"repository policy at {world.old_sha[:12]} (last applied): 1/1",
        "queued": True}
    assert ("apply", world.ids["pending"]) in queue.sent
    assert sync_row(world, world.ids["pending"])[0] is SyncLifecycle.APPROVED
    [event] = audit(world, "approval.approve")
    assert event.actor == "paula" and event.details["comment"] == "three replicas look right"
    shown = client.get(f"/api/v1/syncs/{world.ids['pending']}", headers=world.auth("vera")).json()
    assert [(a["user"], a["decision"], a["source"]) for a in shown["approvals"]] == [("paula", "approve", "api")]


def test_the_author_cannot_approve_their_own_change(client: TestClient, world: World, queue: RecordingQueue) -> None:
    response = client.post(f"/api/v1/syncs/{world.ids['pending']}/approve", headers=world.auth("alice"))
    assert response.status_code == 403
    assert "own change" in response.json()["detail"]
    assert queue.sent == []
    assert sync_row(world, world.ids["pending"])[0] is SyncLifecycle.AWAITING_APPROVAL


def test_the_author_is_recognised_by_email_under_another_login_name(client: TestClient, world: World) -> None:
    root = world.auth("root")
    created = client.post("/api/v1/users", headers=root, json={"name": "a.author", "email": "alice@example.com",
                                                               "groups": ["platform-leads"]})
    assert created.status_code == 201, created.text
    client.post("/api/v1/role-bindings", headers=root, json={"subject": "user:a.author", "role": "approver"})
    token = client.post("/api/v1/users/a.author/tokens", headers=root).json()["token"]
    response = client.post(f"/api/v1/syncs/{world.ids['pending']}/approve",
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403 and "own change" in response.json()["detail"]


def test_an_admin_may_approve_as_someone_who_passes_every_rule_and_the_audit_says_so(
        client: TestClient, world: World) -> None:
    response = client.post(f"/api/v1/syncs/{world.ids['pending']}/approve", headers=world.auth("root"),
                           json={"comment": "paula is on the phone", "as_user": "paula"})
    assert response.status_code == 200 and response.json()["approved"] is True, response.text
    [event] = audit(world, "approval.approve")
    assert event.actor == "admin root as paula" and event.details["as"] == "paula"
    shown = client.get(f"/api/v1/syncs/{world.ids['pending']}", headers=world.auth("vera")).json()
    assert [a["user"] for a in shown["approvals"]] == ["paula"]


@pytest.mark.parametrize("caller,as_user,reason", [
    pytest.param("paula", "andy", "only an admin", id="an-approver-borrowing-a-name"),
    pytest.param("root", "alice", "own change", id="an-admin-as-the-author"),
    pytest.param("root", "ghost", "no enabled user", id="an-admin-as-nobody"),
])
def test_acting_as_someone_else_is_for_admins_and_never_bends_the_rules(
        client: TestClient, world: World, caller: str, as_user: str, reason: str) -> None:
    response = client.post(f"/api/v1/syncs/{world.ids['pending']}/approve", headers=world.auth(caller),
                           json={"as_user": as_user})
    assert response.status_code == 403 and reason in response.json()["detail"], response.text
    assert sync_row(world, world.ids["pending"])[0] is SyncLifecycle.AWAITING_APPROVAL


def test_an_approver_the_policy_does_not_name_is_refused(client: TestClient, world: World) -> None:
    response = client.post(f"/api/v1/syncs/{world.ids['pending']}/approve", headers=world.auth("andy"))
    assert response.status_code == 403
    assert "group:platform-leads" in response.json()["detail"]


def test_joining_the_policy_group_lets_an_approver_approve(client: TestClient, world: World) -> None:
    assert client.put("/api/v1/groups/platform-leads/members/andy", headers=world.auth("root")).status_code == 200
    response = client.post(f"/api/v1/syncs/{world.ids['pending']}/approve", headers=world.auth("andy"))
    assert response.status_code == 200, response.text


def test_a_rejection_fails_the_sync_and_a_second_decision_is_a_conflict(client: TestClient, world: World) -> None:
    pending = world.ids["pending"]
    rejected = client.post(f"/api/v1/syncs/{pending}/reject", headers=world.auth("paula"), json={"comment": "no"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "failed"
    again = client.post(f"/api/v1/syncs/{pending}/approve", headers=world.auth("paula"))
    assert again.status_code == 409 and "not awaiting approval" in again.json()["detail"]
    assert client.get("/api/v1/approvals", headers=world.auth("vera")).json() == []


def test_the_approvals_queue_lists_the_pending_production_sync_with_its_plan(shared_client: Any) -> None:
    world, client = shared_client
    [pending] = client.get("/api/v1/approvals", headers=world.auth("vera")).json()
    assert pending["environment"] == "infra/production" and pending["sync"]["id"] == world.ids["pending"]
    assert pending["plan_summary"] == {"infrastructure": "+0 ~1 -0", "configuration": "+0 ~0 -0",
                                       "workloads": "+0 ~1 -0"}


# -- actions -------------------------------------------------------------------------------------


def test_a_rollback_syncs_the_older_revision_and_pauses_auto_sync(
        client: TestClient, world: World, queue: RecordingQueue) -> None:
    response = client.post("/api/v1/environments/infra/staging/sync", headers=world.auth("otto"),
                           json={"revision": world.old_sha[:8]})
    assert response.status_code == 202, response.text
    sync_id = response.json()["sync_id"]
    assert queue.sent == [("plan", sync_id)]
    assert sync_row(world, sync_id)[:2] == (SyncLifecycle.PENDING, world.old_sha)
    env = client.get("/api/v1/environments/infra/staging", headers=world.auth("otto")).json()
    assert env["auto_sync_paused"] is True
    [event] = audit(world, "sync.rollback")
    assert event.actor == "otto" and event.details["revision"] == world.old_sha


def test_sync_now_is_idempotent_while_a_sync_is_pending(client: TestClient, world: World,
                                                        queue: RecordingQueue) -> None:
    first = client.post("/api/v1/environments/infra/staging/sync", headers=world.auth("otto")).json()
    second = client.post("/api/v1/environments/infra/staging/sync", headers=world.auth("otto")).json()
    assert first["sync_id"] == second["sync_id"]
    assert queue.sent == [("plan", first["sync_id"])]


@pytest.mark.parametrize(("revision", "why"), [
    pytest.param("deadbeefdeadbeef", "no known revision", id="unknown"),
    pytest.param("not-a-sha", "String should match pattern", id="not-hex"),
], )
def test_a_bad_rollback_revision_is_refused_naming_the_field(client: TestClient, world: World, revision: str,
                                                             why: str) -> None:
    response = client.post("/api/v1/environments/infra/staging/sync", headers=world.auth("otto"),
                           json={"revision": revision})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"][-1] == "revision" and why in problem["msg"]


def test_a_scoped_operator_acts_on_their_environment_only(client: TestClient, world: World) -> None:
    sam = world.auth("sam")
    assert client.post("/api/v1/environments/infra/staging/pause", headers=sam).status_code == 200
    refused = client.post("/api/v1/environments/infra/production/pause", headers=sam)
    assert refused.status_code == 403 and "on infra/production" in refused.json()["detail"]
    assert [e["key"] for e in client.get("/api/v1/environments", headers=sam).json()] == ["infra/staging"]


def test_resuming_auto_sync_asks_for_a_poll(client: TestClient, world: World, queue: RecordingQueue) -> None:
    client.post("/api/v1/environments/infra/production/pause", headers=world.auth("otto"))
    client.post("/api/v1/environments/infra/production/resume", headers=world.auth("otto"))
    assert [kind for kind, _ in queue.sent] == ["poll"]
    assert [e.actor for e in audit(world, "autosync.paused") + audit(world, "autosync.resumed")] == ["otto", "otto"]


def test_a_scoped_operator_may_poll_the_repository_of_their_environment(
        client: TestClient, world: World, queue: RecordingQueue) -> None:
    assert client.post("/api/v1/repositories/infra/poll", headers=world.auth("sam")).status_code == 202
    assert [kind for kind, _ in queue.sent] == ["poll"]
    assert client.post("/api/v1/repositories/elsewhere/poll", headers=world.auth("sam")).status_code == 404


def test_drift_reports_filter_by_environment(shared_client: Any) -> None:
    world, client = shared_client
    vera = world.auth("vera")
    staging = client.get("/api/v1/drift-reports?environment=infra/staging&status=resolved", headers=vera).json()
    assert [r["environment"] for r in staging] == ["infra/staging", "infra/staging"]
    assert client.get("/api/v1/drift-reports?environment=infra/production", headers=vera).json() == []
    assert client.get("/api/v1/drift-reports?environment=infra/nowhere", headers=vera).status_code == 404


def test_unknown_things_are_404(client: TestClient, world: World) -> None:
    root = world.auth("root")
    for path in ("/api/v1/syncs/999", "/api/v1/plans/999", "/api/v1/drift-reports/999",
                 "/api/v1/environments/infra/nowhere", "/api/v1/users/ghost"):
        assert client.get(path, headers=root).status_code == 404, path
    assert client.post("/api/v1/syncs/999/approve", headers=world.auth("paula")).status_code == 404


# -- drift ---------------------------------------------------------------------------------------


def test_a_drift_report_shows_desired_and_live_for_each_item(shared_client: Any) -> None:
    world, client = shared_client
    report = client.get(f"/api/v1/drift-reports/{world.ids['drift']}", headers=world.auth("vera")).json()
    assert report["items_by_stage"] == {"infrastructure": 1, "configuration": 1, "workloads": 1}
    replicas = next(i for i in report["items"] if i["field"] == "/spec/replicas")
    assert (replicas["desired"], replicas["live"]) == (3, 5)


def test_accepting_drift_resolves_the_report_and_the_environment_is_synced(client: TestClient, world: World) -> None:
    response = client.post(f"/api/v1/drift-reports/{world.ids['drift']}/accept", headers=world.auth("otto"))
    assert response.status_code == 200
    report = client.get(f"/api/v1/drift-reports/{world.ids['drift']}", headers=world.auth("otto")).json()
    assert (report["status"], report["resolution"]) == ("resolved", "accepted")
    env = client.get("/api/v1/environments/infra/staging", headers=world.auth("otto")).json()
    assert (env["sync_status"], env["open_drift_items"]) == ("Synced", 0)
    again = client.post(f"/api/v1/drift-reports/{world.ids['drift']}/accept", headers=world.auth("otto"))
    assert again.status_code == 409


def test_healing_drift_requests_a_drift_sync_of_the_drifted_revision(
        client: TestClient, world: World, queue: RecordingQueue) -> None:
    response = client.post(f"/api/v1/drift-reports/{world.ids['drift']}/heal", headers=world.auth("otto"))
    assert response.status_code == 202, response.text
    sync_id = response.json()["sync_id"]
    assert queue.sent == [("plan", sync_id)]
    with world.services.database.session() as session:
        row = session.get_one(Sync, sync_id)
        assert (row.trigger.value, row.revision.sha if row.revision else None) == ("drift", world.head_sha)
        assert session.get_one(DriftReport, world.ids["drift"]).resolution is not None


# -- people and tokens -----------------------------------------------------------------------------


def test_an_admin_adds_a_user_with_a_group_and_a_scoped_role(client: TestClient, world: World) -> None:
    root = world.auth("root")
    created = client.post("/api/v1/users", headers=root, json={"name": "dana", "email": "dana@example.com",
                                                               "password": "long enough pw", "groups": ["qa"]})
    assert created.status_code == 201 and created.json()["groups"] == ["qa"]
    bound = client.post("/api/v1/role-bindings", headers=root,
                        json={"subject": "group:qa", "role": "operator", "scope": "infra/staging"})
    assert bound.status_code == 201
    token = client.post("/api/v1/users/dana/tokens", headers=root, json={"name": "ci"}).json()["token"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["groups"] == ["qa"] and me["grants"] == [{"role": "operator", "scope": "infra/staging"}]
    assert client.post("/api/v1/users", headers=root, json={"name": "dana"}).status_code == 409


def test_an_admin_links_users_to_their_git_host_ids_one_user_per_id(client: TestClient, world: World) -> None:
    root = world.auth("root")
    linked = client.patch("/api/v1/users/paula", headers=root, json={"github_id": "583231", "gitea_id": "12"})
    assert linked.status_code == 200 and (linked.json()["github_id"], linked.json()["gitea_id"]) == ("583231", "12")
    taken = client.patch("/api/v1/users/andy", headers=root, json={"github_id": "583231"})
    assert taken.status_code == 409 and "already linked to paula" in taken.json()["detail"]
    bad = client.patch("/api/v1/users/andy", headers=root, json={"gitlab_id": "octocat"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "gitlab_id"]
    unlinked = client.patch("/api/v1/users/paula", headers=root, json={"github_id": ""})
    assert unlinked.json()["github_id"] is None
    assert client.patch("/api/v1/users/paula", headers=world.auth("paula"), json={"github_id": "1"}).status_code == 403


def test_tokens_are_stored_only_as_their_hash(client: TestClient, world: World) -> None:
    token = world.tokens["vera"]
    with world.services.database.session() as session:
        hashes = set(session.scalars(select(ApiToken.token_hash)))
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    database_file = world.services.data_dir / "tidegate.db"
    assert token.encode() not in database_file.read_bytes()


def test_a_disabled_user_is_no_longer_authenticated(client: TestClient, world: World) -> None:
    assert client.patch("/api/v1/users/vera", headers=world.auth("root"), json={"disabled": True}).status_code == 200
    assert client.get("/api/v1/me", headers=world.auth("vera")).status_code == 401


def test_a_revoked_token_stops_working(client: TestClient, world: World) -> None:
    prefix = world.tokens["vera"][:10]
    assert client.delete(f"/api/v1/users/vera/tokens/{prefix}", headers=world.auth("vera")).status_code == 204
    assert client.get("/api/v1/me", headers=world.auth("vera")).status_code == 401


def test_the_last_admin_binding_cannot_be_removed(client: TestClient, world: World) -> None:
    bindings = client.get("/api/v1/role-bindings", headers=world.auth("root")).json()
    [admin] = [b for b in bindings if b["role"] == "admin"]
    response = client.delete(f"/api/v1/role-bindings/{admin['id']}", headers=world.auth("root"))
    assert response.status_code == 409


@pytest.mark.parametrize(("body", "field"), [
    pytest.param({"name": "has space"}, "name", id="bad-name"),
    pytest.param({"name": "ok", "password": "short"}, "password", id="short-password"),
    pytest.param({"name": "ok", "email": "not-an-email"}, "email", id="bad-email"),
    pytest.param({"name": "ok", "admin": True}, "admin", id="unknown-field"),
    pytest.param({}, "name", id="missing-name"),
    pytest.param({"name": "ok", "groups": ["bad group"]}, 0, id="bad-group-name"),
])
def test_bad_input_is_a_4xx_naming_the_field(client: TestClient, world: World, body: dict[str, Any],
                                             field: str | int) -> None:
    response = client.post("/api/v1/users", headers=world.auth("root"), json=body)
    assert response.status_code == 422
    assert field in [problem["loc"][-1] for problem in response.json()["detail"]]


def test_a_malformed_json_body_is_a_4xx(client: TestClient, world: World) -> None:
    response = client.post("/api/v1/users", headers={**world.auth("root"), "Content-Type": "application/json"},
                           content=b"{not json")
    assert response.status_code == 422


# -- sessions from the API's side --------------------------------------------------------------------


def test_a_cookie_session_must_send_its_csrf_token_to_change_anything(client: TestClient, world: World) -> None:
    from tests.dashboard.test_pages import sign_in

    sign_in(client, "otto")
    me = client.get("/api/v1/me").json()
    assert me["name"] == "otto" and me["csrf_token"]
    assert client.post("/api/v1/environments/infra/staging/pause").status_code == 403
    ok = client.post("/api/v1/environments/infra/staging/pause", headers={"X-CSRF-Token": me["csrf_token"]})
    assert ok.status_code == 200


# -- logs, metrics, secrets -------------------------------------------------------------------------


def test_the_logs_of_a_finished_sync_arrive_as_events_then_end(shared_client: Any) -> None:
    world, client = shared_client
    response = client.get(f"/api/v1/syncs/{world.ids['staging_head']}/logs", headers=world.auth("vera"))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in response.text.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names == ["log", "log", "log", "end"]
    assert json.loads(events[-1][1].removeprefix("data: ")) == {"status": "succeeded"}
    assert "[workloads] applied 2 changes" in response.text


def test_metrics_are_all_named_tidegate_and_count_what_the_store_holds(client: TestClient, world: World) -> None:
    world.services.redis.rpush("apply", "task-1", "task-2")
    pollstats.record(world.services.redis, "infra", 0.04)
    with world.services.database.session() as session:
        session.add(WebhookDelivery(host=GitHost.GITHUB, delivery_id="d-1", event="push"))
    text = client.get("/metrics", headers=world.auth("vera")).text
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert samples and all(line.startswith("tidegate_") for line in samples)
    assert 'tidegate_syncs_total{result="succeeded"} 3.0' in samples
    assert 'tidegate_sync_duration_seconds_count{result="succeeded"} 3.0' in samples
    assert 'tidegate_drift_open_items{stage="workloads"} 1.0' in samples
    assert 'tidegate_queue_depth{queue="apply"} 2.0' in samples
    assert 'tidegate_webhook_deliveries_total{event="push",host="github"} 1.0' in samples
    assert any(line.startswith('tidegate_git_poll_age_seconds{repository="infra"}') for line in samples)
    assert 'tidegate_git_poll_duration_seconds_bucket{le="0.025",repository="infra"} 0.0' in samples
    assert 'tidegate_git_poll_duration_seconds_bucket{le="0.05",repository="infra"} 1.0' in samples
    assert 'tidegate_git_poll_duration_seconds_count{repository="infra"} 1.0' in samples


def test_metrics_need_a_token(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401


def every_get_path(world: World) -> list[str]:
    ids = world.ids
    return ["/api/v1/repositories", "/api/v1/environments", "/api/v1/environments/infra/staging",
            "/api/v1/environments/infra/production", "/api/v1/environments/infra/staging/syncs",
            "/api/v1/approvals", "/api/v1/drift-reports?status=open", "/api/v1/drift-reports?status=resolved",
            f"/api/v1/drift-reports/{ids['drift']}", f"/api/v1/plans/{ids['plan']}", "/api/v1/audit",
            "/api/v1/previews", f"/api/v1/previews/{ids['preview']}",
            "/api/v1/users", "/api/v1/secrets", "/metrics",
            *(f"/api/v1/syncs/{ids[k]}" for k in ("pending", "staging_old", "staging_head", "production_old")),
            *(f"/api/v1/syncs/{ids[k]}/logs" for k in ("staging_old", "staging_head"))]


def test_no_response_ever_holds_a_sealed_secret(shared_client: Any) -> None:
    world, client = shared_client
    for path in every_get_path(world):
        response = client.get(path, headers=world.auth("root"))
        assert response.status_code == 200, path
        for secret in (SECRET_OUTPUT, SECRET_PAYLOAD, SECRET_STORED, "gAAAAA"):  # gAAAAA: how every Fernet token starts
            assert secret not in response.text, path
        assert '"outputs"' not in response.text.replace('"outcomes"', "") and '"payload"' not in response.text


def test_environments_say_revision_author_message_status_health_drift_and_last_sync(shared_client: Any) -> None:
    world, client = shared_client
    envs = {e["name"]: e for e in client.get("/api/v1/environments", headers=world.auth("vera")).json()}
    staging, production = envs["staging"], envs["production"]
    assert (staging["sync_status"], staging["health"], staging["open_drift_items"]) == ("Drifted", "Healthy", 3)
    assert staging["revision"]["author"] == "Alice Author <alice@example.com>"
    assert staging["revision"]["message"] == "Scale web to three replicas"
    assert production["sync_status"] == "AwaitingApproval" and production["pending_approval"] == world.ids["pending"]
    assert production["last_sync"]["status"] == "awaiting_approval"
    with world.services.database.session() as session:
        assert {e.name for e in session.scalars(select(Environment))} == set(envs)
