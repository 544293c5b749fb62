"""A commit cannot rewrite its own gate: the policy that judges revision R is the one in force when
the environment was last applied (and the admins' server-side policy), never R's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.approval_support import Stack, stack
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis

MALLORY = "Mallory Pusher <mallory@example.com>"
POLICY = "approvers: [group:platform-leads]"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def infra(tmp_path: Path, redis: EmbeddedRedis) -> Iterator[Stack]:
    with stack(tmp_path, redis) as world:
        world.bootstrap()
        yield world


def test_a_commit_that_names_andy_as_approver_cannot_be_approved_by_andy(infra: Stack) -> None:
    rewrite = infra.commit("Let andy approve production", infra.production_with(POLICY, "approvers: [user:andy]"),
                           author=MALLORY)
    sync_id = infra.plan(rewrite)
    assert infra.status(sync_id) == "awaiting_approval"

    answer = infra.approve(sync_id, "andy")

    assert answer.status_code == 403, answer.text
    assert "not an approver" in answer.json()["detail"] and "group:platform-leads" in answer.json()["detail"]
    assert infra.status(sync_id) == "awaiting_approval" and infra.queue.take("apply") == []


def test_the_new_policy_governs_the_commits_after_it_once_it_is_applied(infra: Stack) -> None:
    rewrite = infra.commit("Let andy approve production", infra.production_with(POLICY, "approvers: [user:andy]"),
                           author=MALLORY)
    first = infra.plan(rewrite)
    assert infra.approve(first, "carol").status_code == 200, "the old policy's approvers decide the rewrite"
    assert infra.apply(first) == "succeeded"
    later = infra.commit("Tune production", {"apps/README.md": "tuned\n"}, author=MALLORY)
    second = infra.plan(later)

    answer = infra.approve(second, "andy")

    assert answer.status_code == 200 and answer.json()["approved"] is True, answer.text


def test_turning_the_gate_off_in_the_same_commit_still_waits_for_approval(infra: Stack) -> None:
    files = infra.production_with("required: true", "required: false")
    files = {name: (text or "").replace(POLICY, "approvers: []") for name, text in files.items()}
    sha = infra.commit("Production needs no approval", files, author=MALLORY)

    sync_id = infra.plan(sha)

    assert infra.status(sync_id) == "awaiting_approval", "the gate is the last applied revision's"
    assert infra.queue.take("apply") == []


def test_raising_minimum_approvals_in_a_commit_does_not_lower_the_bar_it_is_judged_by(infra: Stack) -> None:
    """The old policy's single approval suffices for the commit that asks for two (and no less)."""
    sha = infra.commit("Two approvals from now on", infra.production_with("minApprovals: 1", "minApprovals: 2"),
                       author=MALLORY)
    sync_id = infra.plan(sha)

    answer = infra.approve(sync_id, "bob")

    assert answer.status_code == 200 and answer.json()["approved"] is True, answer.text


def test_an_admins_server_policy_holds_on_its_own_next_to_the_repositorys(infra: Stack) -> None:
    root = infra.auth("root")
    answer = infra.http.put("/api/v1/approval-policies/infra/production", headers=root,
                            json={"required": True, "min_approvals": 2, "approvers": ["group:platform-leads"]})
    assert answer.status_code == 200, answer.text
    sync_id = infra.plan(infra.commit("Tune production", {"apps/README.md": "tuned\n"}, author=MALLORY))

    one = infra.approve(sync_id, "bob")
    two = infra.approve(sync_id, "carol")

    assert one.status_code == 200 and one.json()["approved"] is False, one.text
    assert "server policy of infra/production: 1/2" in one.json()["detail"]
    assert two.status_code == 200 and two.json()["approved"] is True, two.text
    [event] = [e for e in infra.http.get("/api/v1/audit", headers=root).json() if e["action"] == "approval_policy.set"]
    assert (event["actor"], event["target"]) == ("root", "infra/production")


@pytest.mark.parametrize("user,body,code,field", [
    pytest.param("bob", {"required": True, "approvers": ["group:x"]}, 403, None, id="not-an-admin"),
    pytest.param("root", {"required": True, "approvers": []}, 422, "approvers", id="required-without-approvers"),
    pytest.param("root", {"required": True, "approvers": ["everyone"]}, 422, "approvers", id="not-user-or-group"),
    pytest.param("root", {"min_approvals": 0, "approvers": ["group:x"]}, 422, "min_approvals", id="zero-approvals"),
    pytest.param("root", {"approvers": ["group:x"], "mode": "lax"}, 422, "mode", id="an-unknown-field"),
])
def test_a_server_policy_is_set_by_admins_only_and_bad_input_names_its_field(
        infra: Stack, user: str, body: dict[str, object], code: int, field: str | None) -> None:
    answer = infra.http.put("/api/v1/approval-policies/infra/production", headers=infra.auth(user), json=body)

    assert answer.status_code == code, answer.text
    if field is not None:
        assert any(field in [str(part) for part in error["loc"]] for error in answer.json()["detail"]), answer.text
