"""The approval gate: who approved which plan fingerprint, and when a sync may go on.

A sync awaiting approval carries exactly one plan; approving the sync approves that plan's
fingerprint. When the fingerprint has `minApprovals` approvals from people other than the
revision's author, the sync moves to `approved` and its apply is queued. Group membership of
approvers (`group:platform-leads`) is checked by the dashboard's users and roles; here every
decision is recorded and audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler import syncs
from reconciler.runtime import Services
from reconciler.syncs import L
from repo_schema.loader import load_repo
from store import Approval, ApprovalDecision, ApprovalSource, Sync, SyncStatus
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
        fingerprint = sync.plan.fingerprint
        session.add(Approval(plan_fingerprint=fingerprint, sync_id=sync.id, user=user, decision=decision,
                             source=source, comment=comment))
        record_audit(session, actor=user, action=f"approval.{decision.value}", target=f"sync-{sync.id}",
                     details={"fingerprint": fingerprint, "source": source.value, "comment": comment})
        session.flush()
        required = _min_approvals(services, sync)
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
    if approved:
        services.queue.apply(sync_id)
    return Decision(sync_id, fingerprint, len(approvers), required, approved)


def _min_approvals(services: Services, sync: Sync) -> int:
    from reconciler.repositories import checkout  # a cycle otherwise: repositories → syncs

    try:
        loaded = load_repo(checkout(services, sync.environment.repository, sync.revision.sha if sync.revision else ""))
        return loaded.environments[sync.environment.name].spec.approval.min_approvals
    except Exception:
        return 1


def _same_person(user: str, author: str) -> bool:
    """`author` is `Name <email>`: the same person when the user is the name, the email or its local part."""
    name, _, email = author.partition(" <")
    email = email.rstrip(">")
    candidates = {name.strip().lower(), email.lower(), email.split("@")[0].lower()} - {""}
    return user.strip().lower() in candidates
