"""Store rows turned into the API's models: the one place that decides what a reader sees.

Stage summaries and plan stages are JSON written by other layers; they are read defensively (a
missing or odd field shows as empty, never as an error). Sealed columns (`outputs`, `payload`,
credentials) are never touched here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dashboard import schemas as s
from dashboard.drift_state import states_of
from dashboard.timeline import Episode
from reconciler import history, observations, resources
from reconciler.runtime import Services
from reconciler.status import status_of
from store import (
    Approval,
    DriftItemRow,
    DriftReport,
    DriftStatus,
    Environment,
    Health,
    Plan,
    Preview,
    Repository,
    Revision,
    Stage,
    Sync,
    SyncLifecycle,
    SyncStageResult,
    User,
)
from store.queries import DriftDecision, approvals_for, latest_sync, open_drift_reports


def key_of(env: Environment) -> str:
    return f"{env.repository.name}/{env.name}"


def safe_url(url: str) -> str:
    """A clone URL without its `user:password@` part (tokens are sometimes pasted into URLs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, parts.query, ""))


def revision(row: Revision | None) -> s.RevisionOut | None:
    if row is None:
        return None
    return s.RevisionOut(sha=row.sha, ref=row.ref, author=row.author, message=row.message,
                         committed_at=row.committed_at)


def repository(row: Repository) -> s.RepositoryOut:
    return s.RepositoryOut(name=row.name, url=safe_url(row.url), branch=row.branch, head=row.head_sha,
                           last_polled_at=row.last_polled_at, poll_error=row.poll_error,
                           environments=[env.name for env in row.environments])


def sync_brief(row: Sync) -> s.SyncBrief:
    return s.SyncBrief(id=row.id, status=row.status, trigger=row.trigger,
                       revision=row.revision.sha if row.revision else None, created_at=row.created_at,
                       started_at=row.started_at, finished_at=row.finished_at, error=row.error)


def sync_row(session: Session, row: Sync, rollbacks: set[int]) -> s.SyncRowOut:
    """A history line; `rollbacks` are the ids of the environment's rollback syncs (`history.rollback_ids`)."""
    approved = history.approved(session, row)
    return s.SyncRowOut(**sync_brief(row).model_dump(), commit_subject=history.commit_subject(row),
                        rollback=row.id in rollbacks, approved_by=list(approved.by), approved_at=approved.at,
                        fingerprint=row.plan.fingerprint if row.plan else None)


def sync_rows(session: Session, env: Environment, rows: Iterable[Sync]) -> list[s.SyncRowOut]:
    """An environment's history lines (its rollbacks looked up once)."""
    rollbacks = history.rollback_ids(session, env)
    return [sync_row(session, row, rollbacks) for row in rows]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def stage_state(stage: Stage, row: SyncStageResult | None, *, with_log: bool) -> s.StageStateOut:
    if row is None:
        return s.StageStateOut(stage=stage, status=None, plan="", counts={}, outcomes={})
    summary = _dict(row.summary)
    plan = summary.get("plan")
    counts = {str(k): v for k, v in _dict(summary.get("counts")).items() if isinstance(v, int)}
    outcomes = {str(k): str(v) for k, v in _dict(summary.get("outcomes")).items()}
    error = summary.get("error")
    skipped = summary.get("skipped")
    seconds = (row.finished_at - row.started_at).total_seconds() if row.finished_at and row.started_at else None
    progress = _dict(summary.get("progress"))
    return s.StageStateOut(stage=stage, status=row.status, plan=plan if isinstance(plan, str) else "",
                           progress=s.StageProgressOut.model_validate(progress) if progress else None,
                           counts=counts, outcomes=outcomes, error=error if isinstance(error, str) else None,
                           started_at=row.started_at, finished_at=row.finished_at, seconds=seconds,
                           log=row.log if with_log else None, skipped=skipped if isinstance(skipped, str) else None)


def stages_of(sync: Sync | None, *, with_log: bool = False) -> list[s.StageStateOut]:
    rows = {row.stage: row for row in sync.stage_results} if sync else {}
    return [stage_state(stage, rows.get(stage), with_log=with_log) for stage in Stage]


def approval(row: Approval) -> s.ApprovalOut:
    return s.ApprovalOut(user=row.user, decision=row.decision, source=row.source, comment=row.comment,
                         created_at=row.created_at)


def sync(session: Session, row: Sync, *, with_logs: bool = True) -> s.SyncOut:
    decisions = approvals_for(session, row.plan.fingerprint) if row.plan else []
    line = sync_row(session, row, history.rollback_ids(session, row.environment))
    return s.SyncOut(**line.model_dump(), environment=key_of(row.environment),
                     revision_detail=revision(row.revision), plan_id=row.plan_id,
                     stages=stages_of(row, with_log=with_logs), approvals=[approval(a) for a in decisions])


def pending_sync(session: Session, env: Environment) -> Sync | None:
    query = (select(Sync).where(Sync.environment_id == env.id, Sync.status == SyncLifecycle.AWAITING_APPROVAL)
             .order_by(Sync.id.desc()).limit(1))
    return session.scalars(query).first()


def environment(session: Session, env: Environment, *, detail: bool = False) -> s.EnvironmentDetail:
    reports = open_drift_reports(session, env.id)
    last = latest_sync(session, env.id)
    pending = pending_sync(session, env)
    seen = observations.observed(env)
    return s.EnvironmentDetail(
        repository=env.repository.name, name=env.name, key=key_of(env), revision=revision(env.synced_revision),
        desired_revision=revision(env.desired_revision), sync_status=status_of(session, env), health=seen.health,
        observed_at=seen.observed_at, observation=seen.reason,
        auto_sync_paused=env.auto_sync_paused, open_drift_reports=len(reports),
        open_drift_items=sum(len(r.items) for r in reports), last_sync=sync_brief(last) if last else None,
        pending_approval=pending.id if pending else None, stages=stages_of(last) if detail else [])


def all_environments(session: Session) -> Sequence[Environment]:
    return session.scalars(select(Environment).join(Repository).order_by(Repository.name, Environment.id)).all()


def plan_stages(stages: Any) -> list[s.PlanStageOut]:
    out = []
    for name, raw in _dict(stages).items():
        data = _dict(raw)
        changes = [s.ChangeOut(address=str(c.get("address", "")), action=str(c.get("action", "")),
                               diff=str(c.get("diff", ""))) for c in data.get("changes", []) if isinstance(c, dict)]
        unchanged = data.get("unchanged")
        fingerprint = data.get("fingerprint")
        skipped = data.get("skipped")
        out.append(s.PlanStageOut(stage=str(name), summary=str(data.get("summary", "")),
                                  deferred=bool(data.get("deferred", False)),
                                  fingerprint=fingerprint if isinstance(fingerprint, str) else None,
                                  unchanged=unchanged if isinstance(unchanged, int) else 0, changes=changes,
                                  planned_after_apply=bool(data.get("planned_after_apply", False)),
                                  skipped=skipped if isinstance(skipped, str) and skipped else None))
    order = {stage.value: index for index, stage in enumerate(Stage)}
    return sorted(out, key=lambda stage: order.get(stage.stage, len(order)))


def plan(row: Plan) -> s.PlanOut:
    rev = revision(row.revision)
    assert rev is not None
    return s.PlanOut(id=row.id, environment=key_of(row.environment), revision=rev, fingerprint=row.fingerprint,
                     superseded=row.superseded, created_at=row.created_at, stages=plan_stages(row.stages))


def plan_summary(row: Plan | None) -> dict[str, str]:
    return {stage.stage: stage.summary for stage in plan_stages(row.stages)} if row else {}


def pending_approval(session: Session, row: Sync) -> s.PendingApprovalOut:
    decisions = approvals_for(session, row.plan.fingerprint) if row.plan else []
    return s.PendingApprovalOut(sync=sync_brief(row), environment=key_of(row.environment),
                                revision=revision(row.revision), plan_id=row.plan_id,
                                fingerprint=row.plan.fingerprint if row.plan else None,
                                plan_summary=plan_summary(row.plan), approvals=[approval(a) for a in decisions])


def awaiting_approval(session: Session) -> Sequence[Sync]:
    query = select(Sync).where(Sync.status == SyncLifecycle.AWAITING_APPROVAL).order_by(Sync.created_at, Sync.id)
    return session.scalars(query).all()


def drift_report(row: DriftReport, decision: DriftDecision | None = None) -> s.DriftReportOut:
    """A report; with `decision` (from `store.queries.drift_decisions`) also who accepted it and which
    sync heals it, which only the audit log knows."""
    counts = Counter(item.stage.value for item in row.items)
    decision = decision or DriftDecision()
    return s.DriftReportOut(id=row.id, environment=key_of(row.environment), revision=row.revision.sha,
                            status=row.status, resolution=row.resolution, created_at=row.created_at,
                            resolved_at=row.resolved_at, items_by_stage=dict(counts),
                            accepted_by=decision.accepted_by, accepted_comment=decision.comment,
                            heal_sync_id=decision.heal_sync_id)


def drift_item(row: DriftItemRow) -> s.DriftItemOut:
    return s.DriftItemOut(id=row.id, stage=row.stage, address=row.address, field=row.field, desired=row.desired,
                          live=row.live)


def drift_detail(row: DriftReport, decision: DriftDecision | None = None) -> s.DriftReportDetail:
    items = sorted(row.items, key=lambda i: (list(Stage).index(i.stage), i.address, i.field))
    return s.DriftReportDetail(**drift_report(row, decision).model_dump(), items=[drift_item(i) for i in items])


def drift_reports(session: Session, status: DriftStatus | None, environment_id: int | None = None,
                  limit: int = 100) -> Sequence[DriftReport]:
    query = select(DriftReport).order_by(DriftReport.created_at.desc(), DriftReport.id.desc()).limit(limit)
    if status is not None:
        query = query.where(DriftReport.status == status)
    if environment_id is not None:
        query = query.where(DriftReport.environment_id == environment_id)
    return session.scalars(query).all()


def drift_episodes(session: Session, environment_id: int | None, limit: int = 60) -> list[Episode]:
    """The last reports of one environment (or of all) as timeline episodes, each with its state."""
    reports = drift_reports(session, None, environment_id, limit)
    counted = (select(DriftItemRow.report_id, func.count(DriftItemRow.id))
               .where(DriftItemRow.report_id.in_([r.id for r in reports])).group_by(DriftItemRow.report_id))
    counts: dict[int, int] = {report_id: n for report_id, n in session.execute(counted)}
    states = states_of(session, reports)
    return [Episode(report_id=r.id, environment=key_of(r.environment), opened=r.created_at, closed=r.resolved_at,
                    state=states[r.id].word, items=counts.get(r.id, 0), label=states[r.id].label) for r in reports]


def user(session: Session, row: User, last_used: Mapping[int, datetime] | None = None) -> s.UserOut:
    """A user with groups and tokens; `last_used` holds token use noted in Redis (`dashboard.usage`)."""
    groups = sorted(m.group.name for m in row.memberships)
    noted = last_used or {}
    tokens = [s.TokenOut(name=t.name, prefix=t.prefix, created_at=t.created_at,
                         last_used_at=noted.get(t.id, t.last_used_at), expires_at=t.expires_at) for t in row.tokens]
    return s.UserOut(name=row.name, email=row.email, disabled=row.disabled, has_password=row.password_hash is not None,
                     groups=groups, tokens=tokens, github_id=row.github_id, gitlab_id=row.gitlab_id,
                     gitea_id=row.gitea_id)


def preview_keys(session: Session, row: Preview) -> tuple[str, list[str]]:
    """(repository name, `repo/env` of each environment the preview planned)."""
    repo = session.get(Repository, row.repository_id)
    name = repo.name if repo else ""
    return name, [f"{name}/{env}" for env in _dict(row.environments)]


def preview(session: Session, row: Preview, readable: Callable[[str], bool]) -> s.PreviewOut:
    """A pull request preview with the plans of the environments `readable` allows (by `repo/env`)."""
    repository, _ = preview_keys(session, row)
    environments = []
    for name, raw in sorted(_dict(row.environments).items()):
        if not readable(f"{repository}/{name}"):
            continue
        data = _dict(raw)
        errors = {str(k): str(v) for k, v in _dict(data.get("errors")).items()}
        environments.append(s.PreviewEnvironmentOut(name=str(name), stages=plan_stages(data.get("stages")),
                                                    errors=errors))
    return s.PreviewOut(id=row.id, repository=repository, number=row.number, title=row.title,
                        author=row.author, head_sha=row.head_sha, base_ref=row.base_ref, status=row.status,
                        state=row.state, updated_at=row.updated_at, environments=environments, held=row.held,
                        go_ahead_by=row.go_ahead_by if row.go_ahead_sha == row.head_sha else None)


def previews(session: Session, limit: int = 100) -> Sequence[Preview]:
    return session.scalars(select(Preview).order_by(Preview.updated_at.desc(), Preview.id.desc()).limit(limit)).all()


def _health(word: str | None) -> Health | None:
    try:
        return Health(word) if word else None
    except ValueError:
        return None


def resource_tree(services: Services, session: Session, env: Environment) -> s.ResourceTreeOut:
    """The environment's live resource tree (`reconciler.resources`): what each stage manages, with
    health and sync state per object."""
    found = resources.tree(services, session, env)
    return s.ResourceTreeOut(
        environment=key_of(env), observed_at=found.observed_at,
        sources={stage.value: text for stage, text in found.sources.items()},
        resources=[s.ResourceOut(stage=r.stage, address=r.address, kind=r.kind, name=r.name, group=r.group,
                                 sync=r.sync, health=_health(r.health), reason=r.reason, result=r.result,
                                 drifted=list(r.drifted)) for r in found.resources])


def object_drift(session: Session, env: Environment, stage: Stage, address: str) -> list[s.DriftItemOut]:
    """The open drift items of one object (a host: of its tasks) at the synced revision."""
    def names(item: DriftItemRow) -> bool:
        host = stage is Stage.CONFIGURATION and item.address.split("/", 1)[0] == address
        return item.stage is stage and (item.address == address or host)

    items = [item for report in open_drift_reports(session, env.id) if report.revision_id == env.synced_revision_id
             for item in report.items if names(item)]
    return [drift_item(item) for item in sorted(items, key=lambda i: (i.address, i.field))]


def live_object(services: Services, environment_id: int, key: str, stage: Stage, address: str,
                drift: list[s.DriftItemOut]) -> s.LiveObjectOut:
    """One object read from its target now (no store session is held meanwhile)."""
    found = resources.live_object(services, environment_id, stage, address)
    return s.LiveObjectOut(environment=key, stage=stage, address=address, live=found.body, error=found.error,
                           drift=drift)
