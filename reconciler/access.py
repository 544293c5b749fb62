"""Who may do what: roles map to permissions, bindings give roles on a scope, a principal holds them.

viewer reads; operator reads and acts (sync, rollback, pause, resume, drift accept/heal); approver
reads and decides approvals; admin does everything and manages people. A binding on `*` counts for
every environment; one on `repository/environment` only there.

This lives in the reconciler, not the dashboard, because the approval decision
(`reconciler.approvals.may_approve`) needs it whichever door an approval comes through: the API,
the web form, the CLI and PR reviews all build a `Principal` here and hand it to the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store import GitHost, Group, GroupMember, Role, RoleBinding, User


class Permission(StrEnum):
    READ = "read"
    OPERATE = "operate"
    APPROVE = "approve"
    ADMIN = "admin"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({P.READ}),
    Role.OPERATOR: frozenset({P.READ, P.OPERATE}),
    Role.APPROVER: frozenset({P.READ, P.APPROVE}),
    Role.ADMIN: frozenset(P),
}
EVERYWHERE = "*"
HOST_ID_COLUMNS = {GitHost.GITHUB: "github_id", GitHost.GITLAB: "gitlab_id", GitHost.GITEA: "gitea_id"}
"""Which `users` column holds a user's stable id on each Git host."""


class AccessRefused(PermissionError):
    """Acting as someone else (or as nobody the store knows) is not allowed; the message says why."""


@dataclass(frozen=True)
class Grant:
    """`role` given by a binding on `scope` (`*` or `repository/environment`)."""

    role: Role
    scope: str


@dataclass(frozen=True)
class Principal:
    """An authenticated user as one request sees them: groups, grants, and how they proved it."""

    name: str
    email: str | None
    groups: frozenset[str]
    grants: tuple[Grant, ...]
    via: str
    """`token` (Authorization: Bearer), `session` (the dashboard's cookie), `local` (the in-process
    CLI) or `pr_review` (a reviewer matched by host id)."""
    csrf: str | None = None
    """The session's CSRF token (None for bearer tokens, which browsers never send by themselves)."""
    host_ids: tuple[tuple[GitHost, str], ...] = ()
    """The user's linked stable ids on Git hosts (`tidegate user link`)."""
    acting: str | None = None
    """How the audit log names who acted, when it was not this principal themself (`admin X as Y`)."""

    def can(self, permission: Permission, scope: str = EVERYWHERE) -> bool:
        """Whether some grant on `*` or on `scope` includes `permission`."""
        return any(permission in ROLE_PERMISSIONS[grant.role] and grant.scope in (EVERYWHERE, scope)
                   for grant in self.grants)

    @property
    def audit_name(self) -> str:
        return self.acting or self.name


def groups_of(session: Session, user: User) -> list[str]:
    query = select(Group.name).join(GroupMember).where(GroupMember.user_id == user.id).order_by(Group.name)
    return list(session.scalars(query))


def grants_of(session: Session, user: User, groups: list[str]) -> list[Grant]:
    subjects = [f"user:{user.name}", *(f"group:{g}" for g in groups)]
    rows = session.scalars(select(RoleBinding).where(RoleBinding.subject.in_(subjects)))
    return [Grant(row.role, row.scope) for row in rows]


def host_ids_of(user: User) -> tuple[tuple[GitHost, str], ...]:
    return tuple((host, str(getattr(user, column))) for host, column in HOST_ID_COLUMNS.items()
                 if getattr(user, column))


def principal_of(session: Session, user: User, via: str, csrf: str | None = None) -> Principal:
    """The principal of a stored user: their groups, the grants of their bindings, their host ids."""
    groups = groups_of(session, user)
    return Principal(user.name, user.email, frozenset(groups), tuple(grants_of(session, user, groups)), via, csrf,
                     host_ids_of(user))


def user_by_host_id(session: Session, host: GitHost, user_id: str) -> User | None:
    """The enabled user linked to `user_id` on `host` (logins are never used: they can be renamed)."""
    column = HOST_ID_COLUMNS.get(host)
    if column is None or not user_id:
        return None
    user = session.scalars(select(User).where(getattr(User, column) == user_id)).one_or_none()
    return None if user is None or user.disabled else user


def on_behalf_of(session: Session, caller: Principal, name: str | None) -> Principal:
    """The principal an action is taken as: the caller, or — for an admin on `*` only — another user.

    The result keeps the other user's own grants, groups and host ids (they must satisfy every rule
    themselves); only the audit log's name says who really acted: `admin X as Y`."""
    if name is None or name == caller.name:
        return caller
    if not caller.can(Permission.ADMIN):
        raise AccessRefused(f"{caller.name} may not act as {name}: only an admin (a binding on *) may")
    user = session.scalars(select(User).where(User.name == name)).one_or_none()
    if user is None or user.disabled:
        raise AccessRefused(f"no enabled user {name!r} to act as")
    return replace(principal_of(session, user, caller.via), acting=f"admin {caller.name} as {name}")


def has_users(session: Session) -> bool:
    """Whether anyone is configured: without users the local CLI is in single-user mode."""
    return bool(session.scalar(select(func.count()).select_from(User)))


def local_principal(session: Session, login: str, as_user: str | None) -> Principal:
    """Who the in-process CLI acts as.

    Single-user mode (no users in the store): the person at the terminal holds every permission and
    may name themself with `--as` (audited `local LOGIN as NAME`). Once users exist, the CLI is the
    user named like the OS login, and `--as` needs that user to be an admin on `*`."""
    if not has_users(session):
        name = as_user or login
        acting = f"local {login} as {name}" if as_user and as_user != login else None
        return Principal(name, None, frozenset(), (Grant(Role.ADMIN, EVERYWHERE),), "local", acting=acting)
    me = session.scalars(select(User).where(User.name == login)).one_or_none()
    if me is None or me.disabled:
        raise AccessRefused(f"users are configured, and there is no enabled Tidegate user named like your login "
                            f"{login!r}: add one (`tidegate user add {login} --role …`) or use TIDEGATE_SERVER "
                            "with an API token")
    return on_behalf_of(session, principal_of(session, me, "local"), as_user)
