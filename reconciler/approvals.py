"""The approval gate: who approved which plan fingerprint, and when a sync may go on.

A sync awaiting approval carries exactly one plan; approving the sync approves that plan's
fingerprint. Only people the environment's policy names may decide (`approvers`: `user:NAME`, a
plain `NAME`, or `group:NAME` with membership in the store's groups), never the revision's author.
When the fingerprint has `minApprovals` approvals, the sync moves to `approved` and its apply is
queued. The policy is the one written at the sync's revision. Every decision is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler import syncs
from reconciler.runtime import Services, hand_off
from reconciler.sources.git import SourceError
from reconciler.syncs import L
from repo_schema.issues import InvalidRepo
from repo_schema.loader import load_repo
from repo_schema.models import ApprovalPolicy
from store import Approval, ApprovalDecision, ApprovalSource, Group, GroupMember, Sync, SyncStatus, User
from store.queries import approvals_for, record_audit


class ApprovalRefused(ValueError):
    """The decision cannot be taken (wrong state, self-approval, unknown sync); says why."""


@dataclass(frozen=True)
class Decision:
    sync_id: int
    fingerprint: str
    approvals: int
    required: int
    approved: bool
    queued: bool = True
    """False when the apply could not be queued (broker down): the sweeper queues the approved sync later."""


def decide(services: Services, sync_id: int, user: str, decision: ApprovalDecision,
           source: ApprovalSource = ApprovalSource.CLI, comment: str = "") -> Decision:
    """Record `user`'s decision about the sync's plan; approve or reject the sync when it settles."""
    with services.database.session() as session:
        sync = session.get(Sync, sync_id)
        if sync is None:
            raise ApprovalRefused(f"no sync {sync_id}")
        if sync.status is not L.AWAITING_APPROVAL or sync.plan is None:
            raise ApprovalRefused(f"sync {sync_id} is {sync.status}, not awaiting approval")
        author = sync.revision.author if sync.revision else ""
        if decision is ApprovalDecision.APPROVE and _same_person(user, author):
            raise ApprovalRefused(f"{user} wrote revision {sync.revision.sha[:12] if sync.revision else ''} "
                                  "and cannot approve their own change")
        policy = _policy(services, sync)
        if not allowed(session, user, policy.approvers):
            raise ApprovalRefused(f"{user} is not an approver of {sync.environment.name} "
                                  f"(approvers: {', '.join(policy.approvers) or 'none'})")
        fingerprint = sync.plan.fingerprint
        session.add(Approval(plan_fingerprint=fingerprint, sync_id=sync.id, user=user, decision=decision,
                             source=source, comment=comment))
        record_audit(session, actor=user, action=f"approval.{decision.value}", target=f"sync-{sync.id}",
                     details={"fingerprint": fingerprint, "source": source.value, "comment": comment})
        session.flush()
        required = policy.min_approvals
        decisions = approvals_for(session, fingerprint)
        approvers = {a.user for a in decisions if a.decision is ApprovalDecision.APPROVE}
        if decision is ApprovalDecision.REJECT:
            syncs.transition(sync, L.FAILED, error=f"rejected by {user}" + (f": {comment}" if comment else ""))
            sync.environment.sync_status = SyncStatus.OUT_OF_SYNC
            return Decision(sync.id, fingerprint, len(approvers), required, False)
        approved = len(approvers) >= required
        if approved:
            syncs.transition(sync, L.APPROVED)
            sync.environment.sync_status = SyncStatus.OUT_OF_SYNC
    queued = not approved or hand_off(partial(services.queue.apply, sync_id), f"apply of sync {sync_id}")
    return Decision(sync_id, fingerprint, len(approvers), required, approved, queued)


def _policy(services: Services, sync: Sync) -> ApprovalPolicy:
    """The environment's approval policy as written at the sync's revision."""
    from reconciler.repositories import checkout  # repositories imports syncs, which this module uses

    sha = sync.revision.sha if sync.revision else ""
    try:
        loaded = load_repo(checkout(services, sync.environment.repository, sha))
        return loaded.environments[sync.environment.name].spec.approval
    except (SourceError, InvalidRepo, KeyError) as error:
        raise ApprovalRefused(f"cannot read {sync.environment.name}'s approval policy at {sha[:12]}: {error}") from None


def allowed(session: Session, user: str, approvers: list[str]) -> bool:
    """Whether the policy's `approvers` name `user`, directly or through a group it belongs to."""
    groups = {name.removeprefix("group:") for name in approvers if name.startswith("group:")}
    people = {name.removeprefix("user:") for name in approvers if not name.startswith("group:")}
    if user in people:
        return True
    if not groups:
        return False
    query = (select(Group.name).join(GroupMember).join(User)
             .where(User.name == user, User.disabled.is_(False), Group.name.in_(groups)))
    return session.scalars(query).first() is not None


def _same_person(user: str, author: str) -> bool:
    """`author` is `Name <email>`: the same person when the user is the name, the email or its local part."""
    name, _, email = author.partition(" <")
    email = email.rstrip(">")
    candidates = {name.strip().lower(), email.lower(), email.split("@")[0].lower()} - {""}
    return user.strip().lower() in candidates
