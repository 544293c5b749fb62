"""PR review approvals count as approvals of the merged revision's gated plan, by the same rules as any
approval: the reviewer is the user linked to their host account id, holds the approve permission,
is named by the policy, wrote nothing of the change, and reviewed a head that planned the same."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from reconciler.hosts.approvals import RecountRequest, recount
from reconciler.plans import summary_content_fingerprint
from reconciler.runtime import Services
from store import (
    Approval,
    ApprovalSource,
    CommitIdentity,
    Environment,
    GitHost,
    Group,
    GroupMember,
    Plan,
    Preview,
    Repository,
    Revision,
    Role,
    RoleBinding,
    Sync,
    SyncLifecycle,
    SyncTrigger,
    User,
)
from tests.support.git_host import GitHostServer, git_host_server
from tests.support.git_server import files_of, make_bare_repo

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "infra-repo"
PR_HEAD = "d" * 40
OLD_PUSH = "e" * 40
HOSTS = [pytest.param(host, id=host.value) for host in (GitHost.GITHUB, GitHost.GITLAB, GitHost.GITEA)]


@dataclass
class Merged:
    """A merged PR on a fake host, and the production sync its merge commit is waiting in."""

    services: Services
    host: GitHostServer
    repository_id: int
    sync_id: int

    def recount(self) -> tuple[list[str], dict[str, str], bool]:
        outcome = recount(self.services, RecountRequest(repository_id=self.repository_id, number=7))
        return outcome.counted, outcome.refused, outcome.waiting

    def sync(self) -> Sync:
        with self.services.database.session() as session:
            sync = session.get_one(Sync, self.sync_id)
            session.expunge(sync)
            return sync

    def approvals(self) -> list[tuple[str, ApprovalSource]]:
        with self.services.database.session() as session:
            return [(a.user, a.source) for a in session.scalars(select(Approval).order_by(Approval.id))]


def _people(services: Services, host: GitHostServer) -> None:
    """Platform leads (approvers everywhere) alice, bob, dave (disabled) and erin; carol approves but
    leads nothing. Each is linked to the host account of the same login, by its id."""
    column = {GitHost.GITHUB: "github_id", GitHost.GITLAB: "gitlab_id", GitHost.GITEA: "gitea_id"}[host.host]
    with services.database.session() as session:
        leads = Group(name="platform-leads")
        users = {name: User(name=name, disabled=name == "dave", **{column: str(host.id_of(name))})
                 for name in ("alice", "bob", "carol", "dave", "erin")}
        session.add_all([leads, *users.values(), RoleBinding(subject="group:platform-leads", role=Role.APPROVER),
                         RoleBinding(subject="user:carol", role=Role.APPROVER)])
        session.flush()
        session.add_all([GroupMember(group_id=leads.id, user_id=users[name].id)
                         for name in ("alice", "bob", "dave", "erin")])


STAGES = {"infrastructure": {"summary": "+1 ~0 -0", "fingerprint": "f-infra", "changes": []},
          "workloads": {"summary": "+0 ~1 -0", "fingerprint": "f-work", "changes": []}}
"""The merged revision's plan summary; the PR head's preview planned production the same."""


@pytest.fixture(params=HOSTS)
def merged(request: pytest.FixtureRequest, services: Services, tmp_path: Path) -> Iterator[Merged]:
    bare = tmp_path / "infra.git"
    merge_sha = make_bare_repo(bare, files_of(EXAMPLE), message="Merge pull request #7")
    with git_host_server(request.param, "acme/infra", token="t") as host:
        _people(services, host)
        host.add_pull(7, author="alice", head_sha=PR_HEAD, merged=True, state="closed", merge_sha=merge_sha)
        with services.database.session() as session:
            repository = Repository(name="infra", url=str(bare), branch="main", host=request.param,
                                    host_api_url=host.api_url, host_repository="acme/infra",
                                    host_token=services.secrets.seal("t"))
            session.add(repository)
            session.flush()
            revision = Revision(repository_id=repository.id, ref="main", sha=merge_sha,
                                author="Merge Bot <bot@example.test>", message="Merge pull request #7",
                                committed_at=datetime(2026, 11, 1, tzinfo=UTC))
            env = Environment(repository_id=repository.id, name="production")
            session.add_all([revision, env])
            session.flush()
            plan = Plan(environment_id=env.id, revision_id=revision.id, fingerprint="fp-production", stages=STAGES)
            session.add_all([plan, Preview(repository_id=repository.id, number=7, head_sha=PR_HEAD, environments={
                "production": {"stages": STAGES, "errors": {}, "fingerprint": summary_content_fingerprint(STAGES)}})])
            session.flush()
            sync = Sync(environment_id=env.id, revision_id=revision.id, plan_id=plan.id, trigger=SyncTrigger.WEBHOOK,
                        status=SyncLifecycle.AWAITING_APPROVAL)
            session.add(sync)
            session.flush()
            ids = repository.id, sync.id
        yield Merged(services, host, *ids)
        assert host.problems == []


def test_an_allowed_reviewer_approving_the_merged_head_approves_the_waiting_plan(merged: Merged) -> None:
    merged.host.add_review(7, "bob", "APPROVED", PR_HEAD)

    counted, refused, _ = merged.recount()

    assert (counted, refused) == (["bob"], {})
    assert merged.sync().status is SyncLifecycle.APPROVED
    assert merged.approvals() == [("bob", ApprovalSource.PR_REVIEW)]
    assert merged.services.queue.sent == [("apply", merged.sync_id)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("reviewer,reason", [
    pytest.param("alice", "author", id="the-pr-author"),
    pytest.param("carol", "not an approver of infra/production", id="not-in-the-approver-group"),
    pytest.param("dave", "not linked to a Tidegate user", id="a-disabled-user"),
    pytest.param("mallory", "not linked to a Tidegate user", id="unknown-to-tidegate"),
])
def test_a_review_by_someone_the_policy_does_not_allow_is_refused_and_says_why(merged: Merged, reviewer: str,
                                                                              reason: str) -> None:
    merged.host.add_review(7, reviewer, "APPROVED", PR_HEAD)

    counted, refused, _ = merged.recount()

    assert counted == [] and reason in refused[reviewer]
    assert merged.sync().status is SyncLifecycle.AWAITING_APPROVAL and merged.approvals() == []


def test_an_approval_of_an_earlier_push_does_not_count_on_hosts_that_say_which_commit(merged: Merged) -> None:
    merged.host.add_review(7, "erin", "APPROVED", OLD_PUSH)

    counted, _, _ = merged.recount()

    if merged.host.host is GitHost.GITLAB:  # GitLab approvals carry no commit (its projects reset them on push)
        assert counted == ["erin"]
    else:
        assert counted == [] and merged.sync().status is SyncLifecycle.AWAITING_APPROVAL


@pytest.mark.parametrize("merged", [pytest.param(GitHost.GITHUB, id="github"), pytest.param(GitHost.GITEA, id="gitea")],
                         indirect=True)  # GitLab has no verdict but approval
def test_a_later_request_for_changes_replaces_an_earlier_approval(merged: Merged) -> None:
    merged.host.add_review(7, "bob", "APPROVED", PR_HEAD)
    merged.host.add_review(7, "bob", "REQUEST_CHANGES" if merged.host.host is GitHost.GITEA else "CHANGES_REQUESTED",
                           PR_HEAD)

    counted, _, _ = merged.recount()

    assert counted == [] and merged.approvals() == []


def test_counting_again_records_each_review_once(merged: Merged) -> None:
    merged.host.add_review(7, "bob", "APPROVED", PR_HEAD)
    merged.recount()
    with merged.services.database.session() as session:  # as if it waited again for the same plan
        session.get_one(Sync, merged.sync_id).status = SyncLifecycle.AWAITING_APPROVAL

    counted, _, _ = merged.recount()

    assert counted == [] and merged.approvals() == [("bob", ApprovalSource.PR_REVIEW)]


def test_the_pr_author_is_remembered_as_the_merged_commits_author_by_host_id(merged: Merged) -> None:
    merged.recount()

    with merged.services.database.session() as session:
        rows = session.scalars(select(CommitIdentity).where(CommitIdentity.source == "pr_author")).all()
        alice = str(merged.host.id_of("alice"))
        assert {(row.sha, row.user_id) for row in rows} == {(PR_HEAD, alice), (_merge_sha(merged), alice)}


def _merge_sha(merged: Merged) -> str:
    sha = merged.host.pulls[7].merge_sha
    assert sha is not None
    return sha


@pytest.mark.parametrize("change", [
    pytest.param("no-preview", id="no-preview-of-the-reviewed-head"),
    pytest.param("another-head", id="the-preview-was-of-another-head"),
    pytest.param("other-plan", id="the-head-planned-differently"),
])
def test_a_review_counts_only_for_an_undiverged_head(merged: Merged, change: str) -> None:
    with merged.services.database.session() as session:
        preview = session.scalars(select(Preview)).one()
        if change == "no-preview":
            session.delete(preview)
        elif change == "another-head":
            preview.head_sha = OLD_PUSH
        else:
            preview.environments = {"production": {"stages": {}, "errors": {}, "fingerprint": "something else"}}
    merged.host.add_review(7, "bob", "APPROVED", PR_HEAD)

    counted, refused, _ = merged.recount()

    assert counted == [] and ("diverged" in refused["bob"] or "no preview" in refused["bob"]), refused
    assert merged.sync().status is SyncLifecycle.AWAITING_APPROVAL


def test_reviews_of_an_unmerged_pull_request_wait_for_the_merge(merged: Merged) -> None:
    merged.host.pulls[7].merged, merged.host.pulls[7].state = False, "open"
    merged.host.add_review(7, "bob", "APPROVED", PR_HEAD)

    counted, _, waiting = merged.recount()

    assert (counted, waiting) == ([], False) and merged.approvals() == []


def test_while_the_merged_revision_is_still_planning_the_recount_asks_to_look_again(merged: Merged) -> None:
    merged.host.add_review(7, "bob", "APPROVED", PR_HEAD)
    with merged.services.database.session() as session:
        session.get_one(Sync, merged.sync_id).status = SyncLifecycle.PLANNING

    counted, _, waiting = merged.recount()

    assert (counted, waiting) == ([], True)


def test_a_recount_of_a_merged_pull_request_closes_its_preview(merged: Merged) -> None:
    merged.recount()

    with merged.services.database.session() as session:
        assert session.scalars(select(Preview.state)).one() == "merged"


@pytest.mark.parametrize(("preview_workloads", "counts"), [
    pytest.param("f-work", True, id="the-stage-it-runs-planned-the-same"),
    pytest.param("f-work-other", False, id="the-stage-it-runs-planned-differently"),
])
def test_a_merged_plan_that_left_an_unchanged_stage_out_is_compared_on_the_stages_it_runs(
        merged: Merged, preview_workloads: str, counts: bool) -> None:
    """The preview plans every stage; the merged sync leaves out the infrastructure (its inputs did
    not change since it last applied), so it applies nothing there: the review stands for what runs."""
    left_out = {**STAGES, "infrastructure": {"skipped": "inputs unchanged since sync #3", "changes": [],
                                             "summary": "skipped: inputs unchanged since sync #3",
                                             "fingerprint": "f-unchanged"}}
    reviewed = {**STAGES, "workloads": {**STAGES["workloads"], "fingerprint": preview_workloads}}
    with merged.services.database.session() as session:
        sync = session.get_one(Sync, merged.sync_id)
        assert sync.plan is not None
        sync.plan.stages = left_out
        session.scalars(select(Preview)).one().environments = {"production": {
            "stages": reviewed, "errors": {}, "fingerprint": summary_content_fingerprint(reviewed)}}
    merged.host.add_review(7, "bob", "APPROVED", PR_HEAD)

    counted, refused, _ = merged.recount()

    assert (counted == ["bob"]) is counts, refused
    assert (merged.sync().status is SyncLifecycle.APPROVED) is counts
