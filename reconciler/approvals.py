"""The approval gate: the one place that decides whether a principal may approve (or reject) a sync.

Every door calls `decide` here — the API, the web form, the CLI (in-process and over HTTP) and PR
review counting — with a `reconciler.access.Principal`; `decide` and `may_approve` (the question
without the answer) both ask `judge`, so one rule holds:

1. the sync awaits approval of exactly one plan (its fingerprint is what is approved);
2. the principal holds the approve permission on the sync's `repository/environment` (a role
   binding on it or on `*`);
3. the principal is named (directly or through a group) by at least one rule of the sync's
   `EffectivePolicy`: the admins' server-side policy and the repository's policy at the last
   applied revision (`reconciler.policies`) — never the policy of the revision being approved;
4. to approve, the principal wrote none of the commits in (last applied, R]: not as git author,
   committer or `Co-authored-by` (name, e-mail or its local part), and not as an account the Git
   host vouches for (push sender, pull request author, resolved commit author/committer).

The sync is approved when every required rule has its `minApprovals` distinct approvers it names
(each rule counted on its own); then its apply is queued. Every decision is audited, with the
admin's name when an admin acted for someone (`admin X as Y`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler import authorship, syncs
from reconciler.access import Permission, Principal, groups_of
from reconciler.authorship import Authorship, wrote_any
from reconciler.hosts import HostError, client_for
from reconciler.policies import EffectivePolicy, PolicyUnavailable, Rule, effective_policy
from reconciler.repositories import source_for
from reconciler.runtime import Services, hand_off
from reconciler.sources.git import SourceError
from reconciler.syncs import L
from store import Approval, ApprovalDecision, ApprovalSource, Repository, Sync, User
from store.queries import approvals_for, record_audit

log = logging.getLogger(__name__)
ANYONE = Rule("no approval policy applies any more", True, 1, ())
"""What a sync still awaiting approval needs when no rule requires one now: one approver."""


class ApprovalRefused(ValueError):
    """The decision cannot be taken; says why. `forbidden`: because of who asks (403), else because
    of the sync's state or a fact that could not be checked (409)."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


@dataclass(frozen=True)
class Decision:
    sync_id: int
    fingerprint: str
    approvals: int
    required: int
    approved: bool
    detail: str = ""
    """Per rule: how many of the approvers it names have approved, of how many it needs."""
    queued: bool = True
    """False when the apply could not be queued (broker down): the sweeper queues the approved sync later."""


@dataclass(frozen=True)
class Case:
    """Everything the decision about one sync is made from, read once and judged without I/O."""

    sync_id: int
    scope: str
    revision: str
    fingerprint: str
    policy: EffectivePolicy
    authors: Authorship


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""
    forbidden: bool = True


# --- the decision ----------------------------------------------------------------------------------------

def may_approve(services: Services, principal: Principal, sync_id: int,
                decision: ApprovalDecision = ApprovalDecision.APPROVE) -> Verdict:
    """May `principal` approve (or reject) sync `sync_id` now? The rule every door shares."""
    try:
        return judge(principal, examine(services, sync_id), decision)
    except ApprovalRefused as refused:
        return Verdict(False, str(refused), refused.forbidden)


def judge(principal: Principal, case: Case, decision: ApprovalDecision) -> Verdict:
    """The rule itself (points 2-4 of the module docstring), on facts already gathered."""
    if not principal.can(Permission.APPROVE, case.scope):
        return Verdict(False, f"{principal.name} lacks the approve permission on {case.scope}")
    rules = case.policy.gating
    if rules and not any(rule.admits(principal.name, principal.groups) for rule in rules):
        return Verdict(False, f"{principal.name} is not an approver of {case.scope} ("
                       + "; ".join(rule.describe() for rule in rules) + ")")
    if decision is ApprovalDecision.APPROVE:
        wrote = wrote_any(principal, case.authors)
        if wrote is not None:
            span = f"{case.authors.base[:12]}..{case.revision[:12]}" if case.authors.base else \
                f"the history up to {case.revision[:12]}"
            return Verdict(False, f"{wrote}, part of {span}, and cannot approve their own change")
    return Verdict(True)


def decide(services: Services, sync_id: int, principal: Principal, decision: ApprovalDecision,
           source: ApprovalSource = ApprovalSource.CLI, comment: str = "") -> Decision:
    """Record `principal`'s decision about the sync's plan if `judge` allows it; approve or reject
    the sync when it settles. Raises `ApprovalRefused`."""
    case = examine(services, sync_id)
    verdict = judge(principal, case, decision)
    if not verdict.allowed:
        raise ApprovalRefused(verdict.reason, forbidden=verdict.forbidden)
    with services.database.session() as session:
        sync = _awaiting(session, sync_id)
        if sync.plan is None or sync.plan.fingerprint != case.fingerprint:
            raise ApprovalRefused(f"sync {sync_id}'s plan changed while the decision was made: look at it again")
        session.add(Approval(plan_fingerprint=case.fingerprint, sync_id=sync.id, user=principal.name,
                             decision=decision, source=source, comment=comment))
        record_audit(session, actor=principal.audit_name, action=f"approval.{decision.value}",
                     target=f"sync-{sync.id}", details={"fingerprint": case.fingerprint, "source": source.value,
                                                        "comment": comment, "as": principal.name})
        session.flush()
        if decision is ApprovalDecision.REJECT:
            reason = f"rejected by {principal.name}" + (f": {comment}" if comment else "")
            syncs.transition(sync, L.FAILED, error=reason)
            return Decision(sync.id, case.fingerprint, 0, 1, False, "rejected")
        result = tally(session, case, principal)
        if result.approved:
            syncs.transition(sync, L.APPROVED)
    if not result.approved:
        return result
    return replace(result, queued=hand_off(partial(services.queue.apply, sync_id), f"apply of sync {sync_id}"))


def tally(session: Session, case: Case, principal: Principal) -> Decision:
    """Count, for each required rule on its own, the distinct approvers of the fingerprint it names."""
    names = list(dict.fromkeys(a.user for a in approvals_for(session, case.fingerprint)
                               if a.decision is ApprovalDecision.APPROVE))
    groups = {name: principal.groups if name == principal.name else _groups(session, name) for name in names}
    rules = case.policy.gating or (ANYONE,)
    counts = [(rule, sum(rule.admits(name, groups[name]) for name in names)) for rule in rules]
    rule, count = min(counts, key=lambda pair: pair[1] - pair[0].min_approvals)
    detail = "; ".join(f"{r.origin}: {n}/{r.min_approvals}" for r, n in counts)
    approved = all(n >= r.min_approvals for r, n in counts)
    return Decision(case.sync_id, case.fingerprint, count, rule.min_approvals, approved, detail)


def _groups(session: Session, name: str) -> frozenset[str]:
    user = session.scalars(select(User).where(User.name == name)).one_or_none()
    return frozenset(groups_of(session, user)) if user is not None else frozenset()


# --- gathering the facts ----------------------------------------------------------------------------------

def examine(services: Services, sync_id: int) -> Case:
    """The sync's scope, plan, effective policy and who wrote its range (git, then the host's API)."""
    with services.database.session() as session:
        sync = _awaiting(session, sync_id)
        assert sync.plan is not None and sync.revision is not None
        env = sync.environment
        scope, sha, fingerprint = f"{env.repository.name}/{env.name}", sync.revision.sha, sync.plan.fingerprint
        try:
            policy = effective_policy(services, session, env, sha)
        except PolicyUnavailable as error:
            raise ApprovalRefused(str(error)) from None
        repository = _detached(env.repository)
    return Case(sync_id, scope, sha, fingerprint, policy, _authors(services, repository, policy.base, sha))


def _awaiting(session: Session, sync_id: int) -> Sync:
    sync = session.get(Sync, sync_id)
    if sync is None:
        raise ApprovalRefused(f"no sync {sync_id}")
    if sync.status is not L.AWAITING_APPROVAL or sync.plan is None or sync.revision is None:
        raise ApprovalRefused(f"sync {sync_id} is {sync.status.value}, not awaiting approval")
    return sync


def _authors(services: Services, repository: Repository, base: str | None, sha: str) -> Authorship:
    source = source_for(services, repository)
    try:
        if not source.has_commit(sha) or (base is not None and not source.has_commit(base)):
            source.fetch()
        commits = tuple(source.commit_people(base, sha))
    except SourceError as error:
        raise ApprovalRefused(f"cannot list who wrote the commits up to {sha[:12]}: {error}") from None
    shas = [commit.sha for commit in commits]
    client = client_for(repository, services.secrets)
    left = 0
    if client is not None:
        with services.database.session() as session:
            todo = authorship.unresolved(session, repository.id, shas)
        left = max(0, len(todo) - authorship.MAX_LOOKUPS)
        try:
            found = authorship.look_up(client, todo[:authorship.MAX_LOOKUPS])
        except HostError as error:
            raise ApprovalRefused(f"cannot ask {repository.host.value} who wrote the commits up to {sha[:12]}: "
                                  f"{error}") from None
        with services.database.session() as session:
            authorship.store_lookups(session, repository.id, repository.host, found)
        if left:
            log.warning("%s: %d commits up to %s were not resolved through the host (limit %d per decision)",
                        repository.name, left, sha[:12], authorship.MAX_LOOKUPS)
    with services.database.session() as session:
        verified = authorship.verified_for(session, repository.id, shas)
    return Authorship(base, commits, verified, left)


def _detached(repository: Repository) -> Repository:
    """What git and the host client need, free of the session (no network call holds a transaction)."""
    copy = Repository(id=repository.id, name=repository.name, url=repository.url, branch=repository.branch,
                      host=repository.host, host_api_url=repository.host_api_url,
                      host_repository=repository.host_repository)
    copy.credentials, copy.host_token = repository.credentials, repository.host_token
    return copy
