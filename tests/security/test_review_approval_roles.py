"""A PR review approves a production sync only as the Tidegate user linked to the reviewer's host
account (by id, never by login), only with that user's approve permission on production, and only
when the reviewed head planned what the merged revision plans (Atlantis' "undiverged" rule)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from reconciler import previews
from reconciler.hosts.approvals import RecountOutcome, RecountRequest, recount
from store import Approval, GitHost
from tests.security.approval_support import Stack, pull_request_payload, stack
from tests.support.git_host import GitHostServer, git_host_server
from tests.support.redis_server import start_redis
from tidegate.redis_server import EmbeddedRedis

PAT = "Pat Contributor <pat@example.com>"
GITHUB = "GitHub <noreply@github.com>"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@dataclass
class Reviewed:
    """A merged pull request whose production sync awaits approval."""

    world: Stack
    host: GitHostServer
    head: str
    sync_id: int

    def review(self, login: str, state: str = "APPROVED") -> RecountOutcome:
        self.host.add_review(7, login, state, self.head)
        return recount(self.world.services, RecountRequest(repository_id=self.world.repository_id, number=7))


def _merged(world: Stack, host: GitHostServer, *, before_merge: object = None) -> Reviewed:
    """Pat (who can push) opens PR #7 changing production; it is previewed, merged and planned."""
    base = world.bootstrap()
    host.add_collaborator("pat-gh", "write")
    head = world.commit("Scale production web", world.production_with("selfHeal: false", "selfHeal: false  # 3 web"),
                       author=PAT, branch="feature")
    host.add_pull(7, author="pat-gh", head_sha=head)
    opened = world.deliver("pull_request", pull_request_payload(host, "opened", 7, "pat-gh", head, base=base))
    assert opened.status_code == 202, opened.text
    [request] = world.queue.take("preview")
    assert previews.run(world.services, request).environments == ["production"]
    if callable(before_merge):
        before_merge()
    merged = world.merge("feature", "Merge pull request #7 from acme/feature", committer=GITHUB)
    pull = host.pulls[7]
    pull.merged, pull.state, pull.merge_sha = True, "closed", merged
    sync_id = world.plan(merged)
    assert world.status(sync_id) == "awaiting_approval"
    return Reviewed(world, host, head, sync_id)


@pytest.fixture
def github(tmp_path: Path, redis: EmbeddedRedis) -> Iterator[tuple[Stack, GitHostServer]]:
    with git_host_server(GitHost.GITHUB, "acme/infra", token="host-token") as host, \
            stack(tmp_path, redis, host) as world:
        world.link("stella", github_id=str(host.id_of("stella-gh")))
        world.link("bob", github_id=str(host.id_of("robert-gh")))
        yield world, host
        assert host.problems == [], host.problems


@pytest.fixture
def merged(github: tuple[Stack, GitHostServer]) -> Reviewed:
    return _merged(*github)


def test_an_approver_bound_to_staging_only_cannot_approve_production_by_a_review(merged: Reviewed) -> None:
    outcome = merged.review("stella-gh")

    assert outcome.counted == []
    assert "lacks the approve permission on infra/production" in outcome.refused["stella-gh"]
    assert merged.world.status(merged.sync_id) == "awaiting_approval"
    assert merged.world.queue.take("apply") == []


def test_the_same_approver_is_refused_by_the_api_too(merged: Reviewed) -> None:
    """One rule behind every door: the API says what the review counter says."""
    answer = merged.world.approve(merged.sync_id, "stella")

    assert answer.status_code == 403 and "lacks the approve permission" in answer.json()["detail"]


def test_a_reviewer_is_matched_by_host_id_so_a_look_alike_login_counts_for_nobody(merged: Reviewed) -> None:
    """GitHub login `bob` is not Tidegate's bob: bob linked his account `robert-gh` by id."""
    impostor = merged.review("bob")

    assert impostor.counted == [] and "not linked to a Tidegate user" in impostor.refused["bob"]
    assert merged.world.status(merged.sync_id) == "awaiting_approval"

    genuine = merged.review("robert-gh")

    assert genuine.counted == ["bob"], genuine
    assert merged.world.status(merged.sync_id) == "approved"


def test_a_review_of_a_head_whose_plan_diverged_from_the_merged_revision_does_not_count(
        github: tuple[Stack, GitHostServer]) -> None:
    world, host = github

    def the_live_state_moves() -> None:  # e.g. someone applied another change to the nodes meanwhile
        world.live.config_changes = ["n1/write config", "n1/restart service"]

    diverged = _merged(world, host, before_merge=the_live_state_moves)

    outcome = diverged.review("robert-gh")

    assert outcome.counted == [] and "diverged" in outcome.refused["robert-gh"], outcome
    assert world.status(diverged.sync_id) == "awaiting_approval"


def test_an_undiverged_review_by_a_linked_approver_approves_exactly_the_merged_plan(merged: Reviewed) -> None:
    outcome = merged.review("robert-gh")

    assert (outcome.counted, outcome.refused) == (["bob"], {})
    with merged.world.services.database.session() as session:
        [approval] = session.scalars(select(Approval).where(Approval.sync_id == merged.sync_id)).all()
        assert (approval.user, approval.source.value) == ("bob", "pr_review")
    assert merged.world.queue.take("apply") == [merged.sync_id]
