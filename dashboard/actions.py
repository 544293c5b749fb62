"""What people do from the API and the pages: sync, roll back, pause, resume, approve, reject, and
accept or heal drift. Both front ends call these, so a rule is checked in one place.

Each action checks the caller's permission on the environment, changes the store through the
reconciler's own functions (`syncs.request`, `approvals.decide`), audits, and only then queues
work, after the transaction committed (a worker must find the rows it is told about).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from fastapi import HTTPException, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.access import Permission, Principal
from dashboard.handoff import queue_or_refuse
from dashboard.policy import ApprovalPolicies, PolicyUnavailable
from dashboard.views import key_of
from reconciler import approvals, syncs
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
    SyncStatus,
    SyncTrigger,
    utcnow,
)
from store.queries import open_drift_reports, record_audit


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
    policies: ApprovalPolicies

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
               source: ApprovalSource) -> tuple[approvals.Decision, SyncLifecycle]:
        """Approve or reject, if the policy at the sync's revision names the caller and they did not write it."""
        with self.services.database.session() as session:
            row = find_sync(session, sync_id)
            require(principal, Permission.APPROVE, key_of(row.environment))
            if row.status is not SyncLifecycle.AWAITING_APPROVAL or row.plan is None or row.revision is None:
                raise Refusal(status.HTTP_409_CONFLICT, f"sync {sync_id} is {row.status.value}, not awaiting approval")
            repository, sha, env_name = row.environment.repository, row.revision.sha, row.environment.name
            author = row.revision.author
        self._check_not_author(principal, author, decision)
        try:
            allowed = self.policies.approvers(repository, sha, env_name)
        except PolicyUnavailable as error:
            raise Refusal(status.HTTP_409_CONFLICT, str(error)) from None
        if allowed and not any(principal.is_subject(subject) for subject in allowed):
            raise Refusal(status.HTTP_403_FORBIDDEN, f"{principal.name} is not among the approvers of "
                          f"{repository.name}/{env_name} ({', '.join(allowed)})")
        try:
            result = approvals.decide(self.services, sync_id, principal.name, decision, source, comment)
        except approvals.ApprovalRefused as refused:
            own = "own change" in str(refused)
            raise Refusal(status.HTTP_403_FORBIDDEN if own else status.HTTP_409_CONFLICT, str(refused)) from None
        with self.services.database.session() as session:
            return result, find_sync(session, sync_id).status

    @staticmethod
    def _check_not_author(principal: Principal, author: str, decision: ApprovalDecision) -> None:
        """Also match the user's email against the commit's: `decide` only compares names."""
        email = author.partition("<")[2].rstrip(">").strip().lower()
        if decision is ApprovalDecision.APPROVE and principal.email and email == principal.email.lower():
            raise Refusal(status.HTTP_403_FORBIDDEN, f"{principal.name} wrote this revision and cannot approve "
                          "their own change")

    def accept_drift(self, principal: Principal, report_id: int) -> None:
        """Accept the live state as it is: the report is resolved without changing anything."""
        with self.services.database.session(write=True) as session:
            report = self._open_report(session, principal, report_id)
            report.status, report.resolution, report.resolved_at = (DriftStatus.RESOLVED, DriftResolution.ACCEPTED,
                                                                    utcnow())
            env = report.environment
            session.flush()
            if env.sync_status is SyncStatus.DRIFTED and not open_drift_reports(session, env.id):
                env.sync_status = SyncStatus.SYNCED
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
