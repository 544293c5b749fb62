"""Who may approve a sync, as the approvals queue and the sync page say it, and whether the reader may.

The rules are the effective policy `reconciler.policies` computes for the approval decision itself
(the admins' policy and the repository's at the last applied revision), so the page and the gate
cannot disagree about who is named. The page answers only from the policy and the reader's role
bindings; the decision also refuses the authors of the change, which needs the commit history (and
the Git host's API), too slow for a page that refreshes every two seconds — that refusal comes,
with its reason, when such a person presses Approve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.access import Permission, Principal
from reconciler import policies
from reconciler.access import principal_of
from reconciler.runtime import Services
from store import Sync, User


@dataclass(frozen=True)
class Approvers:
    """The rules a pending sync must satisfy, in words, and what the reader may do about it."""

    rules: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    """The people who hold the approve permission here and whom a rule names (the change's authors among them
    are refused when they press Approve)."""
    unreadable: str | None = None
    """Why the policy cannot be read now (nothing can be approved until it can)."""
    may_decide: bool = False
    """The reader holds the approve permission here and a rule names them: Approve and Reject are shown."""
    why_not: str = ""


def people(session: Session, limit: int = 500) -> list[Principal]:
    """Every enabled user as a principal (groups and grants), read once per page to name the candidates."""
    users = session.scalars(select(User).where(User.disabled.is_(False)).order_by(User.name).limit(limit))
    return [principal_of(session, user, "page") for user in users]


def approvers_of(services: Services, session: Session, sync: Sync, reader: Principal,
                 everyone: Sequence[Principal] = ()) -> Approvers:
    """What the approvals queue shows about `sync` to `reader` (a sync awaiting approval); `everyone`
    (from `people`) to name the candidates."""
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
    def named(person: Principal) -> bool:
        return person.can(Permission.APPROVE, scope) and (
            not gating or any(rule.admits(person.name, person.groups) for rule in gating))

    candidates = [person.name for person in everyone if named(person)]
    if not reader.can(Permission.APPROVE, scope):
        return Approvers(rules, candidates, why_not=f"you lack the approve permission on {scope}")
    if not named(reader):
        return Approvers(rules, candidates, why_not="no rule names you")
    return Approvers(rules, candidates, may_decide=True)
