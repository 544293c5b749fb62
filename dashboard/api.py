"""The REST API under /api/v1: reading environments, syncs, plans, previews, drift and audit, and acting
on them (people are managed in `dashboard.people`). Every route needs a bearer token or a session.

Routes stay thin: actions go through `dashboard.actions` to `reconciler.commands` (the rules, audit and
queueing every door shares), the shapes live in `dashboard.schemas`, the reading of rows in `dashboard.views`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from dashboard import schemas as s
from dashboard import views
from dashboard.access import Permission, Principal
from dashboard.actions import Refusal, find_environment, find_report, find_sync, require
from dashboard.approval_policies import add_policy_routes
from dashboard.context import Context
from dashboard.people import add_people_routes
from dashboard.secrets import add_secret_routes
from reconciler.commands import CommandRefused, EnvironmentName
from reconciler.diffs import DiffFailed, EnvironmentDiff, diff_environment
from reconciler.livelogs import INTERVAL
from store import (
    ApprovalDecision,
    ApprovalSource,
    AuditEvent,
    DriftStatus,
    Plan,
    Preview,
    Repository,
    Stage,
    Sync,
    SyncLifecycle,
)
from store.queries import drift_decisions

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorOut} for code in (400, 401, 403, 404, 409, 422, 429, 503)
}
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many, newest first.")]
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
FINISHED = (SyncLifecycle.SUCCEEDED, SyncLifecycle.FAILED, SyncLifecycle.SUPERSEDED)
LIVE_LOG_PERIOD = INTERVAL
"""Seconds between two looks at a running sync's logs: the pace its lines reach the store."""
DIFF_SLOTS = 2
"""Diffs planned at once by one server process: each runs Terraform, Ansible and a Kubernetes dry
run, so a viewer's loop of requests must not take every core; past this, 503 with Retry-After."""
DIFF_RETRY_AFTER = "5"


def create_api(ctx: Context) -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=ERRORS)
    caller = Depends(ctx.auth.api)
    _reading(router, ctx, caller)
    _acting(router, ctx, caller)
    _logs(router, ctx, caller)
    _diff(router, ctx, caller)
    add_people_routes(router, ctx, caller)
    add_policy_routes(router, ctx, caller)
    add_secret_routes(router, ctx, caller)
    return router


def _reading(router: APIRouter, ctx: Context, caller_dep: Any) -> None:
    db = ctx.services.database

    @router.get("/me", tags=["auth"], summary="Who the credentials belong to, and what they may do")
    def me(caller: Principal = caller_dep) -> s.MeOut:
        return s.MeOut(name=caller.name, email=caller.email, groups=sorted(caller.groups),
                       grants=[s.GrantOut(role=g.role, scope=g.scope) for g in caller.grants], csrf_token=caller.csrf)

    @router.get("/repositories", tags=["repositories"], summary="Registered config repositories")
    def repositories(caller: Principal = caller_dep) -> list[s.RepositoryOut]:
        require(caller, Permission.READ)
        with db.session() as session:
            return [views.repository(r) for r in session.scalars(select(Repository).order_by(Repository.name))]

    @router.get("/environments", tags=["environments"],
                summary="Every environment the caller may read: revision, sync status, health, drift, last sync")
    def environments(caller: Principal = caller_dep) -> list[s.EnvironmentOut]:
        with db.session() as session:
            return [s.EnvironmentOut.model_validate(views.environment(session, env).model_dump())
                    for env in views.all_environments(session) if caller.can(Permission.READ, views.key_of(env))]

    @router.get("/environments/{repository}/{environment}", tags=["environments"],
                summary="One environment with its three-stage pipeline as the last sync left it")
    def environment(repository: str, environment: str, caller: Principal = caller_dep) -> s.EnvironmentDetail:
        with db.session() as session:
            env = find_environment(session, repository, environment)
            require(caller, Permission.READ, views.key_of(env))
            return views.environment(session, env, detail=True)

    @router.get("/environments/{repository}/{environment}/resources", tags=["environments"],
                summary="The live resource tree: what each stage manages, with sync state and health per object")
    def resources(repository: str, environment: str, caller: Principal = caller_dep) -> s.ResourceTreeOut:
        with db.session() as session:
            env = find_environment(session, repository, environment)
            require(caller, Permission.READ, views.key_of(env))
            return views.resource_tree(ctx.services, session, env)

    @router.get("/environments/{repository}/{environment}/resources/{stage}/live", tags=["environments"],
                summary="One object as its target holds it now (Kubernetes; Secret values masked) and its open drift")
    def live_object(repository: str, environment: str, stage: Stage,
                    address: Annotated[str, Query(min_length=1, max_length=1024,
                                                  description="The object's address in the tree.")],
                    caller: Principal = caller_dep) -> s.LiveObjectOut:
        with db.session() as session:
            env = find_environment(session, repository, environment)
            require(caller, Permission.READ, views.key_of(env))
            tree = views.resource_tree(ctx.services, session, env)
            if not any(r.stage is stage and r.address == address for r in tree.resources):
                raise Refusal(status.HTTP_404_NOT_FOUND, f"{views.key_of(env)} manages no {stage.value} object "
                                                         f"{address!r}")
            drift = views.object_drift(session, env, stage, address)
            env_id, key = env.id, views.key_of(env)
        return views.live_object(ctx.services, env_id, key, stage, address, drift)

    @router.get("/environments/{repository}/{environment}/syncs", tags=["syncs"], summary="Sync history")
    def history(repository: str, environment: str, caller: Principal = caller_dep,
                limit: Limit = 50) -> list[s.SyncRowOut]:
        with db.session() as session:
            env = find_environment(session, repository, environment)
            require(caller, Permission.READ, views.key_of(env))
            query = (select(Sync).where(Sync.environment_id == env.id)
                     .order_by(Sync.created_at.desc(), Sync.id.desc()).limit(limit))
            return views.sync_rows(session, env, session.scalars(query))

    @router.get("/syncs/{sync_id}", tags=["syncs"], summary="A sync with its per-stage results and logs")
    def sync(sync_id: Id, caller: Principal = caller_dep) -> s.SyncOut:
        with db.session() as session:
            row = find_sync(session, sync_id)
            require(caller, Permission.READ, views.key_of(row.environment))
            return views.sync(session, row)

    @router.get("/plans/{plan_id}", tags=["plans"], summary="A plan: per stage, each change with its diff")
    def plan(plan_id: Id, caller: Principal = caller_dep) -> s.PlanOut:
        with db.session() as session:
            row = session.get(Plan, plan_id)
            if row is None:
                raise Refusal(status.HTTP_404_NOT_FOUND, f"no plan {plan_id}")
            require(caller, Permission.READ, views.key_of(row.environment))
            return views.plan(row)

    def can_read_preview(session: Any, caller: Principal, row: Preview) -> bool:
        keys = views.preview_keys(session, row)[1]
        return caller.can(Permission.READ) or any(caller.can(Permission.READ, key) for key in keys)

    @router.get("/previews", tags=["previews"], summary="Pull request previews, most recently updated first")
    def previews(caller: Principal = caller_dep, limit: Limit = 50) -> list[s.PreviewOut]:
        with db.session() as session:
            return [views.preview(session, row, lambda key: caller.can(Permission.READ, key))
                    for row in views.previews(session, limit) if can_read_preview(session, caller, row)]

    @router.get("/previews/{preview_id}", tags=["previews"],
                summary="One pull request preview: per environment the plan of each stage (as in the PR comment)")
    def preview(preview_id: Id, caller: Principal = caller_dep) -> s.PreviewOut:
        with db.session() as session:
            row = session.get(Preview, preview_id)
            if row is None:
                raise Refusal(status.HTTP_404_NOT_FOUND, f"no preview {preview_id}")
            if not can_read_preview(session, caller, row):
                require(caller, Permission.READ)
            return views.preview(session, row, lambda key: caller.can(Permission.READ, key))

    @router.get("/approvals", tags=["approvals"], summary="Syncs awaiting approval (the approvals queue)")
    def pending(caller: Principal = caller_dep) -> list[s.PendingApprovalOut]:
        with db.session() as session:
            return [views.pending_approval(session, row) for row in views.awaiting_approval(session)
                    if caller.can(Permission.READ, views.key_of(row.environment))]

    @router.get("/drift-reports", tags=["drift"], summary="Drift reports, newest first")
    def drift_reports(caller: Principal = caller_dep, limit: Limit = 100,
                      report_status: Annotated[DriftStatus | None, Query(alias="status")] = DriftStatus.OPEN,
                      environment: Annotated[str | None, Query(max_length=510, description="Only this "
                                                               "REPOSITORY/ENVIRONMENT.")] = None,
                      ) -> list[s.DriftReportOut]:
        with db.session() as session:
            env_id = None
            if environment is not None:
                repository, _, name = environment.partition("/")
                env_id = find_environment(session, repository, name).id
            rows = [r for r in views.drift_reports(session, report_status, env_id, limit)
                    if caller.can(Permission.READ, views.key_of(r.environment))]
            decisions = drift_decisions(session, rows)
            return [views.drift_report(r, decisions.get(r.id)) for r in rows]

    @router.get("/drift-reports/{report_id}", tags=["drift"], summary="A drift report: desired and live per item")
    def drift_report(report_id: Id, caller: Principal = caller_dep) -> s.DriftReportDetail:
        with db.session() as session:
            row = find_report(session, report_id)
            require(caller, Permission.READ, views.key_of(row.environment))
            return views.drift_detail(row, drift_decisions(session, [row]).get(row.id))

    @router.get("/audit", tags=["audit"], summary="The audit log, newest first")
    def audit(caller: Principal = caller_dep, limit: Limit = 100,
              actor: Annotated[str | None, Query(max_length=255)] = None,
              action: Annotated[str | None, Query(max_length=255)] = None) -> list[s.AuditOut]:
        require(caller, Permission.READ)
        query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
        if actor:
            query = query.where(AuditEvent.actor == actor)
        if action:
            query = query.where(AuditEvent.action.startswith(action))
        with db.session() as session:
            return [s.AuditOut.model_validate(row) for row in session.scalars(query)]


def _acting(router: APIRouter, ctx: Context, caller_dep: Any) -> None:
    actions = ctx.actions

    @router.post("/environments/{repository}/{environment}/sync", tags=["actions"], status_code=202,
                 summary="Sync now, or sync a given revision (a rollback, which pauses auto-sync)")
    def sync_now(repository: str, environment: str, caller: Principal = caller_dep,
                 body: Annotated[s.SyncRequestIn | None, Body()] = None) -> s.ActionOut:
        revision = body.revision if body else None
        requested = actions.sync(caller, repository, environment, revision)
        what = f"rollback to {revision}" if revision else "sync"
        return s.ActionOut(message=f"{what} of {repository}/{environment} requested", sync_id=requested.sync_id)

    @router.post("/repositories/{name}/poll", tags=["actions"], status_code=202,
                 summary="Poll a repository for new commits now (operator)")
    def poll(name: str, caller: Principal = caller_dep) -> s.ActionOut:
        actions.poll(caller, name)
        return s.ActionOut(message=f"polling {name}")

    @router.post("/environments/{repository}/{environment}/pause", tags=["actions"], summary="Pause auto-sync")
    def pause(repository: str, environment: str, caller: Principal = caller_dep) -> s.ActionOut:
        actions.pause(caller, repository, environment)
        return s.ActionOut(message=f"auto-sync of {repository}/{environment} paused")

    @router.post("/environments/{repository}/{environment}/resume", tags=["actions"],
                 summary="Resume auto-sync; an environment behind its desired revision gets a sync of it (`sync_id`)")
    def resume(repository: str, environment: str, caller: Principal = caller_dep) -> s.ActionOut:
        started = actions.resume(caller, repository, environment).sync
        if started is None:
            return s.ActionOut(message=f"auto-sync of {repository}/{environment} resumed")
        return s.ActionOut(message=f"auto-sync of {repository}/{environment} resumed; syncing it to "
                           f"{started.revision[:12]}", sync_id=started.sync_id)

    def decide(sync_id: Id, caller: Principal, body: s.DecisionIn | None, decision: ApprovalDecision) -> s.DecisionOut:
        result, now = actions.decide(caller, sync_id, decision, body.comment if body else "", ApprovalSource.API,
                                     body.as_user if body else None)
        return s.DecisionOut(sync_id=result.sync_id, fingerprint=result.fingerprint, approvals=result.approvals,
                             required=result.required, approved=result.approved, status=now, detail=result.detail,
                             queued=result.queued)

    @router.post("/syncs/{sync_id}/approve", tags=["approvals"], summary="Approve the plan a sync awaits",
                 responses={202: {"model": s.DecisionOut, "description": "Approved, but the broker is down: the "
                                  "apply is queued by the sweeper once it is back (`queued: false`)."}})
    def approve(sync_id: Id, response: Response, caller: Principal = caller_dep,
               body: Annotated[s.DecisionIn | None, Body()] = None) -> s.DecisionOut:
        out = decide(sync_id, caller, body, ApprovalDecision.APPROVE)
        if not out.queued:
            response.status_code = status.HTTP_202_ACCEPTED
        return out

    @router.post("/syncs/{sync_id}/reject", tags=["approvals"], summary="Reject the plan a sync awaits")
    def reject(sync_id: Id, caller: Principal = caller_dep,
              body: Annotated[s.DecisionIn | None, Body()] = None) -> s.DecisionOut:
        return decide(sync_id, caller, body, ApprovalDecision.REJECT)

    @router.post("/drift-reports/{report_id}/accept", tags=["drift"],
                 summary="Accept the live state: resolve the report without changing anything")
    def accept(report_id: Id, caller: Principal = caller_dep,
               body: Annotated[s.DriftAcceptIn | None, Body()] = None) -> s.ActionOut:
        actions.accept_drift(caller, report_id, body.comment if body else "")
        return s.ActionOut(message=f"drift report {report_id} accepted")

    @router.post("/drift-reports/{report_id}/heal", tags=["drift"], status_code=202,
                 summary="Heal: request a sync (trigger drift) of the drifted revision")
    def heal(report_id: Id, caller: Principal = caller_dep) -> s.ActionOut:
        requested = actions.heal_drift(caller, report_id)
        return s.ActionOut(message=f"healing drift report {report_id}", sync_id=requested.sync_id)


def _logs(router: APIRouter, ctx: Context, caller_dep: Any) -> None:
    db = ctx.services.database

    def snapshot(sync_id: Id) -> tuple[SyncLifecycle, dict[str, str]]:
        with db.session() as session:
            row = find_sync(session, sync_id)
            return row.status, {r.stage.value: r.log for r in sorted(row.stage_results, key=lambda r: r.id)}

    @router.get("/syncs/{sync_id}/logs", tags=["syncs"], response_class=StreamingResponse,
                summary="Stage logs as server-sent events, followed until the sync finishes",
                responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                                 "description": "`log` events ({stage, text}) then one `end` event ({status})."}})
    def logs(sync_id: Id, caller: Principal = caller_dep, follow: bool = True,
             timeout: Annotated[float, Query(ge=0, le=3600, description="Stop following after seconds.")] = 900,
             ) -> StreamingResponse:
        with db.session() as session:
            require(caller, Permission.READ, views.key_of(find_sync(session, sync_id).environment))

        async def events() -> AsyncIterator[str]:
            sent: dict[str, int] = {}
            with anyio.move_on_after(timeout):
                while True:
                    state, logs = await anyio.to_thread.run_sync(snapshot, sync_id)
                    for stage, text in logs.items():
                        if len(text) > sent.get(stage, 0):
                            yield _event("log", {"stage": stage, "text": text[sent.get(stage, 0):]})
                            sent[stage] = len(text)
                    if state in FINISHED or not follow:
                        break
                    await anyio.sleep(LIVE_LOG_PERIOD)
            yield _event("end", {"status": state.value})

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _diff(router: APIRouter, ctx: Context, caller_dep: Any) -> None:
    slots = threading.BoundedSemaphore(DIFF_SLOTS)

    @router.get("/environments/{repository}/{environment}/diff", tags=["environments"],
                summary="What a sync of the desired revision would change now, per stage (`tidegate diff`)",
                description="Planned read-only, as a pull request preview is: nothing applied, nothing stored. "
                            "A stage that could not be planned has its `error`; the others are still planned.",
                responses={503: {"model": s.ErrorOut, "description": "Too many diffs being planned; retry."}})
    def diff(repository: str, environment: str, caller: Principal = caller_dep) -> EnvironmentDiff:
        with ctx.services.database.session() as session:
            env = find_environment(session, repository, environment)
            require(caller, Permission.READ, views.key_of(env))
        if not slots.acquire(blocking=False):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "other diffs are being planned; try again",
                                headers={"Retry-After": DIFF_RETRY_AFTER})
        try:
            return diff_environment(ctx.services, EnvironmentName(environment, repository))
        except DiffFailed as failed:
            raise Refusal(status.HTTP_409_CONFLICT, str(failed)) from None
        except CommandRefused as refused:
            raise Refusal(status.HTTP_404_NOT_FOUND, str(refused)) from None
        finally:
            slots.release()


def _event(name: str, data: dict[str, str]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
