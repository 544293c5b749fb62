"""Who may approve a sync, as the approvals queue and the sync page say it, and whether the reader may.

The rules are the effective policy `reconciler.policies` computes for the approval decision itself
(the admins' policy and the repository's at the last applied revision), so the page and the gate
cannot disagree about who is named. The decision also refuses the authors of the change
(`reconciler.authorship.wrote_any`): the page asks the same question of the commits this machine's
mirror holds and the host accounts already stored — never the Git host's API, too slow for a page
that refreshes every two seconds — so an author is neither offered an Approve button the server would
refuse nor named among those who may approve. A commit range is immutable, so who wrote it is read
from git once per range (`_RANGES`); an account the host names only at decision time is still
refused then, with its reason.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.access import Permission, Principal
from reconciler import authorship, policies
from reconciler.access import principal_of
from reconciler.repositories import source_for
from reconciler.runtime import Services
from reconciler.sources.git import CommitPeople, SourceError
from store import Repository, Sync, User

_RANGES: OrderedDict[tuple[str, str | None, str], tuple[CommitPeople, ...] | None] = OrderedDict()
"""Who wrote each commit range (repository URL, base, head) a page asked about; None when this
machine could not read it. Ranges never change, so entries only leave to keep the memory small."""
_RANGES_KEPT = 256
_RANGES_LOCK = threading.Lock()


@dataclass(frozen=True)
class Approvers:
    """The rules a pending sync must satisfy, in words, and what the reader may do about it."""

    rules: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    """The people who hold the approve permission here, whom a rule names and who wrote none of the change:
    exactly those whose approval the server would count."""
    authors: list[str] = field(default_factory=list)
    """The people a rule names who wrote part of the change (`reconciler.authorship.wrote_any`): left out of
    `candidates` because the server refuses their approval."""
    unreadable: str | None = None
    """Why the policy cannot be read now (nothing can be approved until it can)."""
    may_decide: bool = False
    """The reader holds the approve permission here and a rule names them: Reject is shown (and Approve
    unless `wrote`)."""
    why_not: str = ""
    wrote: str = ""
    """How the reader took part in the change (`reconciler.authorship.wrote_any`): Approve is hidden, the
    server would refuse it."""

    @property
    def may_approve(self) -> bool:
        return self.may_decide and not self.wrote


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

    named_people = [person for person in everyone if named(person)]
    known = _authorship(services, session, sync, policy.base) if named_people or named(reader) else None
    def wrote(person: Principal) -> str:
        return (authorship.wrote_any(person, known) or "") if known is not None else ""

    candidates = [person.name for person in named_people if not wrote(person)]
    authors = [person.name for person in named_people if wrote(person)]
    if not reader.can(Permission.APPROVE, scope):
        return Approvers(rules, candidates, authors, why_not=f"you lack the approve permission on {scope}")
    if not named(reader):
        return Approvers(rules, candidates, authors, why_not="no rule names you")
    return Approvers(rules, candidates, authors, may_decide=True, wrote=wrote(reader))


def _authorship(services: Services, session: Session, sync: Sync, base: str | None) -> authorship.Authorship | None:
    """Who took part in (base, the sync's revision], as far as this machine knows without asking the Git
    host; None when the range cannot be read here (then nobody is marked as an author)."""
    assert sync.revision is not None
    repository = sync.environment.repository
    commits = _commits(services, repository, base, sync.revision.sha)
    if commits is None:
        return None
    verified = authorship.verified_for(session, repository.id, [commit.sha for commit in commits])
    return authorship.Authorship(base, commits, verified)


def _commits(services: Services, repository: Repository, base: str | None,
             head: str) -> tuple[CommitPeople, ...] | None:
    key = (repository.url, base, head)
    with _RANGES_LOCK:
        if key in _RANGES:
            _RANGES.move_to_end(key)
            return _RANGES[key]
    source = source_for(services, repository)
    try:
        if not source.has_commit(head) or (base is not None and not source.has_commit(base)):
            source.fetch()  # once per range: the answer is kept
        found: tuple[CommitPeople, ...] | None = tuple(source.commit_people(base, head))
    except SourceError:
        found = None
    with _RANGES_LOCK:
        _RANGES[key] = found
        while len(_RANGES) > _RANGES_KEPT:
            _RANGES.popitem(last=False)
    return found
