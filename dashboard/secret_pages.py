"""The `/secrets` page: the stored secrets the signed-in user administers, and forms to set and delete them.

Like the API's list, the page is open to everyone signed in and shows only what the user
administers (nothing, with no forms, for someone who administers nothing), and the forms act
through the same rules (`dashboard.secrets.store_secret`, `remove_secret`). Values are write-only
here too: the value field is always rendered empty, and a form refused for bad input is shown again
with its name and scope but never its value, so it cannot linger in the page, the browser's cache
or a screenshot. Other refusals (403, 404) are shown as the error page other form actions use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dashboard.access import Principal
from dashboard.actions import Refusal
from dashboard.context import Context
from dashboard.pages import check_csrf, page
from dashboard.secrets import administered, manageable_scopes, parse_scope, remove_secret, store_secret

FormText = Annotated[str, Form()]
"""Form fields are left unconstrained on purpose: FastAPI's own 422 would answer in JSON and repeat
the input, a value included; the rules of `dashboard.secrets` check them and the page says why."""


@dataclass(frozen=True)
class Refused:
    """Why the set form was refused, for showing it again: the message, the field, and what to refill."""

    message: str
    field: str | None
    name: str
    scope: str


def create_secret_pages(ctx: Context) -> APIRouter:
    router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
    viewer = Depends(ctx.auth.page)
    services = ctx.services

    def show(request: Request, me: Principal, code: int = 200, refused: Refused | None = None) -> Response:
        with services.database.session() as session:
            rows = administered(session, me)
            scopes = manageable_scopes(session, me)
        return page(request, "secrets.html", me, code, secrets=rows, scopes=scopes, csrf=me.csrf, refused=refused)

    def refusal_page(request: Request, me: Principal, refused: Refusal) -> Response:
        return page(request, "error.html", me, refused.status_code, message=refused.message, back="/secrets")

    @router.get("/secrets")
    def secrets_page(request: Request, me: Principal = viewer) -> Response:
        return show(request, me)

    @router.post("/secrets")
    def set_secret(request: Request, me: Principal = viewer, csrf_token: FormText = "", name: FormText = "",
                   scope: FormText = "", value: FormText = "") -> Response:
        check_csrf(me, csrf_token)
        try:
            info = store_secret(services, me, name, parse_scope(scope), value)
        except Refusal as refused:
            if refused.status_code != 422:
                return refusal_page(request, me, refused)
            return show(request, me, 422, Refused(refused.message, refused.field, name[:253], scope[:510]))
        notice = f"Secret {info.name} set in {info.scope} ({info.fingerprint})"
        return RedirectResponse(f"/secrets?notice={quote(notice)}", status_code=303)

    @router.post("/secrets/delete")
    def delete_secret(request: Request, me: Principal = viewer, csrf_token: FormText = "", name: FormText = "",
                      scope: FormText = "") -> Response:
        check_csrf(me, csrf_token)
        try:
            target = parse_scope(scope)
            remove_secret(services, me, name, target)
        except Refusal as refused:
            return refusal_page(request, me, refused)
        return RedirectResponse(f"/secrets?notice={quote(f'Secret {name} deleted from {target.key}')}",
                                status_code=303)

    return router
