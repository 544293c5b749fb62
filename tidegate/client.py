"""The one client interface the CLI talks to, and its in-process implementation.

`LocalClient` works against the data directory (the store) and the broker (Celery over Redis);
an HTTP implementation against `tidegate serve` answers the same methods. Everything returned is a
plain dataclass with secrets already left out.
"""

from __future__ import annotations

import functools
import getpass
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy import select

from reconciler import approvals, commands, history, observations, sealing
from reconciler.access import AccessRefused, Principal, local_principal
from reconciler.commands import EnvironmentName
from reconciler.diffs import DiffFailed, EnvironmentDiff, diff_environment
from reconciler.runtime import QueueUnavailable, Services
from reconciler.sealing import SealReport
from reconciler.status import status_of
from store import (
    ApprovalDecision,
    ApprovalSource,
    DriftReport,
    Environment,
    Repository,
    Stage,
    StoreBusy,
    Sync,
)
from store.queries import DriftDecision, drift_decisions, drift_reports_of, open_drift_reports, sync_history


class ClientError(ValueError):
    """A request the client refuses (unknown environment, wrong state); the message says why."""


@dataclass(frozen=True)
class EnvironmentView:
    repository: str
    name: str
    revision: str | None
    sync_status: str
    health: str
    paused: bool
    open_drift: int
    last_sync: int | None
    last_sync_status: str | None
    message: str = ""
    last_sync_revision: str | None = None
    """The commit the last sync is of (its SHA)."""
    observed_at: str | None = None
    """When the live world was last read (ISO 8601, UTC); None: never."""
    observation: str = ""
    """Why health is Unknown (stale, not looked at since start), or what the last look could not see."""


@dataclass(frozen=True)
class StageView:
    stage: str
    status: str
    summary: dict[str, Any]
    seconds: float | None
    log: str = ""


@dataclass(frozen=True)
class SyncView:
    id: int
    environment: str
    revision: str | None
    trigger: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    fingerprint: str | None
    plan: dict[str, Any] = field(default_factory=dict)
    stages: list[StageView] = field(default_factory=list)
    commit_subject: str = ""
    """The first line of the synced commit's message."""
    approvers: tuple[str, ...] = ()
    """Who approved its plan (distinct, first approval first); empty when nobody did."""
    approved_at: datetime | None = None
    """When the last approver approved."""
    rollback: bool = False
    """Asked for as a rollback (`sync --revision`, which paused auto-sync); its trigger is still `manual`."""


@dataclass(frozen=True)
class DriftView:
    id: int
    revision: str
    status: str
    """`open` or `resolved`, as the store keeps it (a report being healed is still open)."""
    created_at: datetime
    items: list[dict[str, Any]]
    """`stage`, `address`, `field`, `desired`, `live` per item, in stage order (as the API sorts them)."""
    environment: str = ""
    resolution: str | None = None
    """How it was (or is being) closed: `accepted`, `healed` or `resynced`."""
    resolved_at: datetime | None = None
    accepted_by: str | None = None
    accepted_comment: str = ""
    heal_sync_id: int | None = None


@dataclass(frozen=True)
class LogChunk:
    """What one stage's log gained: whole lines, in order (a stage's log only grows)."""

    stage: str
    text: str


@dataclass(frozen=True)
class LogEnd:
    """The last event of a followed log: the sync's status when the following stopped."""

    status: str


LogEvent = LogChunk | LogEnd
FINISHED = ("succeeded", "failed", "superseded")
"""Sync lifecycle words after which its logs grow no more."""


class Client(Protocol):
    def status(self) -> list[EnvironmentView]: ...
    def workers(self) -> list[SealReport]: ...
    def sync(self, environment: str, revision: str | None = None) -> int: ...
    def resume(self, environment: str) -> int | None: ...
    def history(self, environment: str, limit: int = 20) -> list[SyncView]: ...
    def show_sync(self, sync_id: int) -> SyncView: ...
    def drift(self, environment: str, include_resolved: bool = False) -> list[DriftView]: ...
    def approve(self, sync_id: int, comment: str = "", as_user: str | None = None) -> approvals.Decision: ...
    def reject(self, sync_id: int, comment: str = "", as_user: str | None = None) -> approvals.Decision: ...
    def poll(self, repository: str | None = None) -> list[str]: ...
    def accept_drift(self, report_id: int, comment: str = "") -> None: ...
    def heal_drift(self, report_id: int) -> int: ...
    def follow_logs(self, sync_id: int, follow: bool = True) -> Iterator[LogEvent]: ...
    def diff(self, environment: str) -> EnvironmentDiff: ...


P = ParamSpec("P")
T = TypeVar("T")
BUSY_ATTEMPTS = 40


def retried_when_busy(attempts: int = BUSY_ATTEMPTS, pause: float = 0.25) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Make a write again when SQLite gave the write lock to a worker (`StoreBusy`): the lost
    transaction kept nothing, so repeating it is safe; a person at the CLI should not see the race.
    Waits up to `pause` seconds (jittered) between attempts."""

    def decorate(method: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(method)
        def again(*args: P.args, **kwargs: P.kwargs) -> T:
            for _ in range(attempts - 1):
                try:
                    return method(*args, **kwargs)
                except StoreBusy:
                    time.sleep(random.uniform(pause / 5, pause))
            return method(*args, **kwargs)

        return again

    return decorate


def os_login() -> str:
    """Who runs the CLI, as the operating system names them ("" when it cannot say)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


class LocalClient:
    """The client over this machine's store and broker.

    Whoever can run it holds the data directory (and its keys), so it is the tool of single-user
    installs and scripts: with no users configured it acts for the person at the terminal (and
    `--as` names them, audited `local LOGIN as NAME`); once users exist it acts as the user named
    like `login` (the OS login by default), and `--as` needs that user to be an admin. Shared
    installations use the HTTP client, whose identity is its API token."""

    def __init__(self, services: Services, login: str | None = None) -> None:
        self.services = services
        self.login = login if login is not None else os_login()

    # -- reading -----------------------------------------------------------------------------

    def status(self) -> list[EnvironmentView]:
        with self.services.database.session() as session:
            query = select(Environment).join(Repository).order_by(Repository.name, Environment.id)
            return [self._environment(session, env) for env in session.scalars(query)]

    def workers(self) -> list[SealReport]:
        """Each running worker's seal status (a worker that cannot seal refuses repository code)."""
        return sealing.reports(self.services.redis)

    def history(self, environment: str, limit: int = 20) -> list[SyncView]:
        with self.services.database.session() as session:
            env = self._find(session, environment)
            rollbacks = history.rollback_ids(session, env)
            return [_sync_view(session, sync, rollbacks, detail=False)
                    for sync in sync_history(session, env.id, limit)]

    def show_sync(self, sync_id: int) -> SyncView:
        with self.services.database.session() as session:
            sync = session.get(Sync, sync_id)
            if sync is None:
                raise ClientError(f"no sync {sync_id}")
            return _sync_view(session, sync, history.rollback_ids(session, sync.environment), detail=True)

    def drift(self, environment: str, include_resolved: bool = False) -> list[DriftView]:
        """An environment's open drift reports (with `include_resolved`, the resolved ones too), newest
        first like the API lists them."""
        with self.services.database.session() as session:
            env = self._find(session, environment)
            reports = drift_reports_of(session, env.id, include_resolved=include_resolved)
            decisions = drift_decisions(session, reports)
            return [_drift_view(report, decisions.get(report.id, DriftDecision())) for report in reports]

    def follow_logs(self, sync_id: int, follow: bool = True, interval: float = 0.5) -> Iterator[LogEvent]:
        """What each stage's log gained since the last look, every `interval` seconds (the pace at
        which a running stage's lines reach the store), until the sync has finished; without
        `follow`, what there is now. Ends with the sync's status."""
        sent: dict[str, int] = {}
        while True:
            status, logs = self._logs(sync_id)
            for stage, text in logs.items():
                if len(text) > sent.get(stage, 0):
                    yield LogChunk(stage, text[sent.get(stage, 0):])
                    sent[stage] = len(text)
            if status in FINISHED or not follow:
                yield LogEnd(status)
                return
            time.sleep(interval)

    def _logs(self, sync_id: int) -> tuple[str, dict[str, str]]:
        with self.services.database.session() as session:
            sync = session.get(Sync, sync_id)
            if sync is None:
                raise ClientError(f"no sync {sync_id}")
            return sync.status.value, {r.stage.value: r.log or "" for r in sorted(sync.stage_results,
                                                                                  key=lambda r: r.id)}

    def diff(self, environment: str) -> EnvironmentDiff:
        """What a sync of the environment's desired revision would change now (planned read-only
        here, with this machine's stage settings; nothing is stored)."""
        try:
            return diff_environment(self.services, EnvironmentName.parse(environment))
        except (DiffFailed, commands.CommandRefused) as refused:
            raise ClientError(str(refused)) from None

    # -- acting ------------------------------------------------------------------------------

    @retried_when_busy()
    def sync(self, environment: str, revision: str | None = None) -> int:
        """Sync now: the desired revision, or (a rollback) `revision`, which pauses auto-sync."""
        principal, name = self._principal(), EnvironmentName.parse(environment)
        if revision is None:
            return _answered(lambda: commands.request_sync(self.services, principal, name)).sync_id
        return _answered(lambda: commands.rollback(self.services, principal, name, revision)).sync_id

    @retried_when_busy()
    def resume(self, environment: str) -> int | None:
        """Resume auto-sync; the id of the sync this started when the environment was behind."""
        principal, name = self._principal(), EnvironmentName.parse(environment)
        started = _answered(lambda: commands.resume(self.services, principal, name)).sync
        return started.sync_id if started else None

    @retried_when_busy()
    def approve(self, sync_id: int, comment: str = "", as_user: str | None = None) -> approvals.Decision:
        return self._decide(sync_id, ApprovalDecision.APPROVE, comment, as_user)

    @retried_when_busy()
    def reject(self, sync_id: int, comment: str = "", as_user: str | None = None) -> approvals.Decision:
        return self._decide(sync_id, ApprovalDecision.REJECT, comment, as_user)

    @retried_when_busy()
    def poll(self, repository: str | None = None) -> list[str]:
        """Poll one repository (or every one) now; refused while the broker is down."""
        principal = self._principal()
        with self.services.database.session() as session:
            names = [r.name for r in session.scalars(select(Repository).order_by(Repository.name))
                     if repository is None or r.name == repository]
        for name in names:
            try:
                _answered(partial(commands.poll, self.services, principal, name))
            except QueueUnavailable as error:
                raise ClientError(f"the work queue is unavailable, so nothing was recorded; try again ({error})"
                                  ) from None
        return names

    @retried_when_busy()
    def accept_drift(self, report_id: int, comment: str = "") -> None:
        """Keep the live state (the dashboard's Accept), as the person at the terminal."""
        principal = self._principal()
        _answered(partial(commands.accept_drift, self.services, principal, report_id, comment))

    @retried_when_busy()
    def heal_drift(self, report_id: int) -> int:
        """Sync the drifted revision again (the dashboard's Heal); the id of the sync that heals."""
        principal = self._principal()
        return _answered(partial(commands.heal, self.services, principal, report_id)).sync_id

    # -- internals ---------------------------------------------------------------------------

    def _principal(self, as_user: str | None = None) -> Principal:
        """Who the CLI acts as: `local_principal` (the person at the terminal, who may name themself
        with `--as` while no users exist; else the user named like their login, `--as` for admins)."""
        with self.services.database.session() as session:
            try:
                return local_principal(session, self.login, as_user)
            except AccessRefused as refused:
                raise ClientError(str(refused)) from None

    def _decide(self, sync_id: int, decision: ApprovalDecision, comment: str,
                as_user: str | None) -> approvals.Decision:
        """The command layer's door onto `reconciler.approvals.decide`, as the principal `--as` names
        (`local_principal` has already applied it, single-user mode included)."""
        principal = self._principal(as_user)
        return _answered(partial(commands.decide_approval, self.services, principal, sync_id, decision,
                                 ApprovalSource.CLI, comment))

    def _find(self, session: Any, name: str) -> Environment:
        return _answered(partial(commands.find_environment, session, EnvironmentName.parse(name)))

    def _environment(self, session: Any, env: Environment) -> EnvironmentView:
        last = sync_history(session, env.id, limit=1)
        message = ""
        if last and last[0].error:
            message = last[0].error.splitlines()[0][:200]
        seen = observations.observed(env)
        return EnvironmentView(
            env.repository.name, env.name, env.synced_revision.sha if env.synced_revision else None,
            status_of(session, env).value, seen.health.value, env.auto_sync_paused,
            len(open_drift_reports(session, env.id)),
            last[0].id if last else None, last[0].status.value if last else None, message,
            last[0].revision.sha if last and last[0].revision else None,
            seen.observed_at.isoformat() if seen.observed_at else None, seen.reason)


def _answered(command: Callable[[], T]) -> T:
    """Run a command; its refusal becomes a `ClientError` with the same message."""
    try:
        return command()
    except commands.CommandRefused as refused:
        raise ClientError(str(refused)) from None


def _sync_view(session: Any, sync: Sync, rollbacks: set[int], *, detail: bool) -> SyncView:
    """A sync as the CLI shows it; `rollbacks` are the ids of its environment's rollback syncs. The
    history (not `detail`) leaves out the stages and the plan, as the API's history does."""
    results = sorted(sync.stage_results, key=lambda r: r.id) if detail else []
    stages = [StageView(r.stage.value, r.status.value, stage_summary(r.summary),
                        (r.finished_at - r.started_at).total_seconds() if r.finished_at and r.started_at else None,
                        r.log) for r in results]
    approved = history.approved(session, sync)
    plan = {stage: plan_stage(raw) for stage, raw in sync.plan.stages.items()} if sync.plan and detail else {}
    return SyncView(sync.id, commands.key_of(sync.environment), sync.revision.sha if sync.revision else None,
                    sync.trigger.value, sync.status.value, sync.created_at, sync.finished_at, sync.error,
                    sync.plan.fingerprint if sync.plan else None, plan, stages,
                    history.commit_subject(sync), approved.by, approved.at, sync.id in rollbacks)


def stage_summary(raw: Any) -> dict[str, Any]:
    """A stage result's summary as both clients give it: its plan's `+N ~M -K`, the apply's counts
    per outcome, why it was skipped or failed when it was, and while it applies how far it is
    (`progress`: done, total, unit)."""
    data = raw if isinstance(raw, dict) else {}
    counts = data.get("counts")
    counts = counts if isinstance(counts, dict) else {}
    summary: dict[str, Any] = {"plan": str(data.get("plan") or ""),
                               "counts": {str(k): v for k, v in counts.items() if isinstance(v, int)}}
    for key in ("skipped", "error"):
        if isinstance(data.get(key), str) and data[key]:
            summary[key] = data[key]
    progress = data.get("progress")
    if isinstance(progress, dict) and {"done", "total", "unit"} <= set(progress):
        summary["progress"] = {key: progress[key] for key in ("done", "total", "unit")}
    return summary


def plan_stage(raw: Any) -> dict[str, Any]:
    """A stage of a sync's plan as both clients give it: summary, whether it was deferred until
    infrastructure applied (and since planned), its changes (address, action, diff), why skipped."""
    data = raw if isinstance(raw, dict) else {}
    deferred = bool(data.get("deferred"))
    stage: dict[str, Any] = {
        "summary": DEFERRED if deferred and not data.get("summary") else str(data.get("summary") or ""),
        "deferred": deferred, "planned_after_apply": bool(data.get("planned_after_apply")),
        "changes": [{"address": str(c.get("address", "")), "action": str(c.get("action", "")),
                     "diff": str(c.get("diff", ""))} for c in data.get("changes") or [] if isinstance(c, dict)]}
    if isinstance(data.get("skipped"), str) and data["skipped"]:
        stage["skipped"] = data["skipped"]
    return stage


DEFERRED = "planned after infrastructure applies"
"""What a plan says of a stage deferred until infrastructure applied (`reconciler.plans`)."""


def _drift_view(report: DriftReport, decision: DriftDecision) -> DriftView:
    """A report as the API's detail shows it: items in stage order, then by address and field."""
    stages = list(Stage)
    items = sorted(report.items, key=lambda i: (stages.index(i.stage), i.address, i.field))
    return DriftView(report.id, report.revision.sha, report.status.value, report.created_at,
                     [{"stage": i.stage.value, "address": i.address, "field": i.field, "desired": i.desired,
                       "live": i.live} for i in items],
                     f"{report.environment.repository.name}/{report.environment.name}",
                     report.resolution.value if report.resolution else None, report.resolved_at,
                     decision.accepted_by, decision.comment, decision.heal_sync_id)
