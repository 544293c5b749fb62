"""PR review approvals as Tidegate approvals: an `APPROVED` review of the merged head by an allowed approver.

When a PR is merged, its merged revision is planned like any other; a gated environment's sync
then waits for approval of that plan. Reviews on the PR count as approvals of it when:

* the PR is merged, and the review approves the head that was merged (a review of an earlier
  push approved other code; hosts without a review commit, GitLab, reset approvals on push);
* the reviewer is a Tidegate user (matched by login name) whom the environment's policy allows:
  `user:NAME`, or a member of `group:NAME` in the store's groups;
* the reviewer is not the PR's author (and `reconciler.approvals.decide` also refuses the
  revision's git author).

Each counted review becomes an `Approval` with source `pr_review` through `decide`, the same path
the dashboard and CLI take, so the fingerprint binding, the audit log and `minApprovals` apply
unchanged. A review seen again is not counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler import repositories
from reconciler.approvals import ApprovalRefused, decide
from reconciler.hosts import client_for
from reconciler.hosts.models import PullRequest, Review, ReviewState
from reconciler.runtime import Services
from store import (
    Approval,
    ApprovalDecision,
    ApprovalSource,
    Environment,
    Group,
    GroupMember,
    Preview,
    Repository,
    Revision,
    Sync,
    SyncLifecycle,
    User,
)

log = logging.getLogger(__name__)
_PLANNING = (SyncLifecycle.PENDING, SyncLifecycle.PLANNING)


class RecountRequest(BaseModel):
    """A PR whose reviews changed (or that was merged): count its approvals again."""

    repository_id: int
    number: int = Field(gt=0)


class RecountOutcome(BaseModel):
    """Which reviewers counted, which did not and why, and whether the merged revision is still planning."""

    counted: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)
    waiting: bool = False
    detail: str = ""


def recount(services: Services, request: RecountRequest) -> RecountOutcome:
    """Turn the PR's approving reviews into approvals of the merged revision's gated syncs."""
    with services.database.session() as session:
        repository = session.get_one(Repository, request.repository_id)
        host = client_for(repository, services.secrets)
    if host is None:
        return RecountOutcome(detail="the repository names no Git host API")
    pr = host.pull_request(request.number)
    if not pr.merged:
        return RecountOutcome(detail="not merged: reviews count for the merged head only")
    _mark_merged(services, request)
    approving = approving_reviewers(host.reviews(request.number), pr)
    shas = {sha for sha in (pr.merge_sha, pr.head_sha) if sha}
    outcome = RecountOutcome()
    with services.database.session() as session:
        awaiting = _syncs(session, request.repository_id, shas, (SyncLifecycle.AWAITING_APPROVAL,))
        outcome.waiting = not awaiting and bool(_syncs(session, request.repository_id, shas, _PLANNING)
                                                or not _revision_known(session, request.repository_id, shas))
        targets = [(sync.id, _approvers(services, sync)) for sync in awaiting]
    for sync_id, allowed in targets:
        for user in approving:
            _count(services, sync_id, user, pr, allowed, outcome)
    return outcome


def _mark_merged(services: Services, request: RecountRequest) -> None:
    """The PR's preview (if any) is history now: the merged revision's own plan is what applies."""
    with services.database.session() as session:
        preview = session.scalars(select(Preview).where(Preview.repository_id == request.repository_id,
                                                        Preview.number == request.number)).one_or_none()
        if preview is not None:
            preview.state = "merged"


def approving_reviewers(reviews: Sequence[Review], pr: PullRequest) -> list[str]:
    """Users whose latest review approves the merged head (a later review replaces an earlier one)."""
    latest: dict[str, Review] = {}
    for review in reviews:
        if review.user and review.state is not ReviewState.COMMENTED:
            latest[review.user.lower()] = review
    return [review.user for review in latest.values()
            if review.state is ReviewState.APPROVED and review.commit_sha in (None, pr.head_sha)]


def _count(services: Services, sync_id: int, user: str, pr: PullRequest, allowed: list[str],
           outcome: RecountOutcome) -> None:
    if user.lower() == pr.author.lower():
        outcome.refused[user] = "the PR's author cannot approve their own change"
        return
    with services.database.session() as session:
        if not may_approve(session, user, allowed):
            outcome.refused[user] = f"not an allowed approver ({', '.join(allowed) or 'no approvers listed'})"
            return
        if _already(session, sync_id, user):
            return
    try:
        decide(services, sync_id, user, ApprovalDecision.APPROVE, ApprovalSource.PR_REVIEW,
               comment=f"approved pull request #{pr.number} at {pr.head_sha[:12]}")
    except ApprovalRefused as refused:
        outcome.refused[user] = str(refused)
        return
    outcome.counted.append(user)


def may_approve(session: Session, login: str, approvers: Sequence[str]) -> bool:
    """A known, enabled Tidegate user named by `user:NAME` or a member of a `group:NAME`."""
    user = session.scalars(select(User).where(User.name == login)).one_or_none()
    if user is None or user.disabled:
        return False
    groups = set(session.scalars(select(Group.name).join(GroupMember).where(GroupMember.user_id == user.id)))
    return any(entry == f"user:{user.name}" or (entry.startswith("group:") and entry[6:] in groups)
               for entry in approvers)


def _syncs(session: Session, repository_id: int, shas: set[str], states: Sequence[SyncLifecycle]) -> list[Sync]:
    query = (select(Sync).join(Environment, Sync.environment_id == Environment.id)
             .join(Revision, Sync.revision_id == Revision.id)
             .where(Environment.repository_id == repository_id, Revision.sha.in_(shas), Sync.status.in_(states)))
    return list(session.scalars(query))


def _revision_known(session: Session, repository_id: int, shas: set[str]) -> bool:
    query = select(Revision.id).where(Revision.repository_id == repository_id, Revision.sha.in_(shas))
    return session.scalars(query).first() is not None


def _approvers(services: Services, sync: Sync) -> list[str]:
    """The environment's `approval.approvers` at the sync's revision (none when it does not load)."""
    if sync.revision is None:
        return []
    _, loaded, _ = repositories.load_at(services, sync.environment.repository, sync.revision.sha)
    if loaded is None or sync.environment.name not in loaded.environments:
        return []
    return list(loaded.environments[sync.environment.name].spec.approval.approvers)


def _already(session: Session, sync_id: int, user: str) -> bool:
    sync = session.get_one(Sync, sync_id)
    fingerprint = sync.plan.fingerprint if sync.plan else ""
    query = select(Approval.id).where(Approval.plan_fingerprint == fingerprint, Approval.user == user,
                                      Approval.decision == ApprovalDecision.APPROVE)
    return session.scalars(query).first() is not None
