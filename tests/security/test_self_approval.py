"""Nobody approves their own change: not by hiding it under someone else's commit, not as a
co-author, not as the account that pushed it or opened its pull request, not under another name
the Git host knows is theirs. Every commit of (last applied, R] counts, through every door."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.identity import user_by_name
from reconciler.access import principal_of
from reconciler.approvals import ApprovalRefused, decide, may_approve
from reconciler.hosts.approvals import RecountRequest, recount
from store import ApprovalDecision, ApprovalSource, GitHost
from tests.security.approval_support import Stack, account, pull_request_payload, stack
from tests.support.git_host import GitHostServer, git_host_server
from tests.support.redis_server import start_redis
from tidegate.client import ClientError, LocalClient
from tidegate.redis_server import EmbeddedRedis

ALICE = "Alice Author <alice@example.com>"
BOB = "Bob Builder <bob@example.com>"
GITHUB = "GitHub <noreply@github.com>"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def infra(tmp_path: Path, redis: EmbeddedRedis) -> Iterator[Stack]:
    with stack(tmp_path, redis) as world:
        world.bootstrap()
        yield world


@pytest.fixture
def github(tmp_path: Path, redis: EmbeddedRedis) -> Iterator[Stack]:
    """The same, with the repository's GitHub (the recording fake) and alice linked to her account."""
    with git_host_server(GitHost.GITHUB, "acme/infra", token="host-token") as host, \
            stack(tmp_path, redis, host) as world:
        world.bootstrap()
        world.link("alice", github_id=str(host.id_of("alice-gh")))
        yield world
        assert host.problems == [], host.problems


def _host(world: Stack) -> GitHostServer:
    assert world.host is not None
    return world.host


@pytest.mark.parametrize("alice_as", [
    pytest.param({"author": ALICE}, id="author"),
    pytest.param({"author": BOB, "committer": ALICE}, id="committer-only"),
    pytest.param({"author": "A. Author <alice@corp.example>"}, id="another-address-same-mailbox-name"),
])
def test_alices_change_under_bobs_trivial_commit_cannot_be_approved_by_alice(infra: Stack,
                                                                           alice_as: dict[str, str]) -> None:
    infra.commit("Open the security group to the office", {"apps/README.md": "office\n"}, **alice_as)
    top = infra.commit("Fix a typo", {"apps/README.md": "office.\n"}, author=BOB)
    sync_id = infra.plan(top)

    answer = infra.approve(sync_id, "alice")

    assert answer.status_code == 403, answer.text
    assert "alice" in answer.json()["detail"] and "own change" in answer.json()["detail"]
    assert infra.approve(sync_id, "bob").status_code == 403, "bob wrote the top commit"
    assert infra.approve(sync_id, "carol").status_code == 200


def test_the_cli_refuses_alice_too_whoever_she_claims_to_be(infra: Stack) -> None:
    infra.commit("Open the security group", {"apps/README.md": "office\n"}, author=ALICE)
    sync_id = infra.plan(infra.commit("Fix a typo", {"apps/README.md": "office.\n"}, author=BOB))

    with pytest.raises(ClientError, match="own change"):
        LocalClient(infra.services, login="alice").approve(sync_id, "mine")
    with pytest.raises(ClientError, match="only an admin"):
        LocalClient(infra.services, login="alice").approve(sync_id, "as carol", as_user="carol")
    assert infra.status(sync_id) == "awaiting_approval"


@pytest.mark.parametrize("trailer", [
    pytest.param("Co-authored-by: Alice Author <alice@example.com>", id="co-authored-by"),
    pytest.param("co-authored-by:   alice <alice@example.com>  ", id="lower-case-and-spaces"),
])
def test_a_co_author_cannot_approve(infra: Stack, trailer: str) -> None:
    sha = infra.commit(f"Pair on the web tier\n\n{trailer}\n", {"apps/README.md": "paired\n"}, author=BOB)
    sync_id = infra.plan(sha)

    answer = infra.approve(sync_id, "alice")

    assert answer.status_code == 403 and "co-authored" in answer.json()["detail"], answer.text


def test_the_account_that_pushed_cannot_approve_whatever_name_git_was_given(github: Stack) -> None:
    """Alice commits under Bob's name and pushes with her own GitHub account: GitHub's word wins."""
    sha = github.commit("Widen the ingress", {"apps/README.md": "wide\n"}, author=BOB)
    push = github.deliver("push", {"ref": "refs/heads/main", "before": "0" * 40, "after": sha,
                                   "commits": [{"id": sha}], "sender": account(_host(github), "alice-gh")})
    assert push.status_code == 202, push.text
    sync_id = github.plan(sha)

    answer = github.approve(sync_id, "alice")

    assert answer.status_code == 403, answer.text
    assert "alice-gh pushed" in answer.json()["detail"]
    assert github.approve(sync_id, "carol").status_code == 200


def test_the_author_of_the_merged_pull_request_cannot_approve_it(github: Stack) -> None:
    """The commits say Bob and the merge commit says GitHub; the pull request was Alice's."""
    head = github.commit("Widen the ingress", {"apps/README.md": "wide\n"}, author=BOB, branch="feature")
    merged = github.merge("feature", "Merge pull request #7 from alice-gh/feature", committer=GITHUB)
    host = _host(github)
    host.add_pull(7, author="alice-gh", head_sha=head, merged=True, state="closed", merge_sha=merged)
    delivered = github.deliver("pull_request", pull_request_payload(host, "closed", 7, "alice-gh", head, merged=True,
                                                                    merge_sha=merged))
    assert delivered.status_code == 202, delivered.text
    sync_id = github.plan(merged)

    answer = github.approve(sync_id, "alice")

    assert answer.status_code == 403, answer.text
    assert "opened the pull request" in answer.json()["detail"]


def test_a_commit_the_host_attributes_to_alice_is_hers_under_any_git_name(github: Stack) -> None:
    sha = github.commit("Widen the ingress", {"apps/README.md": "wide\n"}, author="Someone Else <ghost@example.net>")
    _host(github).commit_accounts[sha] = ("alice-gh", None)
    sync_id = github.plan(sha)

    answer = github.approve(sync_id, "alice")

    assert answer.status_code == 403, answer.text
    assert "alice-gh authored" in answer.json()["detail"]


def test_a_pr_review_by_the_pull_requests_author_does_not_count(github: Stack) -> None:
    head = github.commit("Widen the ingress", {"apps/README.md": "wide\n"}, author=BOB, branch="feature")
    merged = github.merge("feature", "Merge pull request #7", committer=GITHUB)
    host = _host(github)
    host.add_pull(7, author="alice-gh", head_sha=head, merged=True, state="closed", merge_sha=merged)
    host.add_review(7, "alice-gh", "APPROVED", head)
    github.plan(merged)

    outcome = recount(github.services, RecountRequest(repository_id=github.repository_id, number=7))

    assert outcome.counted == [] and "author" in outcome.refused["alice-gh"]


def test_the_decision_function_itself_refuses_whichever_door_calls_it(infra: Stack) -> None:
    """The reconciler's one rule, called directly as the PR-review counter does."""
    infra.commit("Open the security group", {"apps/README.md": "office\n"}, author=ALICE)
    sync_id = infra.plan(infra.commit("Fix a typo", {"apps/README.md": "office.\n"}, author=BOB))
    with infra.services.database.session() as session:
        user = user_by_name(session, "alice")
        assert user is not None
        alice = principal_of(session, user, "pr_review")

    verdict = may_approve(infra.services, alice, sync_id)

    assert not verdict.allowed and verdict.forbidden and "own change" in verdict.reason
    with pytest.raises(ApprovalRefused, match="own change"):
        decide(infra.services, sync_id, alice, ApprovalDecision.APPROVE, ApprovalSource.PR_REVIEW)
