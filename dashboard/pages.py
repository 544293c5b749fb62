"""The web UI: server-rendered Jinja2 pages (readable without JavaScript) and their form actions.

Pages read through `dashboard.views` and act through `dashboard.actions` (onto `reconciler.commands`),
exactly as the API does.
Every form POST carries the session's CSRF token; an action's refusal is shown as a page with the
same 4xx status the API would give. A small script (static/dashboard.js) refreshes the live parts.
"""

from __future__ import annotations

import hmac
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from dashboard import presentation, views
from dashboard.access import Permission, Principal
from dashboard.actions import find_environment, find_report, find_sync, require
from dashboard.approvers import approvers_of, people
from dashboard.context import Context
from dashboard.drift_state import states_of
from dashboard.identity import user_by_name
from dashboard.passwords import verify_password
from dashboard.schemas import AuditOut
from dashboard.secrets import administers_any
from dashboard.sessions import COOKIE, LOGIN_COOKIE, MAX_AGE
from dashboard.throttle import ThrottleUnavailable
from dashboard.timeline import lay_out
from store import (
    ApprovalDecision,
    ApprovalSource,
    AuditEvent,
    DriftStatus,
    Plan,
    Preview,
    Stage,
    Sync,
    SyncLifecycle,
    utcnow,
)
from store.queries import audit_page, record_audit, sync_history

HERE = FilePath(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
ACTIVE = (SyncLifecycle.PENDING, SyncLifecycle.PLANNING, SyncLifecycle.AWAITING_APPROVAL, SyncLifecycle.APPROVED,
          SyncLifecycle.APPLYING)

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(badge=presentation.badge, pretty=presentation.pretty,
                             side_by_side=presentation.side_by_side, line_class=presentation.diff_line_class,
                             administers_any=administers_any, short_time=presentation.short_time,
                             full_time=presentation.full_time, took=presentation.took, kind_of=presentation.kind_icon)
AUDIT_PAGE = 50
OBJECTS_PAGE = 20
"""Drifted objects per page of a drift report (each collapsed to one line when the report is long)."""
OPEN_ALL_UP_TO = 6
"""A report with at most this many drifted objects shows them all open."""


def safe_next(target: str | None) -> str:
    """Only same-site paths after login (never `//evil.example` or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def create_pages(ctx: Context) -> APIRouter:
    router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
    _assets(router)
    _login(router, ctx)
    _reading(router, ctx)
    _acting(router, ctx)
    return router


def page(request: Request, name: str, principal: Principal | None, code: int = 200, **values: Any) -> Response:
    context = {"me": principal, "notice": request.query_params.get("notice", "")[:300], **values}
    response = templates.TemplateResponse(request, name, context, status_code=code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _assets(router: APIRouter) -> None:
    @router.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in ("dashboard.css", "dashboard.js"):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return FileResponse(HERE / "static" / name, media_type=kind, headers={"Cache-Control": "max-age=300"})


def _login(router: APIRouter, ctx: Context) -> None:
    sessions, throttle, db = ctx.sessions, ctx.throttle, ctx.services.database
    signed_in = Depends(ctx.auth.page)

    def form(request: Request, error: str = "", code: int = 200, username: str = "") -> Response:
        token = sessions.login_token()
        response = page(request, "login.html", None, code, error=error, csrf=token, username=username,
                        next=safe_next(request.query_params.get("next")))
        response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                            secure=sessions.secure)
        return response

    @router.get("/login")
    def login_form(request: Request) -> Response:
        return form(request)

    @router.post("/login")
    def login(request: Request, username: Annotated[str, Form(max_length=255)] = "",
              password: Annotated[str, Form(max_length=1024)] = "",
              csrf_token: Annotated[str, Form(max_length=512)] = "",
              next: Annotated[str, Form(max_length=2048)] = "/") -> Response:
        if not sessions.login_token_valid(request.cookies.get(LOGIN_COOKIE), csrf_token):
            return form(request, "The form expired; please sign in again.", status.HTTP_403_FORBIDDEN, username)
        address = request.client.host if request.client else "unknown"
        try:
            wait = throttle.attempt(username, address)  # counted as a failure until the password proves right
        except ThrottleUnavailable:
            response = form(request, "Signing in is unavailable for a moment; try again shortly.",
                            status.HTTP_503_SERVICE_UNAVAILABLE, username)
            response.headers["Retry-After"] = "5"
            return response
        if wait is not None:
            response = form(request, f"Too many failed attempts; try again in {wait} seconds.",
                            status.HTTP_429_TOO_MANY_REQUESTS, username)
            response.headers["Retry-After"] = str(wait)
            return response
        with db.session() as session:  # read, then hash outside any transaction: scrypt takes a while
            user = user_by_name(session, username)
        ok = verify_password(password, user.password_hash if user else None)
        with db.session(write=True) as session:
            if not ok or user is None or user.disabled:
                record_audit(session, actor=username[:255] or "(empty)", action="login.failed", target="dashboard",
                             details={"address": address})
                cookie = None
            else:
                cookie = sessions.open(session, user)
                record_audit(session, actor=user.name, action="login", target="dashboard", details={"address": address})
        if cookie is None:
            return form(request, "Wrong user name or password.", status.HTTP_401_UNAUTHORIZED, username)
        throttle.succeeded(username, address)
        response = RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)
        response.set_cookie(COOKIE, cookie, max_age=MAX_AGE, httponly=True, samesite="lax", secure=sessions.secure)
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @router.post("/logout")
    def logout(request: Request, principal: Principal = signed_in,
               csrf_token: Annotated[str, Form(max_length=512)] = "") -> Response:
        check_csrf(principal, csrf_token)
        data = sessions.read(request.cookies.get(COOKIE))
        if data is not None:  # the record, not just the browser's copy: a captured cookie dies with it
            with db.session(write=True) as session:
                sessions.close(session, data)
                record_audit(session, actor=principal.name, action="logout", target="dashboard")
        response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
        response.delete_cookie(COOKIE)
        return response


def check_csrf(principal: Principal, sent: str) -> None:
    if principal.csrf is None or not hmac.compare_digest(principal.csrf, sent):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token: reload the page and retry")


def _reading(router: APIRouter, ctx: Context) -> None:
    db = ctx.services.database
    viewer = Depends(ctx.auth.page)

    @router.get("/")
    def overview(request: Request, me: Principal = viewer) -> Response:
        with db.session() as session:
            envs = [views.environment(session, env) for env in views.all_environments(session)
                    if me.can(Permission.READ, views.key_of(env))]
            pending = sum(1 for row in views.awaiting_approval(session)
                          if me.can(Permission.READ, views.key_of(row.environment)))
        return page(request, "overview.html", me, environments=envs, pending=pending)

    @router.get("/environments/{repository}/{environment}")
    def environment(request: Request, repository: str, environment: str, me: Principal = viewer) -> Response:
        with db.session() as session:
            env = find_environment(session, repository, environment)
            require(me, Permission.READ, views.key_of(env))
            detail = views.environment(session, env, detail=True)
            history = [views.sync_brief(row) for row in sync_history(session, env.id, 30)]
            rows = views.drift_reports(session, None, env.id, 20)
            reports = [views.drift_report(r) for r in rows]
            states = states_of(session, rows)
            episodes = views.drift_episodes(session, env.id)
            tree = views.resource_tree(ctx.services, session, env)
        return page(request, "environment.html", me, env=detail, history=history, tree=tree,
                    live=presentation.live_tree(tree), reports=reports, states=states,
                    drift_timeline=lay_out(episodes, utcnow()), can_operate=me.can(Permission.OPERATE, detail.key),
                    csrf=me.csrf)

    @router.get("/environments/{repository}/{environment}/objects/{stage}")
    def managed_object(request: Request, repository: str, environment: str, stage: Stage,
                       address: Annotated[str, Query(min_length=1, max_length=1024)], me: Principal = viewer,
                       ) -> Response:
        """One object of the tree: its state, its open drift side by side, and (Kubernetes) its live YAML."""
        with db.session() as session:
            env = find_environment(session, repository, environment)
            require(me, Permission.READ, views.key_of(env))
            tree = views.resource_tree(ctx.services, session, env)
            found = next((r for r in tree.resources if r.stage is stage and r.address == address), None)
            if found is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"{views.key_of(env)} manages no {stage.value} "
                                                               f"object {address!r}")
            drift = views.object_drift(session, env, stage, address)
            env_id, key = env.id, views.key_of(env)
        live = views.live_object(ctx.services, env_id, key, stage, address, drift) \
            if stage is Stage.WORKLOADS else None
        return page(request, "object.html", me, env_key=key, resource=found, drift=drift, live=live,
                    live_yaml=presentation.as_yaml(live.live) if live is not None else "",
                    observed_at=tree.observed_at, source=tree.sources.get(stage.value, ""))

    @router.get("/syncs/{sync_id}")
    def sync(request: Request, sync_id: Id, me: Principal = viewer) -> Response:
        with db.session() as session:
            row = find_sync(session, sync_id)
            require(me, Permission.READ, views.key_of(row.environment))
            detail = views.sync(session, row)
            who = approvers_of(ctx.services, session, row, me, people(session)) \
                if row.status is SyncLifecycle.AWAITING_APPROVAL else None
        applying = min((stage.started_at for stage in detail.stages if stage.started_at), default=None)
        return page(request, "sync.html", me, sync=detail, active=detail.status in ACTIVE, approvers=who,
                    applying_at=applying, csrf=me.csrf)

    @router.get("/syncs/{sync_id}/plan")
    def sync_plan(request: Request, sync_id: Id, me: Principal = viewer) -> Response:
        with db.session() as session:
            row = find_sync(session, sync_id)
            require(me, Permission.READ, views.key_of(row.environment))
            if row.plan is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"sync {sync_id} has no plan yet")
            detail = views.plan(row.plan)
        return page(request, "plan.html", me, plan=detail, sync_id=sync_id)

    @router.get("/plans/{plan_id}")
    def plan(request: Request, plan_id: Id, me: Principal = viewer) -> Response:
        """A plan is read as part of its sync (`/syncs/N/plan`): plans and syncs are numbered apart."""
        with db.session() as session:
            row = session.get(Plan, plan_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no plan {plan_id}")
            require(me, Permission.READ, views.key_of(row.environment))
            carrier = session.scalars(select(Sync.id).where(Sync.plan_id == plan_id).order_by(Sync.id.desc())).first()
            detail = views.plan(row)
        if carrier is not None:
            return RedirectResponse(f"/syncs/{carrier}/plan", status.HTTP_303_SEE_OTHER)
        return page(request, "plan.html", me, plan=detail, sync_id=None)

    @router.get("/previews")
    def previews(request: Request, me: Principal = viewer) -> Response:
        with db.session() as session:
            rows = [views.preview(session, row, lambda key: me.can(Permission.READ, key))
                    for row in views.previews(session)]
        shown = [p for p in rows if p.environments or me.can(Permission.READ)]
        return page(request, "previews.html", me, previews=shown)

    @router.get("/previews/{preview_id}")
    def preview(request: Request, preview_id: Id, me: Principal = viewer) -> Response:
        with db.session() as session:
            row = session.get(Preview, preview_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no preview {preview_id}")
            detail = views.preview(session, row, lambda key: me.can(Permission.READ, key))
        if not detail.environments:
            require(me, Permission.READ)
        return page(request, "preview.html", me, preview=detail)

    @router.get("/approvals")
    def approvals(request: Request, me: Principal = viewer) -> Response:
        with db.session() as session:
            rows = [row for row in views.awaiting_approval(session)
                    if me.can(Permission.READ, views.key_of(row.environment))]
            everyone = people(session) if rows else []
            queue = [(views.pending_approval(session, row), approvers_of(ctx.services, session, row, me, everyone))
                     for row in rows]
        return page(request, "approvals.html", me, queue=queue, csrf=me.csrf)

    @router.get("/drift")
    def drift_list(request: Request, me: Principal = viewer, show: str = "open") -> Response:
        wanted = None if show == "all" else DriftStatus.OPEN
        with db.session() as session:
            rows = [r for r in views.drift_reports(session, wanted)
                    if me.can(Permission.READ, views.key_of(r.environment))]
            reports, states = [views.drift_report(r) for r in rows], states_of(session, rows)
            episodes = [e for e in views.drift_episodes(session, None, 200) if me.can(Permission.READ, e.environment)]
        return page(request, "drift_list.html", me, reports=reports, states=states, show=show,
                    drift_timeline=lay_out(episodes, utcnow()))

    @router.get("/drift/{report_id}")
    def drift(request: Request, report_id: Id, me: Principal = viewer, page_number: Annotated[
              int, Query(alias="page", ge=1, le=100_000)] = 1) -> Response:
        with db.session() as session:
            row = find_report(session, report_id)
            require(me, Permission.READ, views.key_of(row.environment))
            detail = views.drift_detail(row)
            state = states_of(session, [row])[row.id]
            episodes = views.drift_episodes(session, row.environment_id)
        objects = presentation.by_object(detail.items)
        shown = presentation.pager(len(objects), page_number, OBJECTS_PAGE)
        return page(request, "drift.html", me, report=detail, state=state, csrf=me.csrf,
                    objects=objects[shown.offset:shown.offset + shown.size], pages=shown,
                    open_all=len(objects) <= OPEN_ALL_UP_TO, drift_timeline=lay_out(episodes, utcnow(), current=row.id),
                    can_operate=me.can(Permission.OPERATE, detail.environment))

    @router.get("/audit")
    def audit(request: Request, me: Principal = viewer, actor: str = "", page_number: Annotated[
              int, Query(alias="page", ge=1, le=100_000)] = 1) -> Response:
        require(me, Permission.READ)
        with db.session() as session:
            counted = select(func.count(AuditEvent.id))
            found = session.scalar(counted.where(AuditEvent.actor == actor[:255]) if actor else counted) or 0
            shown = presentation.pager(found, page_number, AUDIT_PAGE)
            events = [AuditOut.model_validate(row) for row in
                      audit_page(session, actor=actor[:255], offset=shown.offset, limit=AUDIT_PAGE)]
        return page(request, "audit.html", me, events=events, actor=actor, pages=shown)


def _acting(router: APIRouter, ctx: Context) -> None:
    actions = ctx.actions
    viewer = Depends(ctx.auth.page)

    def done(request: Request, me: Principal, target: str, work: Any, notice: str) -> Response:
        try:
            work()
        except HTTPException as refused:
            message = refused.detail if isinstance(refused.detail, str) else getattr(refused, "message", "refused")
            return page(request, "error.html", me, refused.status_code, message=message, back=target)
        return RedirectResponse(f"{target}?notice={quote(notice)}", status.HTTP_303_SEE_OTHER)

    @router.post("/environments/{repository}/{environment}/sync")
    def sync_now(request: Request, repository: str, environment: str, me: Principal = viewer,
                 csrf_token: Annotated[str, Form(max_length=512)] = "",
                 revision: Annotated[str, Form(max_length=64)] = "") -> Response:
        check_csrf(me, csrf_token)
        target = f"/environments/{quote(repository)}/{quote(environment)}"
        wanted = revision.strip() or None
        return done(request, me, target, lambda: actions.sync(me, repository, environment, wanted),
                    f"Rollback to {wanted[:12]} requested (auto-sync paused)" if wanted else "Sync requested")

    @router.post("/environments/{repository}/{environment}/{verb}")
    def pause(request: Request, repository: str, environment: str, verb: str, me: Principal = viewer,
              csrf_token: Annotated[str, Form(max_length=512)] = "") -> Response:
        check_csrf(me, csrf_token)
        if verb not in ("pause", "resume"):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such action")
        target = f"/environments/{quote(repository)}/{quote(environment)}"
        if verb == "pause":
            return done(request, me, target, lambda: actions.pause(me, repository, environment), "Auto-sync paused")
        return done(request, me, target, lambda: actions.resume(me, repository, environment), "Auto-sync resumed")

    @router.post("/syncs/{sync_id}/{verb}")
    def decide(request: Request, sync_id: Id, verb: str, me: Principal = viewer,
                 csrf_token: Annotated[str, Form(max_length=512)] = "",
               comment: Annotated[str, Form(max_length=2000)] = "") -> Response:
        check_csrf(me, csrf_token)
        decisions = {"approve": ApprovalDecision.APPROVE, "reject": ApprovalDecision.REJECT}
        if verb not in decisions:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such action")
        return done(request, me, f"/syncs/{sync_id}",
                    lambda: actions.decide(me, sync_id, decisions[verb], comment, ApprovalSource.DASHBOARD),
                    "Approved" if verb == "approve" else "Rejected")

    @router.post("/drift/{report_id}/{verb}")
    def resolve(request: Request, report_id: Id, verb: str, me: Principal = viewer,
                csrf_token: Annotated[str, Form(max_length=512)] = "") -> Response:
        check_csrf(me, csrf_token)
        if verb == "accept":
            return done(request, me, f"/drift/{report_id}", lambda: actions.accept_drift(me, report_id),
                        "Drift accepted")
        if verb == "heal":
            return done(request, me, f"/drift/{report_id}", lambda: actions.heal_drift(me, report_id),
                        "Heal requested: a sync of the drifted revision is on its way")
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such action")

