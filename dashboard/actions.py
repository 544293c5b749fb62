"""What people do from the API and the pages: sync, roll back, pause, resume, approve, reject, and
accept or heal drift. Both front ends call these, so a rule is checked in one place.

Each action checks the caller's permission on the environment, changes the store through the
reconciler's own functions (`syncs.request`, `approvals.decide`), audits, and only then queues
work, after the transaction committed (a worker must find the rows it is told about). Approvals
hold no rule here: `reconciler.approvals` decides them for every door alike; this only maps its
refusals onto HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from fastapi import HTTPException, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.access import Permission, Principal
from dashboard.handoff import queue_or_refuse
from dashboard.views import key_of
from reconciler import approvals, syncs
from reconciler.access import AccessRefused, on_behalf_of
from reconciler.runtime import Services, hand_off
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
    SyncLifecycle,
    SyncTrigger,
    utcnow,
)
from store.queries import record_audit


class Refusal(HTTPException):
    """An action refused: 4xx with a reason; for bad input, FastAPI's shape naming the field."""

    def __init__(self, code: int, message: str, *, field: str | None = None) -> None:
        detail: str | list[dict[str, object]] = message
        if field is not None:
            detail = [{"loc": ["body", field], "msg": message, "type": "value_error"}]
        super().__init__(code, detail)
        self.message = message


def require(principal: Principal, permission: Permission, scope: str = "*") -> None:
    """403 unless `principal` holds `permission` on `scope`."""
    if not principal.can(permission, scope):
        where = "everywhere" if scope == "*" else f"on {scope}"
        raise Refusal(status.HTTP_403_FORBIDDEN, f"{principal.name} lacks the {permission.value} permission {where}")


def find_environment(session: Session, repository: str, name: str) -> Environment:
    query = select(Environment).join(Repository).where(Repository.name == repository, Environment.name == name)
    env = session.scalars(query).one_or_none()
    if env is None:
        raise Refusal(status.HTTP_404_NOT_FOUND, f"no environment {repository}/{name}")
    return env


def find_sync(session: Session, sync_id: int) -> Sync:
    row = session.get(Sync, sync_id)
    if row is None:
        raise Refusal(status.HTTP_404_NOT_FOUND, f"no sync {sync_id}")
    return row


def find_report(session: Session, report_id: int) -> DriftReport:
    row = session.get(DriftReport, report_id)
    if row is None:
        raise Refusal(status.HTTP_404_NOT_FOUND, f"no drift report {report_id}")
    return row


def _known_revision(session: Session, env: Environment, text: str) -> Revision:
    """A revision of the environment's repository the store has seen, by full SHA or unique prefix."""
    prefix = text.lower()
    query = select(Revision).where(Revision.repository_id == env.repository_id, Revision.sha.startswith(prefix))
    rows = {row.sha: row for row in session.scalars(query.order_by(Revision.committed_at.desc()))}
    if not rows:
        raise Refusal(422, f"{text!r} is no known revision of "
                      f"{env.repository.name}", field="revision")
    if len(rows) > 1:
        raise Refusal(422, f"{text!r} matches {len(rows)} revisions: give more "
                      "characters", field="revision")
    return next(iter(rows.values()))


@dataclass
class Actions:
    services: Services

    def sync(self, principal: Principal, repository: str, environment: str, revision: str | None = None) -> int:
        """Sync now (the desired revision) or roll back to `revision`, which pauses auto-sync."""
        with self.services.database.session(write=True) as session:
            env = find_environment(session, repository, environment)
            require(principal, Permission.OPERATE, key_of(env))
            if revision is None:
                target = env.desired_revision or env.synced_revision
                if target is None:
                    raise Refusal(status.HTTP_409_CONFLICT, f"{key_of(env)} has no known revision yet "
                                  "(has its repository been polled?)")
            else:
                target = _known_revision(session, env, revision)
                env.auto_sync_paused = True
            row, created = syncs.request(session, env, target, SyncTrigger.MANUAL)
            record_audit(session, actor=principal.name, action="sync.rollback" if revision else "sync.requested",
                         target=key_of(env), details={"revision": target.sha, "sync_id": row.id,
                                                      "paused": env.auto_sync_paused})
            sync_id, queue = row.id, created
        if queue:
            hand_off(partial(self.services.queue.plan, sync_id), f"plan of sync {sync_id}")
        return sync_id

    def poll(self, principal: Principal, repository: str) -> None:
        """Poll a repository now (operators of any of its environments may: it only looks for new commits)."""
        with self.services.database.session(write=True) as session:
            repo = session.scalars(select(Repository).where(Repository.name == repository)).one_or_none()
            if repo is None:
                raise Refusal(status.HTTP_404_NOT_FOUND, f"no repository {repository!r}")
            if not any(principal.can(Permission.OPERATE, key_of(env)) for env in repo.environments):
                require(principal, Permission.OPERATE)
            record_audit(session, actor=principal.name, action="repository.poll", target=repo.name)
            queue_or_refuse(partial(self.services.queue.poll, repo.id))  # nothing is recorded if it fails

    def pause(self, principal: Principal, repository: str, environment: str, paused: bool) -> None:
        with self.services.database.session(write=True) as session:
            env = find_environment(session, repository, environment)
            require(principal, Permission.OPERATE, key_of(env))
            env.auto_sync_paused = paused
            record_audit(session, actor=principal.name, action="autosync.paused" if paused else "autosync.resumed",
                         target=key_of(env))
            repository_id = env.repository_id
        if not paused:  # a nicety: the scheduled polls resume it anyway
            hand_off(partial(self.services.queue.poll, repository_id), f"poll of repository {repository_id}")

    def decide(self, principal: Principal, sync_id: int, decision: ApprovalDecision, comment: str,
               source: ApprovalSource, as_user: str | None = None) -> tuple[approvals.Decision, SyncLifecycle]:
        """Approve or reject through `reconciler.approvals.decide`, as the caller or (an admin only) as `as_user`."""
        with self.services.database.session() as session:
            find_sync(session, sync_id)
            try:
                actor = on_behalf_of(session, principal, as_user)
            except AccessRefused as refused:
                raise Refusal(status.HTTP_403_FORBIDDEN, str(refused)) from None
        try:
            result = approvals.decide(self.services, sync_id, actor, decision, source, comment)
        except approvals.ApprovalRefused as refused:
            code = status.HTTP_403_FORBIDDEN if refused.forbidden else status.HTTP_409_CONFLICT
            raise Refusal(code, str(refused)) from None
        with self.services.database.session() as session:
            return result, find_sync(session, sync_id).status

    def accept_drift(self, principal: Principal, report_id: int) -> None:
        """Accept the live state as it is: the report is resolved without changing anything."""
        with self.services.database.session(write=True) as session:
            report = self._open_report(session, principal, report_id)
            report.status, report.resolution, report.resolved_at = (DriftStatus.RESOLVED, DriftResolution.ACCEPTED,
                                                                    utcnow())
            env = report.environment
            record_audit(session, actor=principal.name, action="drift.accepted", target=key_of(env),
                         details={"report_id": report.id, "items": len(report.items)})

    def heal_drift(self, principal: Principal, report_id: int) -> int:
        """Ask for a sync of the drifted revision; the next clean observation closes the report as healed."""
        with self.services.database.session(write=True) as session:
            report = self._open_report(session, principal, report_id)
            env = report.environment
            row, created = syncs.request(session, env, report.revision, SyncTrigger.DRIFT)
            report.resolution = DriftResolution.HEALED
            record_audit(session, actor=principal.name, action="drift.heal", target=key_of(env),
                         details={"report_id": report.id, "sync_id": row.id})
            sync_id, queue = row.id, created
        if queue:
            hand_off(partial(self.services.queue.plan, sync_id), f"plan of sync {sync_id}")
        return sync_id

    @staticmethod
    def _open_report(session: Session, principal: Principal, report_id: int) -> DriftReport:
        report = find_report(session, report_id)
        require(principal, Permission.OPERATE, key_of(report.environment))
        if report.status is not DriftStatus.OPEN:
            raise Refusal(status.HTTP_409_CONFLICT, f"drift report {report_id} is already resolved "
                          f"({report.resolution.value if report.resolution else 'resolved'})")
        return report
