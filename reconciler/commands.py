"""What people ask of the reconciler, whichever door they come through: one function per command.

The dashboard (API and web forms, `dashboard.actions`), the in-process CLI (`tidegate.client.LocalClient`)
and therefore the CLI over HTTP (whose server side is the API) all call these, so a rollback, a
resume or a sync-now leaves the same audit entry and queues the same work from everywhere. Each
command, in this order: finds what it acts on, checks the principal's permission, validates its
input, changes the store and records the audit entry in one write transaction, and queues work.

Queueing follows the outbox rule of `reconciler.runtime.hand_off`: work whose row outlives a broker
outage (a pending sync) is queued after the commit, and a failed send is only logged (the sweeper
delivers it); a poll leaves no such row, so it is sent inside the transaction and `QueueUnavailable`
rolls the audit entry back (the dashboard answers 503). Refusals are typed (`CommandRefused` and its
kinds), so each door maps them to its own answer: an HTTP status, a CLI error.

Approvals hold no rule here: `decide_approval` is a door onto `reconciler.approvals.decide`, which
decides for every door, PR reviews included.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from reconciler import approvals, repositories, syncs
from reconciler.access import AccessRefused, Permission, Principal, on_behalf_of
from reconciler.runtime import Services, hand_off
from reconciler.sources.git import SourceError
from store import (
    ApprovalDecision,
    ApprovalSource,
    DriftReport,
    DriftResolution,
    DriftStatus,
    Environment,
    Repository,
    Revision,
    Sync,
    SyncTrigger,
    utcnow,
)
from store.queries import record_audit

log = logging.getLogger(__name__)
SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
MAX_COMMENT = 2000
ROLLBACK_ACTION = "sync.rollback"
"""The audit action of a rollback: the one record that tells it from a sync-now (both are `manual`)."""


# --- refusals ---------------------------------------------------------------------------------------------

class CommandRefused(Exception):
    """A command that did nothing; the message says why, `field` names the input at fault if any."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(CommandRefused):
    """What the command acts on does not exist."""


class Forbidden(CommandRefused):
    """The principal may not do this (there)."""


class Conflict(CommandRefused):
    """The state does not allow it now (a resolved report, a sync no longer awaiting approval)."""


class Invalid(CommandRefused):
    """Bad input; `field` names it."""


# --- what commands answer ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnvironmentName:
    """How a door names an environment: `name` alone when it is unique, else with its repository."""

    name: str
    repository: str | None = None

    @classmethod
    def parse(cls, text: str) -> EnvironmentName:
        """`ENV` or `REPOSITORY/ENV`, as the CLI takes it."""
        repository, _, name = text.rpartition("/")
        return cls(name, repository or None)

    def __str__(self) -> str:
        return f"{self.repository}/{self.name}" if self.repository else self.name


@dataclass(frozen=True)
class SyncRequested:
    sync_id: int
    revision: str
    created: bool
    """False: an active sync of that revision already existed (requests are idempotent)."""
    queued: bool
    """False when its plan could not be queued now (broker down): the sweeper queues it later."""


@dataclass(frozen=True)
class Resumed:
    sync: SyncRequested | None
    """The sync resuming started because the environment was behind its desired revision, if any."""


# --- commands ---------------------------------------------------------------------------------------------

def request_sync(services: Services, principal: Principal, name: EnvironmentName) -> SyncRequested:
    """Sync now: the desired revision (the synced one if nothing else is desired yet)."""
    with services.database.session(write=True) as session:
        env = _operable(session, principal, name)
        target = env.desired_revision or env.synced_revision
        if target is None:
            raise Conflict(f"{key_of(env)} has no known revision yet (has its repository been polled?)")
        requested = _request(session, principal, env, target, SyncTrigger.MANUAL, "sync.requested",
                             {"paused": env.auto_sync_paused})
    return _queued(services, requested)


def rollback(services: Services, principal: Principal, name: EnvironmentName, revision: str) -> SyncRequested:
    """Sync `revision` (a commit of the branch, by full SHA or unique prefix) and pause auto-sync, so
    the next poll does not undo the rollback; `resume` ends it."""
    if not SHA.match(revision):
        raise Invalid(f"{revision!r} is not a commit SHA (7 to 64 hexadecimal digits)", field="revision")
    with services.database.session() as session:
        env = _operable(session, principal, name)
        env_id, repository = env.id, env.repository
        sha = _known_sha(session, repository, revision.lower())
    # A recorded revision is checked against the branch too: a force-push can remove a commit the
    # store recorded (even one that was applied), and a rollback must not apply it again.
    sha = _sha_on_branch(services, repository, sha or revision.lower())
    with services.database.session(write=True) as session:
        env = session.get_one(Environment, env_id)
        target = repositories.revision_by_sha(services, session, env.repository, sha)
        env.auto_sync_paused = True
        requested = _request(session, principal, env, target, SyncTrigger.MANUAL, ROLLBACK_ACTION,
                             {"paused": True})
    return _queued(services, requested)


def pause(services: Services, principal: Principal, name: EnvironmentName) -> None:
    """Stop syncing new revisions automatically (polls still record them as desired)."""
    with services.database.session(write=True) as session:
        env = _operable(session, principal, name)
        env.auto_sync_paused = True
        record_audit(session, actor=principal.audit_name, action="autosync.paused", target=key_of(env))


def resume(services: Services, principal: Principal, name: EnvironmentName) -> Resumed:
    """Sync automatically again, as `argocd app set --sync-policy automated` would: an environment
    behind its desired revision (the branch head the last poll saw, e.g. after a rollback) gets a
    sync of it at once — unless its repo says `automated: false` — and the repository is polled for
    anything newer."""
    with services.database.session() as session:
        env = _operable(session, principal, name)
        env_id, env_name, repository = env.id, env.name, env.repository
        behind = env.desired_revision if env.desired_revision_id != env.synced_revision_id else None
    automated = behind is not None and _automated(services, repository, behind.sha, env_name)
    with services.database.session(write=True) as session:
        env = session.get_one(Environment, env_id)
        env.auto_sync_paused = False
        requested = None
        if automated and env.desired_revision is not None and env.desired_revision_id != env.synced_revision_id:
            requested = _request(session, principal, env, env.desired_revision, SyncTrigger.POLL,
                                 "autosync.resumed", {})
        else:
            record_audit(session, actor=principal.audit_name, action="autosync.resumed", target=key_of(env))
    started = _queued(services, requested) if requested is not None else None
    hand_off(partial(services.queue.poll, repository.id), f"poll of repository {repository.name}")
    return Resumed(started)


def accept_drift(services: Services, principal: Principal, report_id: int, comment: str = "") -> None:
    """Keep the live state as it is: the report is resolved without changing anything, and the same
    live values at this revision are not reported again. The comment (why) goes into the audit entry,
    the one record of who accepted the drift."""
    if len(comment) > MAX_COMMENT:
        raise Invalid(f"at most {MAX_COMMENT} characters", field="comment")
    with services.database.session(write=True) as session:
        report = _open_report(session, principal, report_id)
        report.status, report.resolution, report.resolved_at = (DriftStatus.RESOLVED, DriftResolution.ACCEPTED,
                                                                utcnow())
        record_audit(session, actor=principal.audit_name, action="drift.accepted", target=key_of(report.environment),
                     details={"report_id": report.id, "items": len(report.items), **({"comment": comment}
                                                                                     if comment else {})})


def heal(services: Services, principal: Principal, report_id: int) -> SyncRequested:
    """Sync the drifted revision again (trigger `drift`: Git takes back what others changed); the
    next clean observation closes the report as healed."""
    with services.database.session(write=True) as session:
        report = _open_report(session, principal, report_id)
        report.resolution = DriftResolution.HEALED
        requested = _request(session, principal, report.environment, report.revision, SyncTrigger.DRIFT,
                             "drift.heal", {"report_id": report.id})
    return _queued(services, requested)


Decision = approvals.Decision
"""What a decision did (the front doors read it from here, never from `reconciler.approvals`)."""


def decide_approval(services: Services, principal: Principal, sync_id: int, decision: ApprovalDecision,
                    source: ApprovalSource, comment: str = "", as_user: str | None = None) -> Decision:
    """Approve or reject a sync's plan as `principal` or — an admin only — as `as_user`, through the
    one decision of `reconciler.approvals` (which audits it and queues the apply)."""
    if len(comment) > MAX_COMMENT:
        raise Invalid(f"at most {MAX_COMMENT} characters", field="comment")
    with services.database.session() as session:
        if session.get(Sync, sync_id) is None:
            raise NotFound(f"no sync {sync_id}")
        try:
            actor = on_behalf_of(session, principal, as_user)
        except AccessRefused as refused:
            raise Forbidden(str(refused)) from None
    try:
        return approvals.decide(services, sync_id, actor, decision, source, comment)
    except approvals.ApprovalRefused as refused:
        raise (Forbidden if refused.forbidden else Conflict)(str(refused)) from None


def poll(services: Services, principal: Principal, repository: str) -> None:
    """Look for new commits now. Operators of any of the repository's environments may (it only
    looks). Sent inside the transaction: `QueueUnavailable` leaves no audit entry behind."""
    with services.database.session(write=True) as session:
        repo = session.scalars(select(Repository).where(Repository.name == repository)).one_or_none()
        if repo is None:
            raise NotFound(f"no repository {repository!r}")
        if not any(principal.can(Permission.OPERATE, key_of(env)) for env in repo.environments):
            _require(principal, Permission.OPERATE)
        record_audit(session, actor=principal.audit_name, action="repository.poll", target=repo.name)
        services.queue.poll(repo.id)


# --- finding and checking ---------------------------------------------------------------------------------

def key_of(env: Environment) -> str:
    """`repository/environment`: role binding scopes and audit targets name environments so."""
    return f"{env.repository.name}/{env.name}"


def find_environment(session: Session, name: EnvironmentName) -> Environment:
    query = select(Environment).join(Repository).where(Environment.name == name.name)
    if name.repository is not None:
        query = query.where(Repository.name == name.repository)
    found = session.scalars(query).all()
    if not found:
        raise NotFound(f"unknown environment {str(name)!r}")
    if len(found) > 1:
        raise Invalid(f"{name.name!r} is ambiguous: name it as REPOSITORY/{name.name}", field="environment")
    return found[0]


def _require(principal: Principal, permission: Permission, scope: str = "*") -> None:
    if not principal.can(permission, scope):
        where = "everywhere" if scope == "*" else f"on {scope}"
        raise Forbidden(f"{principal.name} lacks the {permission.value} permission {where}")


def _operable(session: Session, principal: Principal, name: EnvironmentName) -> Environment:
    env = find_environment(session, name)
    _require(principal, Permission.OPERATE, key_of(env))
    return env


def _open_report(session: Session, principal: Principal, report_id: int) -> DriftReport:
    report = session.get(DriftReport, report_id)
    if report is None:
        raise NotFound(f"no drift report {report_id}")
    _require(principal, Permission.OPERATE, key_of(report.environment))
    if report.status is not DriftStatus.OPEN:
        raise Conflict(f"drift report {report_id} is already resolved "
                       f"({report.resolution.value if report.resolution else 'resolved'})")
    return report


@dataclass(frozen=True)
class _Requested:
    sync_id: int
    revision: str
    created: bool


def _request(session: Session, principal: Principal, env: Environment, target: Revision, trigger: SyncTrigger,
             action: str, details: dict[str, object]) -> _Requested:
    """Request the sync of `target` and audit `action` with it (in the caller's transaction)."""
    row, created = syncs.request(session, env, target, trigger)
    record_audit(session, actor=principal.audit_name, action=action, target=key_of(env),
                 details={**details, "revision": target.sha, "sync_id": row.id})
    return _Requested(row.id, target.sha, created)


def _queued(services: Services, requested: _Requested) -> SyncRequested:
    """Once committed: queue the plan of a new sync (the worker must find its row)."""
    queued = not requested.created or hand_off(partial(services.queue.plan, requested.sync_id),
                                               f"plan of sync {requested.sync_id}")
    return SyncRequested(requested.sync_id, requested.revision, requested.created, queued)


# --- revisions --------------------------------------------------------------------------------------------

def _known_sha(session: Session, repository: Repository, prefix: str) -> str | None:
    """The full SHA of the one revision the store has seen starting with `prefix` (None: none)."""
    query = select(Revision.sha).where(Revision.repository_id == repository.id, Revision.sha.startswith(prefix))
    found = set(session.scalars(query))
    if len(found) > 1:
        raise Invalid(f"{prefix!r} matches {len(found)} revisions: give more characters", field="revision")
    return found.pop() if found else None


def _sha_on_branch(services: Services, repository: Repository, prefix: str) -> str:
    """A commit the store has not recorded (polls record only heads) but the branch contains: from the
    mirror, fetched if needed. Only the branch's history: the mirror also holds pull request refs,
    whose commits nobody merged, and a rollback must not apply one of them."""
    unknown = Invalid(f"{prefix!r} is no known revision of {repository.name}", field="revision")
    source = repositories.source_for(services, repository)
    try:
        if not source.has_commit(prefix):
            source.fetch()
        sha = source.resolve(prefix)
        on_branch = repository.head_sha is not None and source.is_ancestor(sha, repository.head_sha)
    except SourceError as error:
        log.info("rollback of %s to %s: %s", repository.name, prefix, error)
        raise unknown from None
    if not on_branch:
        raise Invalid(f"{prefix!r} is not a commit of {repository.name}'s branch {repository.branch}",
                      field="revision")
    return sha


def _automated(services: Services, repository: Repository, sha: str, environment: str) -> bool:
    """Whether the repo at `sha` lets the environment sync by itself (`spec.sync.automated`). A revision
    that does not validate counts as automated, as in a poll: its sync records why it cannot run. If
    git cannot tell, too: the sync's own planning reports git's problem."""
    try:
        _root, loaded, _invalid = repositories.load_at(services, repository, sha)
    except SourceError as error:
        log.warning("resume of %s/%s: cannot read its sync policy at %s: %s", repository.name, environment,
                    sha[:12], error)
        return True
    if loaded is None:
        return True
    return environment in loaded.environments and loaded.sync_policy(environment).automated
