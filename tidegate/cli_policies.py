"""`tidegate policy set|list|remove`: the admins' server-side approval policies, on this machine's store.

Composition only: each command calls `reconciler.policies`, the functions the API's
`/api/v1/approval-policies` endpoints use. Like `tidegate user`, it works on the data directory
(whoever runs it holds the store and its keys); every change is audited.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from reconciler import policies
from tidegate.client import os_login
from tidegate.settings import Settings
from tidegate.wiring import open_store

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
policy_app = typer.Typer(help="Server-side approval policies (enforced next to each repository's own).",
                         no_args_is_help=True)


def _fail(error: Exception) -> typer.Exit:
    field = getattr(error, "field", None)
    err.print(f"[red]error[/red]: {f'{field}: ' if field else ''}{error}", highlight=False)
    return typer.Exit(1)


def _scope(text: str) -> tuple[str, str]:
    repository, _, environment = text.partition("/")
    if not repository or not environment:
        raise _fail(policies.PolicyError("scope", f"{text!r} is not REPOSITORY/ENVIRONMENT"))
    return repository, environment


def _actor() -> str:
    return f"cli:{os_login() or 'unknown'}"


@policy_app.command("set")
def set_policy(
    scope: Annotated[str, typer.Argument(help="REPOSITORY/ENVIRONMENT")],
    approver: Annotated[list[str] | None, typer.Option("--approver", help="user:NAME or group:NAME (repeat).")] = None,
    min_approvals: Annotated[int, typer.Option("--min-approvals", help="Distinct approvers needed (1-10).")] = 1,
    required: Annotated[bool, typer.Option("--required/--not-required", help="Whether syncs wait for it.")] = True,
) -> None:
    """Set (or replace) the approval policy of one environment; the repository's own still applies too."""
    repository, environment = _scope(scope)
    store = open_store(Settings())
    try:
        policy = policies.parse_policy(required, min_approvals, approver or [])
        with store.database.session() as session:
            policies.set_server_policy(session, repository, environment, policy, _actor())
    except policies.PolicyError as error:
        raise _fail(error) from None
    who = ", ".join(policy.approvers) or "anyone with the approve permission"
    out.print(f"{scope}: {'required' if required else 'not required'}, {min_approvals} of {who}", markup=False)


@policy_app.command("list")
def list_policies() -> None:
    """List the server-side approval policies."""
    store = open_store(Settings())
    with store.database.session() as session:
        for row in policies.server_policies(session):
            out.print(f"{row.repository}/{row.environment}  required={str(row.required).lower()}  "
                      f"minApprovals={row.min_approvals}  approvers={','.join(row.approvers) or '-'}  "
                      f"by={row.updated_by}", markup=False)


@policy_app.command("remove")
def remove_policy(scope: Annotated[str, typer.Argument(help="REPOSITORY/ENVIRONMENT")]) -> None:
    """Remove an environment's server-side approval policy (the repository's own stays)."""
    repository, environment = _scope(scope)
    store = open_store(Settings())
    with store.database.session() as session:
        removed = policies.remove_server_policy(session, repository, environment, _actor())
    if not removed:
        raise _fail(ValueError(f"no server-side approval policy for {scope}"))
    out.print(f"{scope}: server-side approval policy removed", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
