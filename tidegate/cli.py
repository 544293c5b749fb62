"""The `tidegate` command line. Composition only: each command wires settings to a domain call."""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from reconciler.desired import DesiredState, check_checkout
from reconciler.runtime import QueueUnavailable
from repo_schema.export import json_schema
from repo_schema.issues import Issue
from store import MigrationError, SecretKeyError
from tidegate.cli_ansible import register as register_ansible
from tidegate.cli_diff import register as register_diff
from tidegate.cli_drift import register as register_drift
from tidegate.cli_kube import register as register_kube
from tidegate.cli_logs import register as register_logs
from tidegate.cli_reconcile import register as register_reconcile
from tidegate.cli_secrets import register as register_secrets
from tidegate.cli_terraform import register as register_terraform
from tidegate.cli_users import register as register_users
from tidegate.extras import SandboxMissing
from tidegate.help_format import quiet_flags
from tidegate.sandbox_host import register as register_pulls
from tidegate.serve import serve
from tidegate.settings import Settings
from tidegate.up import up
from tidegate.wiring import Store, install_local_seal, open_store

quiet_flags()
app = typer.Typer(
    name="tidegate",
    help="GitOps reconciler for whole environments: Terraform -> Ansible -> Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
sandbox_app = typer.Typer(
    help="Local stand-ins (moto AWS, SSH nodes, Kubernetes API) for the demo and tests.", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Stage(StrEnum):
    infrastructure = "infrastructure"
    configuration = "configuration"
    workloads = "workloads"


def local_seal(settings: Settings) -> None:
    """Seal repository code when this machine can; else say (on stderr) that it runs unsealed."""
    status = install_local_seal(settings)
    if not status.sealed:
        err.print(f"note: repository code runs unsealed, as you ({status.reason})", markup=False)


def _report(issues: list[Issue]) -> None:
    for issue in issues:
        err.print(str(issue), markup=False)
    err.print(f"[red]{len(issues)} error{'s' if len(issues) != 1 else ''}[/red]")


@app.command()
def validate(path: Annotated[Path, typer.Argument(help="A config repo checkout.")]) -> None:
    """Check a config repo: every document, cross-reference, rendering and manifest; all errors at once."""
    settings = Settings()
    local_seal(settings)
    result = check_checkout(path, cache_dir=settings.render_cache_dir)
    if result.issues:
        _report(result.issues)
        raise typer.Exit(1)
    manifests = sum(len(state.manifests()) for state in result.environments.values())
    out.print(f"[green]ok[/green] {path}: {len(result.environments)} environments "
              f"({', '.join(result.environments)}), {manifests} manifests")


@app.command()
def render(
    repo: Annotated[Path, typer.Option("--repo", help="A config repo checkout.")],
    env: Annotated[str, typer.Option("--env", help="Environment name.")],
    stage: Annotated[Stage, typer.Option("--stage", help="Which stage's inputs to print.")] = Stage.workloads,
) -> None:
    """Print what one environment's stage gets: manifests, Terraform variables or Ansible extra vars."""
    settings = Settings()
    local_seal(settings)
    result = check_checkout(repo, cache_dir=settings.render_cache_dir, only=env)
    if result.issues:
        _report(result.issues)
        raise typer.Exit(1)
    if env not in result.environments:
        known = ", ".join(result.known) or "none"
        err.print(f"unknown environment {env!r} (known: {known})", markup=False)
        raise typer.Exit(2)
    sys.stdout.write(_stage_text(result.environments[env], stage))


def _stage_text(state: DesiredState, stage: Stage) -> str:
    if stage is Stage.workloads:
        return state.manifests_yaml()
    if stage is Stage.infrastructure:
        if state.tfvars is None:
            return "# no infrastructure stage\n"
        return f"# {state.infrastructure_path}/tidegate.auto.tfvars.json\n{state.tfvars}"
    if state.extra_vars is None:
        return "# no configuration stage\n"
    return f"# extra vars for {state.playbook}\n{state.extra_vars}"


@app.command()
def init(
    wait: Annotated[float, typer.Option(
        "--wait", min=0, metavar="SECONDS",
        help="Wait up to this long for the database to accept connections (a PostgreSQL started "
             "beside Tidegate, as in a Docker stack, takes a while); 0 fails at once.")] = 0.0,
) -> None:
    """Prepare the data directory: a secret key (mode 0600) and the database at the latest schema."""
    settings = Settings()
    try:
        store = _open_when_reachable(settings, wait)
    except (SecretKeyError, MigrationError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    out.print(f"data directory  {settings.data_dir}", markup=False)
    out.print(f"database        {store.database.url.render_as_string(hide_password=True)}", markup=False)
    out.print(f"secret key      {store.key_source}", markup=False)
    store.database.dispose()


def _open_when_reachable(settings: Settings, wait: float) -> Store:
    """open_store, tried again every 2 s while the database refuses connections, for `wait` seconds;
    says once per reason that it waits, and fails naming the database (never its password)."""
    deadline, said = time.monotonic() + wait, ""
    while True:
        try:
            return open_store(settings)
        except OperationalError as error:
            reason = str(error.orig or error).strip().splitlines()[0]
            where = make_url(settings.database_url or "sqlite://").render_as_string(hide_password=True)
            left = deadline - time.monotonic()
            if left <= 0:
                err.print(f"[red]error:[/red] cannot reach the database {escape(where)}: {escape(reason)}")
                raise typer.Exit(1) from None
            if reason != said:
                err.print(f"waiting up to {left:.0f} s for the database {where}: {reason}", markup=False)
                said = reason
            time.sleep(min(2.0, left))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config repo documents (Environment, RepositoryConfig)."""
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


register_terraform(app, sandbox_app)
register_kube(sandbox_app)
register_ansible(sandbox_app)
register_pulls(sandbox_app)
register_reconcile(app)
register_drift(app)
register_logs(app)
register_diff(app)
register_users(app)
register_secrets(app)
app.command("up")(up)
app.command("serve")(serve)


def main() -> None:
    """Console script entry point: a missing extra or a broker outage is a message, not a traceback."""
    try:
        app()
    except SandboxMissing as missing:
        err.print(f"[red]error:[/red] {escape(str(missing))}")
        sys.exit(2)
    except QueueUnavailable as unavailable:
        err.print(f"[red]error:[/red] {escape(str(unavailable))}; nothing more was done, try again shortly")
        sys.exit(3)
