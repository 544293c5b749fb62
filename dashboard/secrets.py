"""Stored secrets over the API: `/api/v1/secrets[/{name}]`, admins only, values write-only.

A global secret (no repository) is visible to every environment, so only an admin on `*` may set,
delete or list it; a secret scoped to `repository/environment` is managed by an admin of that
environment; one scoped to a whole repository by an admin on `*` (role bindings name environments).
No response, log line or audit event carries a value: `reconciler.secrets` seals it and registers it
for redaction before anything else happens.

The rules (who may, what is invalid, what is missing) live in the functions below, shared by the
API routes and the `/secrets` page (`dashboard.secret_pages`), so both doors refuse alike.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard import schemas as s
from dashboard import views
from dashboard.access import ROLE_PERMISSIONS, Permission, Principal
from dashboard.actions import Refusal, require
from dashboard.context import Context
from reconciler import secrets
from reconciler.runtime import Services
from store import Repository

ScopePart = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,253}$")]


def _out(info: secrets.SecretInfo) -> s.SecretOut:
    return s.SecretOut(name=info.name, scope=info.scope, fingerprint=info.fingerprint,
                       updated_at=info.updated_at, updated_by=info.updated_by)


def scope_of(repository: str | None, environment: str | None) -> secrets.Scope:
    """The scope a request names; an environment without its repository is blamed on `repository`,
    the field a client has to fill in (the reconciler says `scope`, which no request carries)."""
    try:
        return secrets.Scope(repository, environment)
    except secrets.SecretError as error:
        field = "repository" if error.field == "scope" else error.field
        raise Refusal(422, str(error), field=field) from None


def parse_scope(text: str) -> secrets.Scope:
    """A scope as the page's form sends it (`*`, `repository` or `repository/environment`), or 422."""
    try:
        return secrets.Scope.parse(text)
    except secrets.SecretError as error:
        raise Refusal(422, str(error), field="scope") from None


def admin_scope(scope: secrets.Scope) -> str:
    """The role-binding scope whose admins manage secrets of `scope`."""
    return scope.key if scope.environment is not None else "*"


def administers_any(principal: Principal) -> bool:
    """Whether `principal` is an admin anywhere, so has stored secrets to manage (the nav's Secrets link)."""
    return any(Permission.ADMIN in ROLE_PERMISSIONS[grant.role] for grant in principal.grants)


def administered(session: Session, caller: Principal) -> list[secrets.SecretInfo]:
    """The stored secrets `caller` administers: listing a name is already telling, so no one sees more."""
    return [info for info in secrets.list_secrets(session)
            if caller.can(Permission.ADMIN, admin_scope(secrets.Scope.parse(info.scope)))]


def manageable_scopes(session: Session, caller: Principal) -> list[str]:
    """The scopes `caller` may set secrets in, as the page offers them: global, repositories and
    environments for an admin on `*`; their own environments for an environment admin."""
    environments = [views.key_of(env) for env in views.all_environments(session)]
    if caller.can(Permission.ADMIN):
        return [secrets.GLOBAL, *session.scalars(select(Repository.name).order_by(Repository.name)), *environments]
    return [key for key in environments if caller.can(Permission.ADMIN, key)]


def store_secret(services: Services, caller: Principal, name: str, scope: secrets.Scope,
                 value: str) -> secrets.SecretInfo:
    """Set `name` in `scope` as `caller`: 403 unless they administer it, 422 naming a bad field."""
    require(caller, Permission.ADMIN, admin_scope(scope))
    try:
        with services.database.session(write=True) as session:
            return secrets.set_secret(session, services.secrets, name, scope, value, caller.audit_name)
    except secrets.SecretError as error:
        raise Refusal(422, str(error), field=error.field) from None


def remove_secret(services: Services, caller: Principal, name: str, scope: secrets.Scope) -> None:
    """Delete `name` from `scope` (that scope only) as `caller`: 403 unless they administer it, 404 if absent."""
    require(caller, Permission.ADMIN, admin_scope(scope))
    with services.database.session(write=True) as session:
        if not secrets.delete_secret(session, name, scope, caller.audit_name):
            raise Refusal(status.HTTP_404_NOT_FOUND, f"no secret {name!r} in scope {scope.key}")


def add_secret_routes(router: APIRouter, ctx: Context, caller_dep: Any) -> None:
    services = ctx.services

    @router.get("/secrets", tags=["secrets"], summary="Stored secrets you administer: names and fingerprints")
    def list_secrets(caller: Principal = caller_dep) -> list[s.SecretOut]:
        with services.database.session() as session:
            return [_out(info) for info in administered(session, caller)]

    @router.put("/secrets/{name}", tags=["secrets"], summary="Set a stored secret (admin of its scope)")
    def set_secret(name: str, body: s.SecretIn, caller: Principal = caller_dep) -> s.SecretOut:
        scope = scope_of(body.repository, body.environment)
        return _out(store_secret(services, caller, name, scope, body.value.get_secret_value()))

    @router.delete("/secrets/{name}", tags=["secrets"], status_code=204,
                   summary="Delete a stored secret from one scope (admin of that scope)")
    def delete_secret(name: str, repository: ScopePart = None, environment: ScopePart = None,
                      caller: Principal = caller_dep) -> Response:
        remove_secret(services, caller, name, scope_of(repository, environment))
        return Response(status_code=204)
