"""Who wrote the commits a sync would apply: as git spells them, and as the Git host vouches for them.

Git author and committer names and e-mails (and `Co-authored-by` trailers) are whatever someone's
git was told, so they catch honest mistakes but not a liar. The host knows more and signs what it
says: the sender of a push (webhook `sender`), the author of a pull request, and the accounts its
API matches a commit's author and committer to. Those are stored per commit (`CommitIdentity`),
recorded when a webhook arrives or a review is counted, and resolved from the host's API when an
approval is decided, so the approval decision can refuse everyone any of them names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler.access import Principal
from reconciler.hosts import CommitAccounts, GitHostClient, HostUser
from reconciler.sources.git import CommitPeople
from store import CommitIdentity, GitHost

log = logging.getLogger(__name__)

PUSH_SENDER = "push_sender"
PR_AUTHOR = "pr_author"
COMMIT_AUTHOR = "commit_author"
COMMIT_COMMITTER = "commit_committer"
RESOLVED = (COMMIT_AUTHOR, COMMIT_COMMITTER)
MAX_LOOKUPS = 100
"""Commits resolved through the host's API per decision (each once ever: results are stored), so one
approval of a long range (a first sync judges the whole history) cannot stall on the host."""


@dataclass(frozen=True)
class Verified:
    """One host account that touched a commit of the range, and how the host said so."""

    host: GitHost
    user_id: str
    login: str
    source: str
    sha: str

    def describe(self) -> str:
        how = {PUSH_SENDER: "pushed", PR_AUTHOR: "opened the pull request that merged",
               COMMIT_AUTHOR: "authored", COMMIT_COMMITTER: "committed"}.get(self.source, self.source)
        return f"{self.host.value} account {self.login or self.user_id} {how} {self.sha[:12]}"


@dataclass(frozen=True)
class Authorship:
    """Everyone who wrote any commit of (last applied, R]: git's people and the host's accounts."""

    base: str | None
    commits: tuple[CommitPeople, ...]
    verified: tuple[Verified, ...]
    unresolved: int = 0
    """Commits of the range whose accounts were not asked of the host (over `MAX_LOOKUPS`)."""


def record(session: Session, repository_id: int, host: GitHost, shas: Iterable[str], source: str,
           user: HostUser | None) -> int:
    """Remember that the host names `user` as `source` of each commit (once per commit and account)."""
    if user is None or not user.id:
        return 0
    wanted = {sha for sha in shas if sha}
    if not wanted:
        return 0
    known: set[str] = set()
    for chunk in _chunks(sorted(wanted)):
        known.update(session.scalars(select(CommitIdentity.sha).where(
            CommitIdentity.repository_id == repository_id, CommitIdentity.sha.in_(chunk),
            CommitIdentity.source == source, CommitIdentity.host == host, CommitIdentity.user_id == user.id)))
    for sha in sorted(wanted - known):
        session.add(CommitIdentity(repository_id=repository_id, sha=sha, source=source, host=host, user_id=user.id,
                                   login=user.login[:255]))
    return len(wanted - known)


def unresolved(session: Session, repository_id: int, shas: Sequence[str]) -> list[str]:
    """The commits (in the given order) whose author and committer the host was not asked about yet."""
    done: set[str] = set()
    for chunk in _chunks(shas):
        done.update(session.scalars(select(CommitIdentity.sha).where(
            CommitIdentity.repository_id == repository_id, CommitIdentity.sha.in_(chunk),
            CommitIdentity.source.in_(RESOLVED))))
    return [sha for sha in shas if sha not in done]


def look_up(client: GitHostClient, shas: Sequence[str]) -> list[tuple[str, CommitAccounts]]:
    """Ask the host who authored and committed each commit. Raises the host's `HostError`: an
    approval must not pass on identities nobody could check."""
    return [(sha, client.commit_accounts(sha)) for sha in shas]


def store_lookups(session: Session, repository_id: int, host: GitHost,
                  found: Sequence[tuple[str, CommitAccounts]]) -> None:
    """Keep the host's answers (an empty `user_id` when no account claims the e-mail), so each commit
    is asked about once."""
    for sha, accounts in found:
        for source, account in ((COMMIT_AUTHOR, accounts.author), (COMMIT_COMMITTER, accounts.committer)):
            session.add(CommitIdentity(repository_id=repository_id, sha=sha, source=source, host=host,
                                       user_id=account.id if account else "",
                                       login=(account.login if account else "")[:255]))


def verified_for(session: Session, repository_id: int, shas: Sequence[str]) -> tuple[Verified, ...]:
    """Every stored host account that touched one of the commits."""
    found: list[Verified] = []
    for chunk in _chunks(shas):
        rows = session.scalars(select(CommitIdentity).where(
            CommitIdentity.repository_id == repository_id, CommitIdentity.sha.in_(chunk),
            CommitIdentity.user_id != "").order_by(CommitIdentity.id))
        found += [Verified(row.host, row.user_id, row.login, row.source, row.sha) for row in rows]
    return tuple(found)


def _chunks(shas: Sequence[str], size: int = 500) -> list[list[str]]:
    """SQLite caps the variables of one statement; a first sync's range is the whole history."""
    unique = list(dict.fromkeys(shas))
    return [unique[start:start + size] for start in range(0, len(unique), size)]


def wrote_any(principal: Principal, authors: Authorship) -> str | None:
    """How the principal took part in the range (first match), or None."""
    name, email = principal.name.strip().lower(), (principal.email or "").strip().lower()
    for commit in authors.commits:
        roles = [("authored", commit.author), ("committed", commit.committer),
                 *(("co-authored", person) for person in commit.co_authors)]
        for role, person in roles:
            their = person.email.strip().lower()
            spelled = {person.name.strip().lower(), their, their.partition("@")[0]} - {""}
            if name in spelled or (email and email == their):
                return f"{principal.name} {role} commit {commit.sha[:12]} (as {person.name} <{person.email}>)"
    mine = set(principal.host_ids)
    for account in authors.verified:
        if (account.host, account.user_id) in mine:
            return f"{principal.name} is the {account.describe()}"
    return None
