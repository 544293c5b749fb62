"""Registered repositories: their git source, immutable checkouts, and the poll that finds new revisions.

A poll costs one `ls-remote` when nothing moved (no fetch, no render). When the branch head moved,
it fetches, records the revision, works out from the changed paths which environments read what
changed, and asks for a sync of exactly those; an environment that reads none of the changed paths
moves to the new revision without being planned again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from reconciler import pollstats, syncs
from reconciler.runtime import Services
from reconciler.sources.git import GitAuth, GitSource, SourceError, url_credentials
from reconciler.sources.paths import affected_between
from repo_schema.issues import InvalidRepo
from repo_schema.loader import LoadedRepo, load_repo
from store import Environment, GitHost, Repository, Revision, SecretBox, SyncTrigger, utcnow
from store.queries import record_audit

log = logging.getLogger(__name__)
POLL_LOCK_SECONDS = 300


@dataclass(frozen=True)
class PollResult:
    """What one poll found: the head, whether it moved, and which environments it asked to sync."""

    repository: str
    head: str | None
    moved: bool
    planned: tuple[str, ...] = ()
    advanced: tuple[str, ...] = ()
    error: str | None = None


def auth_of(box: SecretBox, repository: Repository) -> GitAuth | None:
    if repository.credentials is None:
        return None
    data = json.loads(box.unseal_secret(repository.credentials))
    return GitAuth(token=data.get("token"), username=data.get("username") or "x-access-token",
                   ssh_private_key=data.get("ssh_private_key"), known_hosts=data.get("known_hosts"))


def source_for(services: Services, repository: Repository) -> GitSource:
    return GitSource(repository.url, services.mirrors, branch=repository.branch,
                     auth=auth_of(services.secrets, repository))


def checkout(services: Services, repository: Repository, sha: str) -> Path:
    """The immutable checkout of exactly `sha` (fetching first if this machine's mirror lacks it)."""
    source = source_for(services, repository)
    root = services.checkouts / repository.name
    try:
        return source.checkout(sha, root)
    except SourceError:
        source.fetch()
        return source.checkout(sha, root)


def load_at(services: Services, repository: Repository, sha: str) -> tuple[Path, LoadedRepo | None, str | None]:
    """(checkout, loaded repo or None, the validation error text when it does not load)."""
    root = checkout(services, repository, sha)
    try:
        return root, load_repo(root), None
    except InvalidRepo as invalid:
        return root, None, "\n".join(str(issue) for issue in invalid.issues)


def record_revision(session: Session, repository: Repository, source: GitSource, sha: str) -> Revision:
    found = session.scalars(select(Revision).where(
        Revision.repository_id == repository.id, Revision.ref == repository.branch, Revision.sha == sha)).one_or_none()
    if found is not None:
        return found
    info = source.commit(sha)
    revision = Revision(repository_id=repository.id, ref=repository.branch, sha=sha, author=info.author,
                        message=info.message, committed_at=info.committed_at)
    session.add(revision)
    session.flush()
    return revision


def revision_by_sha(services: Services, session: Session, repository: Repository, sha: str) -> Revision:
    """A revision row for `sha` (which may be any commit, e.g. for a rollback); fetched if unknown."""
    source = source_for(services, repository)
    try:
        return record_revision(session, repository, source, sha)
    except SourceError:
        source.fetch()
        return record_revision(session, repository, source, sha)


def poll(services: Services, repository_id: int, trigger: SyncTrigger = SyncTrigger.POLL) -> PollResult:
    """Check the branch head; on a move, fetch, record, and ask affected environments to sync.

    One poll per repository at a time (a short Redis lock): a webhook, the local watch and the
    schedule may all ask at once, and the second would only repeat the first."""
    key, again = f"tidegate:lock:poll:{repository_id}", f"tidegate:poll:again:{repository_id}"
    if not services.redis.set(key, services.owner, nx=True, ex=POLL_LOCK_SECONDS):
        services.redis.set(again, 1, ex=POLL_LOCK_SECONDS)  # the running poll looks once more when done
        return PollResult(str(repository_id), None, False, error="a poll of this repository is already running")
    try:
        result = _timed_poll(services, repository_id, trigger)
        while services.redis.getdel(again):
            result = _timed_poll(services, repository_id, trigger)
        return result
    finally:
        services.redis.delete(key)


def _timed_poll(services: Services, repository_id: int, trigger: SyncTrigger) -> PollResult:
    started = time.monotonic()
    result = _poll(services, repository_id, trigger)
    if result.error != "no such repository":
        pollstats.record(services.redis, result.repository, time.monotonic() - started)
    return result


def _poll(services: Services, repository_id: int, trigger: SyncTrigger) -> PollResult:
    # One short write transaction stamps the poll before git runs, and git runs outside any
    # transaction: a session that read the row, waited for `ls-remote` and then wrote it failed with
    # "database is locked" whenever another poll committed meanwhile (SQLite WAL), so concurrent polls
    # retried each other with backoff. The Redis poll lock keeps the head and error read here current.
    with services.database.session(write=True) as session:
        repository = session.get(Repository, repository_id)
        if repository is None:
            return PollResult(str(repository_id), None, False, error="no such repository")
        repository.last_polled_at = utcnow()
        source = source_for(services, repository)
        name, previous, failing = repository.name, repository.head_sha, repository.poll_error is not None
        detached = _detached(repository)
    try:
        head = source.remote_head()
    except SourceError as error:
        _record_error(services, repository_id, str(error))
        log.warning("poll %s: %s (last good state kept)", name, error)
        return PollResult(name, None, False, error=str(error))
    if head == previous:
        if failing:  # the last poll's error (an outage, a force-push warning) is over; nothing moved since
            _record_error(services, repository_id, None)
        return PollResult(name, head, False)
    try:
        source.fetch()
    except SourceError as error:
        _record_error(services, repository_id, str(error))
        return PollResult(name, head, False, error=str(error))
    _root, loaded, invalid = load_at(services, detached, head)
    changed = _changed(source, previous, head)
    before = load_at(services, detached, previous)[1] if changed is not None and previous else None
    with services.database.session() as session:
        repository = session.get_one(Repository, repository_id)
        warning = None
        if previous is not None and previous != head and not source.is_ancestor(previous, head):
            warning = f"branch {repository.branch} was force-pushed: {previous[:12]} is not an ancestor of {head[:12]}"
            log.warning("poll %s: %s", repository.name, warning)
            # The poll error says it only until the next poll; the audit log keeps it for whoever asks
            # later what happened to the commits that were applied and are no longer on the branch.
            record_audit(session, actor="tidegate", action="repository.force_pushed", target=repository.name,
                         details={"branch": repository.branch, "previous": previous, "head": head})
        revision = record_revision(session, repository, source, head)
        repository.head_sha = head
        repository.poll_error = warning
        planned, advanced, queued = _dispatch(session, repository, revision, loaded, before, changed, trigger)
    for sync_id in queued:  # only once the rows the task reads are committed
        services.queue.plan(sync_id)
    if invalid:
        log.warning("poll %s: revision %s does not validate:\n%s", name, head[:12], invalid)
    return PollResult(name, head, True, tuple(planned), tuple(advanced))


def _record_error(services: Services, repository_id: int, error: str | None) -> None:
    """Why the repository's last poll failed (its last good head and revisions are kept); None once
    a poll succeeds again."""
    with services.database.session(write=True) as session:
        session.execute(update(Repository).where(Repository.id == repository_id).values(poll_error=error))


def _detached(repository: Repository) -> Repository:
    copy = Repository(name=repository.name, url=repository.url, branch=repository.branch)
    copy.credentials = repository.credentials
    return copy


def _changed(source: GitSource, previous: str | None, head: str) -> list[str] | None:
    if previous is None or previous == head:
        return None
    try:
        return source.changed_paths(previous, head)
    except SourceError:
        return None  # the old head is gone (force-push and gc): treat every path as changed


def _dispatch(session: Session, repository: Repository, revision: Revision, loaded: LoadedRepo | None,
              before: LoadedRepo | None, changed: list[str] | None,
              trigger: SyncTrigger) -> tuple[list[str], list[str], list[int]]:
    """Ask affected environments to sync `revision`; move unaffected in-sync ones to it silently."""
    rows = {env.name: env for env in repository.environments}
    if loaded is not None:
        for name in loaded.order():
            if name not in rows:
                rows[name] = Environment(repository_id=repository.id, name=name)
                session.add(rows[name])
        session.flush()
        names = loaded.order()
        hit = affected_between(before, loaded, changed) | {n for n in names if rows[n].synced_revision_id is None}
        if before is None and changed is not None:
            # the previous head did not load (an invalid revision every environment was asked to
            # sync): those it left wanting it try again, whatever this commit touches
            hit |= {n for n in names if rows[n].desired_revision_id != rows[n].synced_revision_id}
    else:
        names = list(rows)
        hit = set(names)  # an invalid revision: every environment records why it cannot sync
    planned: list[str] = []
    advanced: list[str] = []
    queued: list[int] = []
    for name in names:
        env = rows[name]
        if name not in hit:
            if env.synced_revision_id == env.desired_revision_id and env.synced_revision_id is not None:
                env.desired_revision_id = env.synced_revision_id = revision.id
                advanced.append(name)
            continue
        env.desired_revision_id = revision.id
        automated = loaded.sync_policy(name).automated if loaded is not None else True
        if env.auto_sync_paused or not automated:
            continue
        sync, created = syncs.request(session, env, revision, trigger)
        session.flush()
        if created:
            planned.append(name)
            queued.append(sync.id)
    return planned, advanced, queued


class CredentialsInUrl(ValueError):
    """A repository URL with a user/token/password in it; says how to register it instead."""


@dataclass(frozen=True)
class HostSettings:
    """Where a repository's pull requests live: the Git host, its API, and the secrets (sealed on save)."""

    host: GitHost = GitHost.GENERIC
    api_url: str | None = None
    repository: str | None = None
    token: str | None = None
    webhook_secret: str | None = None

    def __repr__(self) -> str:
        return f"HostSettings(host={self.host.value}, api_url={self.api_url!r}, repository={self.repository!r})"


def register(services: Services, session: Session, *, name: str, url: str, branch: str = "main",
             interval_seconds: int = 120, credentials: dict[str, str] | None = None,
             host: HostSettings | None = None) -> Repository:
    """Add a repository (credentials, host token and webhook secret sealed); the scheduler polls it
    from then on. A URL with a credential in it is refused (`CredentialsInUrl`): it would be stored
    and shown in plain text."""
    problem = url_credentials(url)
    if problem is not None:
        raise CredentialsInUrl(problem)
    repository = Repository(name=name, url=url, branch=branch, poll_interval_seconds=interval_seconds)
    if credentials:
        repository.credentials = services.secrets.seal(json.dumps(credentials))
    if host is not None:
        repository.host, repository.host_api_url, repository.host_repository = host.host, host.api_url, host.repository
        if host.token:
            repository.host_token = services.secrets.seal(host.token)
        if host.webhook_secret:
            repository.webhook_secret = services.secrets.seal(host.webhook_secret)
    session.add(repository)
    session.flush()
    return repository

