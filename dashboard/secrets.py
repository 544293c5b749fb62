"""Stored secrets over the API: `/api/v1/secrets[/{name}]`, admins only, values write-only.

A global secret (no repository) is visible to every environment, so only an admin on `*` may set,
delete or list it; a secret scoped to `repository/environment` is managed by an admin of that
environment; one scoped to a whole repository by an admin on `*` (role bindings name environments).
No response, log line or audit event carries a value: `reconciler.secrets` seals it and registers it
for redaction before anything else happens.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from dashboard import schemas as s
from dashboard.access import Permission, Principal
from dashboard.actions import Refusal, require
from dashboard.context import Context
from reconciler import secrets

ScopePart = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,253}$")]


def _out(info: secrets.SecretInfo) -> s.SecretOut:
    return s.SecretOut(name=info.name, scope=info.scope, fingerprint=info.fingerprint,
                       updated_at=info.updated_at, updated_by=info.updated_by)


def _scope(repository: str | None, environment: str | None) -> secrets.Scope:
    """The scope the request names; an environment without its repository is blamed on `repository`,
    the field a client has to fill in (the reconciler says `scope`, which no request carries)."""
    try:
        return secrets.Scope(repository, environment)
    except secrets.SecretError as error:
        field = "repository" if error.field == "scope" else error.field
        raise Refusal(422, str(error), field=field) from None


def admin_scope(scope: secrets.Scope) -> str:
    """The role-binding scope whose admins manage secrets of `scope`."""
    return scope.key if scope.environment is not None else "*"


def add_secret_routes(router: APIRouter, ctx: Context, caller_dep: Any) -> None:
    db = ctx.services.database
    box = ctx.services.secrets

    @router.get("/secrets", tags=["secrets"], summary="Stored secrets you administer: names and fingerprints")
    def list_secrets(caller: Principal = caller_dep) -> list[s.SecretOut]:
        with db.session() as session:
            rows = secrets.list_secrets(session)
        return [_out(info) for info in rows
                if caller.can(Permission.ADMIN, admin_scope(secrets.Scope.parse(info.scope)))]

    @router.put("/secrets/{name}", tags=["secrets"], summary="Set a stored secret (admin of its scope)")
    def set_secret(name: str, body: s.SecretIn, caller: Principal = caller_dep) -> s.SecretOut:
        scope = _scope(body.repository, body.environment)
        require(caller, Permission.ADMIN, admin_scope(scope))
        try:
            with db.session(write=True) as session:
                return _out(secrets.set_secret(session, box, name, scope, body.value.get_secret_value(),
                                               caller.audit_name))
        except secrets.SecretError as error:
            raise Refusal(422, str(error), field=error.field) from None

    @router.delete("/secrets/{name}", tags=["secrets"], status_code=204,
                   summary="Delete a stored secret from one scope (admin of that scope)")
    def delete_secret(name: str, repository: ScopePart = None, environment: ScopePart = None,
                      caller: Principal = caller_dep) -> Response:
        scope = _scope(repository, environment)
        require(caller, Permission.ADMIN, admin_scope(scope))
        with db.session(write=True) as session:
            if not secrets.delete_secret(session, name, scope, caller.audit_name):
                raise Refusal(status.HTTP_404_NOT_FOUND, f"no secret {name!r} in scope {scope.key}")
        return Response(status_code=204)
