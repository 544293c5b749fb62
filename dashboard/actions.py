"""The dashboard's door onto `reconciler.commands`: what people do from the API and the pages (sync,
roll back, pause, resume, approve, reject, accept or heal drift, poll).

Every rule, audit entry and queued message is the command layer's, shared with the CLI; this module
only maps its typed refusals onto HTTP (404, 403, 409, 422 naming the field) and a poll the broker
did not take onto 503 (`dashboard.handoff`). The lookups below serve the reading routes' 404s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import HTTPException, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.access import Permission, Principal
from dashboard.handoff import queue_or_refuse
from reconciler import commands
from reconciler.commands import EnvironmentName
from reconciler.runtime import Services
from store import ApprovalDecision, ApprovalSource, DriftReport, Environment, Repository, Sync, SyncLifecycle

T = TypeVar("T")
CODES: dict[type[commands.CommandRefused], int] = {
    commands.NotFound: status.HTTP_404_NOT_FOUND,
    commands.Forbidden: status.HTTP_403_FORBIDDEN,
    commands.Conflict: status.HTTP_409_CONFLICT,
    commands.Invalid: 422,
}


class Refusal(HTTPException):
    """An action refused: 4xx with a reason; for bad input, FastAPI's shape naming the field."""

    def __init__(self, code: int, message: str, *, field: str | None = None) -> None:
        detail: str | list[dict[str, object]] = message
        if field is not None:
            detail = [{"loc": ["body", field], "msg": message, "type": "value_error"}]
        super().__init__(code, detail)
        self.message = message
        self.field = field


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


def answered(command: Callable[[], T]) -> T:
    """Run a command; its refusal becomes the HTTP answer of its kind."""
    try:
        return command()
    except commands.CommandRefused as refused:
        code = next((code for kind, code in CODES.items() if isinstance(refused, kind)), 400)
        raise Refusal(code, str(refused), field=refused.field) from None


@dataclass
class Actions:
    services: Services

    def sync(self, principal: Principal, repository: str, environment: str,
             revision: str | None = None) -> commands.SyncRequested:
        """Sync now (the desired revision) or roll back to `revision`, which pauses auto-sync."""
        name = EnvironmentName(environment, repository)
        if revision is None:
            return answered(lambda: commands.request_sync(self.services, principal, name))
        return answered(lambda: commands.rollback(self.services, principal, name, revision))

    def poll(self, principal: Principal, repository: str) -> None:
        """Poll now; 503 (and nothing recorded) when the broker does not take it."""
        answered(lambda: queue_or_refuse(lambda: commands.poll(self.services, principal, repository)))

    def pause(self, principal: Principal, repository: str, environment: str) -> None:
        answered(lambda: commands.pause(self.services, principal, EnvironmentName(environment, repository)))

    def resume(self, principal: Principal, repository: str, environment: str) -> commands.Resumed:
        return answered(lambda: commands.resume(self.services, principal, EnvironmentName(environment, repository)))

    def decide(self, principal: Principal, sync_id: int, decision: ApprovalDecision, comment: str,
               source: ApprovalSource, as_user: str | None = None) -> tuple[commands.Decision, SyncLifecycle]:
        """Approve or reject (as the caller or, an admin only, as `as_user`); the sync's state after it."""
        result = answered(lambda: commands.decide_approval(self.services, principal, sync_id, decision, source,
                                                           comment, as_user))
        with self.services.database.session() as session:
            return result, find_sync(session, sync_id).status

    def accept_drift(self, principal: Principal, report_id: int, comment: str = "") -> None:
        answered(lambda: commands.accept_drift(self.services, principal, report_id, comment))

    def heal_drift(self, principal: Principal, report_id: int) -> commands.SyncRequested:
        return answered(lambda: commands.heal(self.services, principal, report_id))
