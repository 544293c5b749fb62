"""CLI commands that bootstrap people: `tidegate user add|list`, `tidegate group add|remove`,
`tidegate token create`.

Composition only: each command opens the store from Settings and calls `dashboard.identity`, the
same functions the API's admin endpoints use. Passwords are read from stdin (never an argument,
which `ps` and shell history would show); a token is printed once and only its hash is stored.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import select

from dashboard.identity import (
    IdentityError,
    add_member,
    admins_everywhere,
    bind,
    create_group,
    create_user,
    delete_group,
    ensure_an_admin_remains,
    ensure_group,
    group_by_name,
    groups_of,
    issue_token,
    link_host_id,
    parse_role,
    user_by_name,
)
from store import GitHost, RoleBinding, User
from store.queries import record_audit
from tidegate import cli_policies
from tidegate.settings import Settings
from tidegate.wiring import open_store

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
user_app = typer.Typer(help="Dashboard and API users.", no_args_is_help=True)
group_app = typer.Typer(help="Groups (approval policies name them as group:NAME).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (Authorization: Bearer).", no_args_is_help=True)
ACTOR = "cli"


def _fail(error: Exception) -> typer.Exit:
    field = getattr(error, "field", None)
    err.print(f"[red]error[/red]: {f'{field}: ' if field else ''}{error}", highlight=False)
    return typer.Exit(1)


@user_app.command("add")
def add_user(
    name: Annotated[str, typer.Argument(help="Login name (also matched against commit authors).")],
    email: Annotated[str | None, typer.Option(help="Email (matched against commit authors too).")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Add to this group (created if new).")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="ROLE or ROLE:REPOSITORY/ENVIRONMENT; "
                                                   "viewer, operator, approver or admin.")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read a password from stdin (for the web UI); else tokens only.")] = False,
) -> None:
    """Add a user, with groups and role bindings."""
    password = _read_password() if password_stdin else None
    store = open_store(Settings())
    try:
        grants = [parse_role(text) for text in role or []]
        with store.database.session() as session:
            user = create_user(session, name, email=email, password=password)
            for group_name in group or []:
                add_member(session, ensure_group(session, group_name), user)
            for grant in grants:
                bind(session, f"user:{name}", grant)
            record_audit(session, actor=ACTOR, action="user.added", target=f"user:{name}",
                         details={"groups": group or [], "roles": [f"{g.role.value}:{g.scope}" for g in grants]})
    except IdentityError as error:
        raise _fail(error) from None
    roles = ", ".join(f"{g.role.value} on {g.scope}" for g in grants) or "no roles"
    out.print(f"added user {name} ({roles}{'; password set' if password else ''})", markup=False)


def _read_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise _fail(ValueError("the password must have at least 8 characters"))
    return password


@user_app.command("list")
def list_users() -> None:
    """List users with their groups and role bindings."""
    store = open_store(Settings())
    with store.database.session() as session:
        bindings = session.scalars(select(RoleBinding).order_by(RoleBinding.id)).all()
        for user in session.scalars(select(User).order_by(User.name)):
            groups = groups_of(session, user)
            subjects = {f"user:{user.name}", *(f"group:{g}" for g in groups)}
            roles = [f"{b.role.value}:{b.scope}" for b in bindings if b.subject in subjects]
            state = " (disabled)" if user.disabled else ""
            out.print(f"{user.name}{state}  email={user.email or '-'}  groups={','.join(groups) or '-'}"
                      f"  roles={','.join(roles) or '-'}", markup=False)


@user_app.command("link")
def link_user(
    name: Annotated[str, typer.Argument(help="The Tidegate user.")],
    github_id: Annotated[str | None, typer.Option("--github-id", help="GitHub user id (`gh api users/LOGIN -q .id`).")]
    = None,
    gitlab_id: Annotated[str | None, typer.Option("--gitlab-id", help="GitLab user id.")] = None,
    gitea_id: Annotated[str | None, typer.Option("--gitea-id", help="Gitea user id.")] = None,
) -> None:
    """Link a user to their Git host accounts by stable id: how PR reviews count as their approvals,
    and how commits the host says they wrote or pushed are recognised as theirs."""
    wanted = {GitHost.GITHUB: github_id, GitHost.GITLAB: gitlab_id, GitHost.GITEA: gitea_id}
    if all(value is None for value in wanted.values()):
        raise _fail(ValueError("name at least one of --github-id, --gitlab-id, --gitea-id"))
    store = open_store(Settings())
    try:
        with store.database.session() as session:
            user = user_by_name(session, name)
            if user is None:
                raise IdentityError("name", f"no user {name!r} (add one with `tidegate user add`)")
            for host, value in wanted.items():
                if value is not None:
                    link_host_id(session, user, host, value.strip())
            record_audit(session, actor=ACTOR, action="user.linked", target=f"user:{name}",
                         details={f"{host.value}_id": value for host, value in wanted.items() if value is not None})
    except IdentityError as error:
        raise _fail(error) from None
    links = ", ".join(f"{host.value} id {value or '(unlinked)'}" for host, value in wanted.items() if value is not None)
    out.print(f"linked {name}: {links}", markup=False)


@group_app.command("add")
def add_group(name: Annotated[str, typer.Argument(help="Group name, as approval policies spell it.")]) -> None:
    """Add a group."""
    store = open_store(Settings())
    try:
        with store.database.session() as session:
            create_group(session, name)
            record_audit(session, actor=ACTOR, action="group.added", target=f"group:{name}")
    except IdentityError as error:
        raise _fail(error) from None
    out.print(f"added group {name}", markup=False)


@group_app.command("remove")
def remove_group(name: Annotated[str, typer.Argument(help="The group to remove.")]) -> None:
    """Remove a group with its memberships and every role binding that names it."""
    store = open_store(Settings())
    try:
        with store.database.session(write=True) as session:
            group = group_by_name(session, name)
            if group is None:
                raise IdentityError("name", f"no group {name!r}")
            had_one = bool(admins_everywhere(session))
            removed = delete_group(session, group)
            ensure_an_admin_remains(session, had_one=had_one)
            record_audit(session, actor=ACTOR, action="group.removed", target=f"group:{name}",
                         details={"bindings_removed": removed})
    except IdentityError as error:
        raise _fail(error) from None
    out.print(f"removed group {name} and {removed} role binding(s)", markup=False)


@token_app.command("create")
def create_token(
    user: Annotated[str, typer.Option("--user", help="Whose token.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "default",
) -> None:
    """Create an API token; it is printed once (only its SHA-256 is stored)."""
    store = open_store(Settings())
    with store.database.session() as session:
        owner = user_by_name(session, user)
        if owner is None:
            raise _fail(ValueError(f"no user {user!r} (add one with `tidegate user add`)"))
        row, token = issue_token(session, owner, name)
        record_audit(session, actor=ACTOR, action="token.created", target=f"user:{user}",
                     details={"prefix": row.prefix, "name": name})
    err.print(f"token {name!r} for {user} (prefix {row.prefix}); it will not be shown again:", markup=False)
    out.print(token, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.add_typer(group_app, name="group")
    app.add_typer(token_app, name="token")
    cli_policies.register(app)  # people and their policies: both manage who may decide what
