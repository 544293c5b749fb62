"""Who may do what: roles map to permissions, bindings give roles on a scope.

viewer reads; operator reads and acts (sync, rollback, pause, resume, drift accept/heal); approver
reads and decides approvals; admin does everything and manages people. A binding on `*` counts for
every environment; one on `repository/environment` only there. Managing people and reading the
audit log and metrics are not about one environment, so they need a binding on `*`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dashboard.identity import Grant
from store import Role


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


@dataclass(frozen=True)
class Principal:
    """An authenticated user as one request sees them: groups, grants, and how they proved it."""

    name: str
    email: str | None
    groups: frozenset[str]
    grants: tuple[Grant, ...]
    via: str
    """`token` (Authorization: Bearer) or `session` (the dashboard's cookie)."""
    csrf: str | None = None
    """The session's CSRF token (None for bearer tokens, which browsers never send by themselves)."""

    def can(self, permission: Permission, scope: str = EVERYWHERE) -> bool:
        """Whether some grant on `*` or on `scope` includes `permission`."""
        return any(permission in ROLE_PERMISSIONS[grant.role] and grant.scope in (EVERYWHERE, scope)
                   for grant in self.grants)

    def is_subject(self, subject: str) -> bool:
        """Whether an approval policy entry (`user:NAME`, `group:NAME`) names this principal."""
        kind, _, name = subject.partition(":")
        return (kind == "user" and name == self.name) or (kind == "group" and name in self.groups)
