"""PR review approvals as Tidegate approvals: an `APPROVED` review of the merged head by an allowed approver.

When a PR is merged, its merged revision is planned like any other; a gated environment's sync
then waits for approval of that plan. Reviews on the PR count as approvals of it when:

* the PR is merged, and the review approves the head that was merged (a review of an earlier
  push approved other code; hosts without a review commit, GitLab, reset approvals on push);
* the reviewer is the Tidegate user linked to the reviewer's stable id on the host (`tidegate user
  link NAME --github-id …`; logins are never trusted: they can be renamed and taken over);
* the reviewed head is undiverged (Atlantis' rule): its preview planned this environment to the
  same content fingerprint as the merged revision's awaiting plan, so what the reviewer saw is
  what will apply;
* and `reconciler.approvals.decide` (through `reconciler.commands.decide_approval`, the door the
  dashboard, API and CLI use too) allows
  that user: the approve permission on the environment, a place in its effective policy, no part
  in any commit of the range (the PR's author, recorded here from the host, included).

Each counted review becomes an `Approval` with source `pr_review`, so the fingerprint binding, the
audit log and `minApprovals` apply unchanged. A review seen again is not counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler import authorship
from reconciler.access import principal_of, user_by_host_id
from reconciler.commands import CommandRefused, decide_approval
from reconciler.hosts import client_for
from reconciler.hosts.models import HostUser, PullRequest, Review, ReviewState
from reconciler.plans import summary_content_fingerprint
from reconciler.runtime import Services
from store import (
    Approval,
    ApprovalDecision,
    ApprovalSource,
    Environment,
    GitHost,
    Preview,
    Repository,
    Revision,
    Sync,
    SyncLifecycle,
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
        host, host_kind = client_for(repository, services.secrets), repository.host
    if host is None:
        return RecountOutcome(detail="the repository names no Git host API")
    pr = host.pull_request(request.number)
    if not pr.merged:
        return RecountOutcome(detail="not merged: reviews count for the merged head only")
    shas = {sha for sha in (pr.merge_sha, pr.head_sha) if sha}
    _mark_merged(services, request, host_kind, pr, shas)
    approving = approving_reviews(host.reviews(request.number), pr)
    outcome = RecountOutcome()
    with services.database.session() as session:
        awaiting = _syncs(session, request.repository_id, shas, (SyncLifecycle.AWAITING_APPROVAL,))
        outcome.waiting = not awaiting and bool(_syncs(session, request.repository_id, shas, _PLANNING)
                                                or not _revision_known(session, request.repository_id, shas))
        targets = [Target(sync.id, sync.environment.name, summary_content_fingerprint(stages), host_kind,
                          _runs(stages))
                   for sync in awaiting for stages in [sync.plan.stages if sync.plan else {}]]
        reviewed = _reviewed(session, request)
    for target in targets:
        for review in approving:
            _count(services, target, review, pr, reviewed, outcome)
    return outcome


@dataclass(frozen=True)
class Target:
    """One awaiting sync a review may approve: its environment and its plan's content fingerprint."""

    sync_id: int
    environment: str
    fingerprint: str | None
    host: GitHost
    runs: frozenset[str] | None = None
    """The stages the merged plan runs (None: all); those it left out, inputs unchanged, apply nothing."""


@dataclass(frozen=True)
class Reviewed:
    """What the PR's preview planned for its last head: per environment, the content fingerprint."""

    head_sha: str
    fingerprints: dict[str, str | None]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per environment, the preview's plan summary per stage (its per-stage fingerprints)."""

    def fingerprint(self, environment: str, runs: frozenset[str] | None) -> str | None:
        """The preview's content fingerprint of `environment`, over the stages `runs` when the merged
        plan left others out (their inputs unchanged, they apply nothing: what runs is what was reviewed)."""
        planned = self.fingerprints.get(environment)
        if planned is None or runs is None or environment not in self.stages:
            return planned
        return summary_content_fingerprint(self.stages[environment], only=runs)


def _mark_merged(services: Services, request: RecountRequest, host: GitHost, pr: PullRequest,
                 shas: set[str]) -> None:
    """The PR's preview (if any) is history now: the merged revision's own plan is what applies.
    The PR's author, as the host names them, wrote the merged commits: remember it for the decision."""
    with services.database.session() as session:
        preview = session.scalars(select(Preview).where(Preview.repository_id == request.repository_id,
                                                        Preview.number == request.number)).one_or_none()
        if preview is not None:
            preview.state = "merged"
        authorship.record(session, request.repository_id, host, shas, authorship.PR_AUTHOR,
                          HostUser(login=pr.author, id=pr.author_id))


def _reviewed(session: Session, request: RecountRequest) -> Reviewed | None:
    preview = session.scalars(select(Preview).where(Preview.repository_id == request.repository_id,
                                                    Preview.number == request.number)).one_or_none()
    if preview is None or preview.held:
        return None
    environments: dict[str, Any] = preview.environments if isinstance(preview.environments, dict) else {}
    return Reviewed(preview.head_sha, {str(name): data.get("fingerprint") if isinstance(data, dict) else None
                                       for name, data in environments.items()},
                    {str(name): data["stages"] for name, data in environments.items()
                     if isinstance(data, dict) and isinstance(data.get("stages"), dict)})


def approving_reviews(reviews: Sequence[Review], pr: PullRequest) -> list[Review]:
    """Reviews whose reviewer's latest verdict approves the merged head (a later review replaces an earlier one)."""
    latest: dict[str, Review] = {}
    for review in reviews:
        if review.user and review.state is not ReviewState.COMMENTED:
            latest[review.user_id or review.user.lower()] = review
    return [review for review in latest.values()
            if review.state is ReviewState.APPROVED and review.commit_sha in (None, pr.head_sha)]


def _count(services: Services, target: Target, review: Review, pr: PullRequest, reviewed: Reviewed | None,
           outcome: RecountOutcome) -> None:
    login = review.user
    if login.lower() == pr.author.lower() or (review.user_id and review.user_id == pr.author_id):
        outcome.refused[login] = "the PR's author cannot approve their own change"
        return
    diverged = _diverged(target, review.commit_sha or pr.head_sha, reviewed)
    if diverged is not None:
        outcome.refused[login] = diverged
        return
    with services.database.session() as session:
        user = user_by_host_id(session, target.host, review.user_id)
        if user is None:
            outcome.refused[login] = (f"{target.host.value} user {login} (id {review.user_id or 'unknown'}) is not "
                                      f"linked to a Tidegate user (tidegate user link NAME "
                                      f"--{target.host.value}-id {review.user_id or 'ID'})")
            return
        if _already(session, target.sync_id, user.name):
            return
        principal = principal_of(session, user, "pr_review")
    try:
        decide_approval(services, principal, target.sync_id, ApprovalDecision.APPROVE, ApprovalSource.PR_REVIEW,
                        comment=f"approved pull request #{pr.number} at {pr.head_sha[:12]} as {target.host.value} "
                        f"user {login}")
    except CommandRefused as refused:
        outcome.refused[login] = str(refused)
        return
    outcome.counted.append(principal.name)


def _runs(stages: dict[str, Any]) -> frozenset[str] | None:
    """The stages a stored plan runs, when it left some out (None: it runs every stage it has)."""
    left_out = {name for name, stage in stages.items() if isinstance(stage, dict) and stage.get("skipped")}
    return frozenset(set(stages) - left_out) if left_out else None


def _diverged(target: Target, head: str, reviewed: Reviewed | None) -> str | None:
    """Why the reviewed head's plan cannot stand for the merged revision's (None: it can)."""
    if reviewed is None or reviewed.head_sha != head:
        return f"no preview of the reviewed head {head[:12]}: what was reviewed cannot be compared with the merged plan"
    planned = reviewed.fingerprint(target.environment, target.runs)
    if planned is None:
        return f"the preview of {head[:12]} did not plan {target.environment}"
    if target.fingerprint is None or planned != target.fingerprint:
        return (f"diverged: the reviewed head {head[:12]} planned {target.environment} differently from the merged "
                "revision (the base or the live state moved): approve the merged plan itself")
    return None


def _syncs(session: Session, repository_id: int, shas: set[str], states: Sequence[SyncLifecycle]) -> list[Sync]:
    query = (select(Sync).join(Environment, Sync.environment_id == Environment.id)
             .join(Revision, Sync.revision_id == Revision.id)
             .where(Environment.repository_id == repository_id, Revision.sha.in_(shas), Sync.status.in_(states)))
    return list(session.scalars(query))


def _revision_known(session: Session, repository_id: int, shas: set[str]) -> bool:
    query = select(Revision.id).where(Revision.repository_id == repository_id, Revision.sha.in_(shas))
    return session.scalars(query).first() is not None


def _already(session: Session, sync_id: int, user: str) -> bool:
    sync = session.get_one(Sync, sync_id)
    fingerprint = sync.plan.fingerprint if sync.plan else ""
    query = select(Approval.id).where(Approval.plan_fingerprint == fingerprint, Approval.user == user,
                                      Approval.decision == ApprovalDecision.APPROVE)
    return session.scalars(query).first() is not None
