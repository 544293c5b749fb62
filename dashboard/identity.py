"""Users, groups, role bindings and API tokens: creating and finding them, shared by the API and the CLI.

Only rows are written here; who may do what with them is `reconciler.access`. Tokens are shown once
and stored as their SHA-256, so the store never holds anything that authenticates by itself.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.passwords import hash_password
from reconciler.access import HOST_ID_COLUMNS
from reconciler.access import Grant as Grant  # re-exported: the CLI and the API import them from here
from reconciler.access import grants_of as grants_of
from reconciler.access import groups_of as groups_of
from store import ApiToken, GitHost, Group, GroupMember, Role, RoleBinding, User, utcnow

NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
"""User and group names: what approval policies may name (`user:NAME`, `group:NAME`)."""
SCOPE = re.compile(r"^(\*|[A-Za-z0-9._-]{1,253}/[A-Za-z0-9._-]{1,253})$")
TOKEN_PREFIX = "tg_"
HOST_ID = re.compile(r"^[0-9]{1,20}$")


class IdentityError(ValueError):
    """A request about users, groups or bindings that cannot be honoured; `field` names the culprit."""

    def __init__(self, field: str, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.conflict = conflict


def check_name(field: str, name: str) -> str:
    if not NAME.match(name):
        raise IdentityError(field, f"{name!r} is not a valid name (letters, digits, . _ @ -; at most 64)")
    return name


def parse_role(text: str) -> Grant:
    """`ROLE` or `ROLE:SCOPE` (the CLI's `--role admin`, `--role operator:infra/staging`)."""
    role, _, scope = text.partition(":")
    try:
        word = Role(role)
    except ValueError:
        raise IdentityError("role", f"unknown role {role!r} (one of {', '.join(r.value for r in Role)})") from None
    scope = scope or "*"
    if not SCOPE.match(scope):
        raise IdentityError("scope", f"scope {scope!r} is neither * nor REPOSITORY/ENVIRONMENT")
    return Grant(word, scope)


def user_by_name(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).one_or_none()


def group_by_name(session: Session, name: str) -> Group | None:
    return session.scalars(select(Group).where(Group.name == name)).one_or_none()


def create_user(session: Session, name: str, *, email: str | None = None, password: str | None = None) -> User:
    check_name("name", name)
    if user_by_name(session, name) is not None:
        raise IdentityError("name", f"a user named {name!r} already exists", conflict=True)
    user = User(name=name, email=email or None, password_hash=hash_password(password) if password else None)
    session.add(user)
    session.flush()
    return user


def link_host_id(session: Session, user: User, host: GitHost, host_id: str | None) -> None:
    """Link `user` to their stable id on `host` (None or "" unlinks); one user per id and host."""
    column = HOST_ID_COLUMNS.get(host)
    field = f"{host.value}_id"
    if column is None:
        raise IdentityError("host", f"{host.value} has no user ids (one of github, gitlab, gitea)")
    if host_id and not HOST_ID.match(host_id):
        raise IdentityError(field, f"{host_id!r} is not a numeric {host.value} user id")
    if host_id:
        owner = session.scalars(select(User).where(getattr(User, column) == host_id)).one_or_none()
        if owner is not None and owner.id != user.id:
            raise IdentityError(field, f"{host.value} user id {host_id} is already linked to {owner.name}",
                                conflict=True)
    setattr(user, column, host_id or None)
    session.flush()


def set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)


def create_group(session: Session, name: str) -> Group:
    check_name("name", name)
    if group_by_name(session, name) is not None:
        raise IdentityError("name", f"a group named {name!r} already exists", conflict=True)
    group = Group(name=name)
    session.add(group)
    session.flush()
    return group


def ensure_group(session: Session, name: str) -> Group:
    return group_by_name(session, name) or create_group(session, name)


def add_member(session: Session, group: Group, user: User) -> None:
    if any(member.user_id == user.id for member in group.members):
        return
    session.add(GroupMember(group_id=group.id, user_id=user.id))
    session.flush()
    session.expire(group, ["members"])


def bind(session: Session, subject: str, grant: Grant) -> RoleBinding:
    """Give `subject` (`user:NAME` or `group:NAME`, which must exist) the grant's role on its scope.

    A binding to a name nobody holds yet would wait for whoever later creates a user or group of
    that name and hand them the role unnoticed, so it is refused."""
    kind, _, name = subject.partition(":")
    if kind not in ("user", "group") or not NAME.match(name):
        raise IdentityError("subject", f"subject {subject!r} must be user:NAME or group:NAME")
    if kind == "group" and group_by_name(session, name) is None:
        raise IdentityError("subject", f"no group {name!r}: add it first (`tidegate group add {name}`)")
    if kind == "user" and user_by_name(session, name) is None:
        raise IdentityError("subject", f"no user {name!r}: add it first (`tidegate user add {name}`)")
    found = session.scalars(select(RoleBinding).where(
        RoleBinding.subject == subject, RoleBinding.role == grant.role, RoleBinding.scope == grant.scope)).first()
    if found is not None:
        return found
    binding = RoleBinding(subject=subject, role=grant.role, scope=grant.scope)
    session.add(binding)
    session.flush()
    return binding


def delete_group(session: Session, group: Group) -> int:
    """Remove a group, its memberships and every role binding naming it; returns how many bindings went.

    A binding left behind would give its role to whoever later creates a group of the same name."""
    bindings = list(session.scalars(select(RoleBinding).where(RoleBinding.subject == f"group:{group.name}")))
    for binding in bindings:
        session.delete(binding)
    session.delete(group)
    session.flush()
    return len(bindings)


def admins_everywhere(session: Session) -> set[str]:
    """Enabled users who hold admin on `*`, through their own binding or a group they belong to.

    Counted from people, not binding rows: a binding of a deleted (or empty) group or of a disabled
    user makes nobody an admin."""
    direct = (select(User.name).join(RoleBinding, RoleBinding.subject == "user:" + User.name)
              .where(RoleBinding.role == Role.ADMIN, RoleBinding.scope == "*", User.disabled.is_(False)))
    grouped = (select(User.name).join(GroupMember, GroupMember.user_id == User.id).join(Group)
               .join(RoleBinding, RoleBinding.subject == "group:" + Group.name)
               .where(RoleBinding.role == Role.ADMIN, RoleBinding.scope == "*", User.disabled.is_(False)))
    return set(session.scalars(direct)) | set(session.scalars(grouped))


def ensure_an_admin_remains(session: Session, *, had_one: bool = True) -> None:
    """Refuse (after flushing the caller's change, so its transaction rolls back) a change that
    leaves nobody able to manage users; `had_one=False` lets a store that never had an admin (a
    fresh install being bootstrapped from the CLI) go on."""
    session.flush()
    if had_one and not admins_everywhere(session):
        raise IdentityError("subject", "this would leave nobody with admin on *: nobody could manage users "
                            "without it", conflict=True)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, user: User, name: str = "default") -> tuple[ApiToken, str]:
    """A new token for `user`: the row (hash and prefix only) and the token itself, to show once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=token_hash(token), prefix=token[:10])
    session.add(row)
    session.flush()
    return row, token


def active_token(session: Session, token: str) -> ApiToken | None:
    """The valid, unexpired token row of an enabled user, or None. Reads only: when a token was last
    used is noted in Redis (`dashboard.usage`), so that a GET never writes to the store."""
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).one_or_none()
    if row is None or row.user.disabled:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return row


def user_by_token(session: Session, token: str) -> User | None:
    """The enabled user a valid, unexpired token belongs to."""
    row = active_token(session, token)
    return row.user if row is not None else None
