"""The admin part of the API: users, their tokens, groups and role bindings (under /api/v1).

Only admins (a binding on `*`) manage people, except that anyone may create and revoke their own
tokens. The last admin binding on `*` cannot be removed, nor can admins remove or disable
themselves: either would leave nobody able to manage users. Every change is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response, status
from sqlalchemy import select

from dashboard import schemas as s
from dashboard import views
from dashboard.access import Permission, Principal
from dashboard.actions import Refusal, require
from dashboard.context import Context
from dashboard.identity import (
    Grant,
    IdentityError,
    add_member,
    bind,
    create_group,
    create_user,
    ensure_an_admin_remains,
    ensure_group,
    group_by_name,
    issue_token,
    link_host_id,
    set_password,
    user_by_name,
)
from dashboard.identity import (
    delete_group as delete_group_rows,
)
from store import ApiToken, GitHost, Group, GroupMember, RoleBinding, User
from store.queries import record_audit

Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _identity_refusal(error: IdentityError) -> Refusal:
    if error.conflict:
        return Refusal(status.HTTP_409_CONFLICT, str(error))
    return Refusal(422, str(error), field=error.field)


def add_people_routes(router: APIRouter, ctx: Context, caller_dep: Any) -> None:
    db = ctx.services.database

    def admin(caller: Principal) -> None:
        require(caller, Permission.ADMIN)

    def found_user(session: Any, name: str) -> User:
        row = user_by_name(session, name)
        if row is None:
            raise Refusal(status.HTTP_404_NOT_FOUND, f"no user {name!r}")
        return row

    def found_group(session: Any, name: str) -> Group:
        row = group_by_name(session, name)
        if row is None:
            raise Refusal(status.HTTP_404_NOT_FOUND, f"no group {name!r}")
        return row

    def audit(session: Any, caller: Principal, action: str, target: str, **details: Any) -> None:
        record_audit(session, actor=caller.name, action=action, target=target, details=details)

    def shown(session: Any, row: User) -> s.UserOut:
        return views.user(session, row, ctx.usage.last_used(token.id for token in row.tokens))

    @router.get("/users", tags=["users"], summary="Users (admin)")
    def users(caller: Principal = caller_dep) -> list[s.UserOut]:
        admin(caller)
        with db.session() as session:
            return [shown(session, u) for u in session.scalars(select(User).order_by(User.name))]

    @router.post("/users", tags=["users"], status_code=201, summary="Add a user (admin)")
    def add_user(body: s.UserIn, caller: Principal = caller_dep) -> s.UserOut:
        admin(caller)
        try:
            with db.session(write=True) as session:
                row = create_user(session, body.name, email=body.email, password=body.password)
                for group in body.groups:
                    add_member(session, ensure_group(session, group), row)
                audit(session, caller, "user.added", f"user:{row.name}", groups=body.groups)
                session.flush()
                session.refresh(row)
                return shown(session, row)
        except IdentityError as error:
            raise _identity_refusal(error) from None

    @router.get("/users/{name}", tags=["users"], summary="A user (admin)")
    def get_user(name: str, caller: Principal = caller_dep) -> s.UserOut:
        admin(caller)
        with db.session() as session:
            return shown(session, found_user(session, name))

    @router.patch("/users/{name}", tags=["users"],
                  summary="Change a user's email, password, disabled flag or Git host ids (admin)")
    def patch_user(name: str, body: s.UserPatch, caller: Principal = caller_dep) -> s.UserOut:
        admin(caller)
        with db.session(write=True) as session:
            row = found_user(session, name)
            if body.disabled and row.name == caller.name:
                raise Refusal(status.HTTP_409_CONFLICT, "you cannot disable yourself")
            if body.email is not None:
                row.email = body.email
            if body.password is not None:
                set_password(row, body.password)
            if body.disabled is not None:
                row.disabled = body.disabled
            try:
                for host in (GitHost.GITHUB, GitHost.GITLAB, GitHost.GITEA):
                    if f"{host.value}_id" in body.model_fields_set:
                        link_host_id(session, row, host, getattr(body, f"{host.value}_id"))
            except IdentityError as error:
                raise _identity_refusal(error) from None
            audit(session, caller, "user.changed", f"user:{row.name}",
                  fields=sorted(body.model_dump(exclude_unset=True, exclude={"password"}))
                  + (["password"] if body.password else []))
            return shown(session, row)

    @router.delete("/users/{name}", tags=["users"], status_code=204, summary="Remove a user (admin)")
    def delete_user(name: str, caller: Principal = caller_dep) -> Response:
        admin(caller)
        with db.session(write=True) as session:
            row = found_user(session, name)
            if row.name == caller.name:
                raise Refusal(status.HTTP_409_CONFLICT, "you cannot remove yourself")
            session.delete(row)
            for binding in session.scalars(select(RoleBinding).where(RoleBinding.subject == f"user:{name}")):
                session.delete(binding)
            audit(session, caller, "user.removed", f"user:{name}")
        return Response(status_code=204)

    @router.post("/users/{name}/tokens", tags=["users"], status_code=201,
                 summary="Create an API token (admin, or the user themself); shown once")
    def add_token(name: str, caller: Principal = caller_dep,
                  body: Annotated[s.TokenIn | None, Body()] = None) -> s.TokenCreated:
        if name != caller.name:
            admin(caller)
        with db.session(write=True) as session:
            row, token = issue_token(session, found_user(session, name), body.name if body else "default")
            audit(session, caller, "token.created", f"user:{name}", prefix=row.prefix, name=row.name)
            return s.TokenCreated(name=row.name, prefix=row.prefix, token=token)

    @router.delete("/users/{name}/tokens/{prefix}", tags=["users"], status_code=204,
                   summary="Revoke an API token by its prefix (admin, or the user themself)")
    def revoke_token(name: str, prefix: str, caller: Principal = caller_dep) -> Response:
        if name != caller.name:
            admin(caller)
        with db.session(write=True) as session:
            user = found_user(session, name)
            rows = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.prefix == prefix))
            removed = []
            for row in rows:
                session.delete(row)
                removed.append(row.id)
            if not removed:
                raise Refusal(status.HTTP_404_NOT_FOUND, f"{name} has no token {prefix!r}")
            audit(session, caller, "token.revoked", f"user:{name}", prefix=prefix)
        ctx.usage.forget(removed)
        return Response(status_code=204)

    @router.get("/groups", tags=["groups"], summary="Groups and their members (admin)")
    def groups(caller: Principal = caller_dep) -> list[s.GroupOut]:
        admin(caller)
        with db.session() as session:
            return [s.GroupOut(name=g.name, members=sorted(m.user.name for m in g.members))
                    for g in session.scalars(select(Group).order_by(Group.name))]

    @router.post("/groups", tags=["groups"], status_code=201, summary="Add a group (admin)")
    def add_group(body: s.GroupIn, caller: Principal = caller_dep) -> s.GroupOut:
        admin(caller)
        try:
            with db.session(write=True) as session:
                create_group(session, body.name)
                audit(session, caller, "group.added", f"group:{body.name}")
        except IdentityError as error:
            raise _identity_refusal(error) from None
        return s.GroupOut(name=body.name, members=[])

    @router.delete("/groups/{name}", tags=["groups"], status_code=204, summary="Remove a group (admin)")
    def delete_group(name: str, caller: Principal = caller_dep) -> Response:
        admin(caller)
        try:
            with db.session(write=True) as session:
                removed = delete_group_rows(session, found_group(session, name))
                ensure_an_admin_remains(session)
                audit(session, caller, "group.removed", f"group:{name}", bindings_removed=removed)
        except IdentityError as error:
            raise _identity_refusal(error) from None
        return Response(status_code=204)

    @router.put("/groups/{name}/members/{user}", tags=["groups"], summary="Add a user to a group (admin)")
    def add_to_group(name: str, user: str, caller: Principal = caller_dep) -> s.GroupOut:
        admin(caller)
        with db.session(write=True) as session:
            group = found_group(session, name)
            add_member(session, group, found_user(session, user))
            audit(session, caller, "group.member_added", f"group:{name}", user=user)
            return s.GroupOut(name=group.name, members=sorted(m.user.name for m in group.members))

    @router.delete("/groups/{name}/members/{user}", tags=["groups"], summary="Remove a user from a group (admin)")
    def remove_from_group(name: str, user: str, caller: Principal = caller_dep) -> s.GroupOut:
        admin(caller)
        with db.session(write=True) as session:
            group = found_group(session, name)
            member = found_user(session, user)
            for row in session.scalars(select(GroupMember).where(GroupMember.group_id == group.id,
                                                                 GroupMember.user_id == member.id)):
                session.delete(row)
            session.flush()
            session.expire(group, ["members"])
            try:
                ensure_an_admin_remains(session)
            except IdentityError as error:
                raise _identity_refusal(error) from None
            audit(session, caller, "group.member_removed", f"group:{name}", user=user)
            return s.GroupOut(name=group.name, members=sorted(m.user.name for m in group.members))

    @router.get("/role-bindings", tags=["role bindings"], summary="Role bindings (admin)")
    def bindings(caller: Principal = caller_dep) -> list[s.RoleBindingOut]:
        admin(caller)
        with db.session() as session:
            return [s.RoleBindingOut.model_validate(b)
                    for b in session.scalars(select(RoleBinding).order_by(RoleBinding.subject, RoleBinding.id))]

    @router.post("/role-bindings", tags=["role bindings"], status_code=201,
                 summary="Give a user or group a role, everywhere (*) or on one REPOSITORY/ENVIRONMENT (admin)")
    def add_binding(body: s.RoleBindingIn, caller: Principal = caller_dep) -> s.RoleBindingOut:
        admin(caller)
        try:
            with db.session(write=True) as session:
                row = bind(session, body.subject, Grant(body.role, body.scope))
                audit(session, caller, "role.bound", body.subject, role=body.role.value, scope=body.scope)
                return s.RoleBindingOut.model_validate(row)
        except IdentityError as error:
            raise _identity_refusal(error) from None

    @router.delete("/role-bindings/{binding_id}", tags=["role bindings"], status_code=204,
                   summary="Remove a role binding (admin; never the last admin binding on *)")
    def delete_binding(binding_id: Id, caller: Principal = caller_dep) -> Response:
        admin(caller)
        with db.session(write=True) as session:
            row = session.get(RoleBinding, binding_id)
            if row is None:
                raise Refusal(status.HTTP_404_NOT_FOUND, f"no role binding {binding_id}")
            session.delete(row)
            try:
                ensure_an_admin_remains(session)  # counts people: bindings of deleted groups make no admin
            except IdentityError as error:
                raise Refusal(status.HTTP_409_CONFLICT, "this is the last admin binding on * that makes someone "
                              "an admin: nobody could manage users without it") from error
            audit(session, caller, "role.unbound", row.subject, role=row.role.value, scope=row.scope)
        return Response(status_code=204)
