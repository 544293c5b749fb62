"""Who may approve a sync, as the approvals queue and the sync page say it, and whether the reader may.

The rules are the effective policy `reconciler.policies` computes for the approval decision itself
(the admins' policy and the repository's at the last applied revision), so the page and the gate
cannot disagree about who is named. The page answers only from the policy and the reader's role
bindings; the decision also refuses the authors of the change, which needs the commit history (and
the Git host's API), too slow for a page that refreshes every two seconds — that refusal comes,
with its reason, when such a person presses Approve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from dashboard.access import Permission, Principal
from reconciler import policies
from reconciler.runtime import Services
from store import Sync


@dataclass(frozen=True)
class Approvers:
    """The rules a pending sync must satisfy, in words, and what the reader may do about it."""

    rules: list[str] = field(default_factory=list)
    unreadable: str | None = None
    """Why the policy cannot be read now (nothing can be approved until it can)."""
    may_decide: bool = False
    """The reader holds the approve permission here and a rule names them: Approve and Reject are shown."""
    why_not: str = ""


def approvers_of(services: Services, session: Session, sync: Sync, reader: Principal) -> Approvers:
    """What the approvals queue shows about `sync` to `reader` (a sync awaiting approval)."""
    env = sync.environment
    scope = f"{env.repository.name}/{env.name}"
    if sync.revision is None:
        return Approvers(unreadable="the sync names no revision")
    try:
        policy = policies.effective_policy(services, session, env, sync.revision.sha)
    except policies.PolicyUnavailable as error:
        return Approvers(unreadable=str(error))
    gating = policy.gating
    rules = [rule.describe() for rule in gating] or ["no rule requires approval any more: 1 of anyone with the "
                                                     "approve permission"]
    if not reader.can(Permission.APPROVE, scope):
        return Approvers(rules, why_not=f"you lack the approve permission on {scope}")
    if gating and not any(rule.admits(reader.name, reader.groups) for rule in gating):
        return Approvers(rules, why_not="no rule names you")
    return Approvers(rules, may_decide=True)
