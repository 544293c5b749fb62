"""CLI commands of the infrastructure stage: `tidegate plan` and `tidegate sandbox aws`.

Composition only: settings, the repo loader and (with `--sandbox`) the sandbox's endpoint map are
wired into a StageContext for `providers.terraform`. Every sandbox substitution is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from providers.ansible import AnsibleStageError
from providers.kubernetes.client import KubeError
from providers.kubernetes.stage import KubernetesStage, WorkloadsInputs
from providers.kubernetes.stage import StageError as KubeStageError
from providers.stage import Action, StageContext, StagePlan, StageResult
from providers.terraform import TerraformError, TerraformSpec, TerraformStage
from reconciler.contexts import infrastructure_spec, workloads_inputs
from reconciler.desired import check_checkout
from repo_schema.issues import InvalidRepo
from repo_schema.loader import LoadedRepo, load_repo
from sandbox.aws import DEFAULT_BUCKET, DEFAULT_LOCK_TABLE, DEFAULT_REGION, AwsEndpoints, AwsSandbox
from tidegate.cli_ansible import format_plan, sandbox_plan
from tidegate.extras import require_sandbox
from tidegate.settings import Settings
from tidegate.wiring import install_local_seal, terraform_plugin_dirs

if TYPE_CHECKING:
    from sandbox.kube import KubeSandbox

log = logging.getLogger("tidegate.cli")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# AWS settings an operator's shell may hold for real accounts; passed on explicitly, never the
# whole environment.
AWS_PASSTHROUGH = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
)
_SYMBOL = {Action.create: "+", Action.update: "~", Action.replace: "-/+", Action.delete: "-", Action.no_op: " "}
_COLOUR = {Action.create: "green", Action.update: "yellow", Action.replace: "magenta", Action.delete: "red",
           Action.no_op: "dim"}


class PlanStage(StrEnum):
    infrastructure = "infrastructure"
    configuration = "configuration"
    workloads = "workloads"


def plan(
    env: Annotated[str, typer.Argument(help="Environment name.")],
    repo: Annotated[Path, typer.Option("--repo", help="A config repo checkout.")],
    stage: Annotated[PlanStage, typer.Option("--stage", help="Which stage to plan.")] = PlanStage.infrastructure,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Run against local stand-ins (moto for AWS).")] = False,
    show_diff: Annotated[bool, typer.Option("--diff/--no-diff", help="Print each change's diff.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream terraform's progress.")] = False,
) -> None:
    """Compute and print one environment's plan inline (no workers): every address and its action."""
    if sandbox:
        require_sandbox("tidegate plan --sandbox")
    settings = Settings()
    status = install_local_seal(settings)
    if not status.sealed:
        err.print(f"note: repository code runs unsealed, as you ({status.reason})", markup=False)
    loaded = _load(repo, env)
    if stage is PlanStage.configuration:
        _plan_configuration(loaded, env, settings, sandbox=sandbox, quiet=quiet)
        return
    if stage is PlanStage.workloads:
        _plan_workloads(loaded, env, settings, sandbox=sandbox, quiet=quiet, show_diff=show_diff)
        return
    if loaded.environments[env].spec.infrastructure is None:
        out.print(f"{env}: no infrastructure stage", markup=False)
        return
    terraform = TerraformStage(on_line=None if quiet else _progress)
    started = time.monotonic()
    try:
        if sandbox:
            backend = loaded.backend(env)
            with AwsSandbox(bucket=(backend.bucket if backend else None) or DEFAULT_BUCKET,
                            lock_table=(backend.dynamodb_table if backend else None) or DEFAULT_LOCK_TABLE,
                            region=(backend.region if backend else None) or DEFAULT_REGION) as aws:
                result = terraform.plan(infrastructure_context(loaded, env, settings, aws))
        else:
            result = terraform.plan(infrastructure_context(loaded, env, settings))
    except (TerraformError, ValueError) as error:
        err.print(f"[red]error[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    print_plan(env, result, show_diff=show_diff, seconds=time.monotonic() - started)


def _plan_configuration(loaded: LoadedRepo, env: str, settings: Settings, *, sandbox: bool, quiet: bool) -> None:
    """Plan Ansible against real Terraform outputs: in sandbox mode the infrastructure is first
    applied into a throwaway moto, and its `nodes` output is mapped onto sandbox SSH nodes."""
    spec = loaded.environments[env].spec
    if spec.configuration is None:
        out.print(f"{env}: no configuration stage", markup=False)
        return
    if not sandbox:
        err.print("planning the configuration stage needs the infrastructure's recorded outputs, which come "
                  "with the reconciler; use --sandbox to plan against throwaway stand-ins", markup=False)
        raise typer.Exit(2)
    output_name = spec.configuration.inventory_from.terraform_output
    if output_name is None:
        err.print(f"{env}: the inventory is {spec.configuration.inventory_from.describe}, not a Terraform output; "
                  "the sandbox plan needs Terraform's nodes", markup=False)
        raise typer.Exit(2)
    backend = loaded.backend(env)
    started = time.monotonic()
    try:
        with AwsSandbox(bucket=(backend.bucket if backend else None) or DEFAULT_BUCKET,
                        lock_table=(backend.dynamodb_table if backend else None) or DEFAULT_LOCK_TABLE,
                        region=(backend.region if backend else None) or DEFAULT_REGION) as aws:
            err.print(f"sandbox: applying {env}'s infrastructure first, for its `{output_name}` output", markup=False)
            applied = apply_infrastructure_into_sandbox(loaded, env, settings, aws,
                                                        TerraformStage(on_line=None if quiet else _progress))
        nodes = applied.outputs.get(output_name)
        if not isinstance(nodes, list):
            raise TerraformError(f"output {output_name!r} is not a list of nodes: {type(nodes).__name__}")
        artifacts = settings.data_dir / "runs" / "sandbox" / repo_key(loaded.root) / "ansible"
        result = sandbox_plan(loaded, env, artifacts, nodes_output=nodes)
    except (TerraformError, AnsibleStageError, ValueError) as error:
        err.print(f"[red]error[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    out.print(format_plan(result), end="", markup=False)
    out.print(f"{env} configuration: {result.summary()} in {time.monotonic() - started:.1f}s", markup=False)


def _plan_workloads(loaded: LoadedRepo, env: str, settings: Settings, *, sandbox: bool, quiet: bool,
                    show_diff: bool) -> None:
    """Plan the workloads against the Kubernetes API emulator: the environment's infrastructure is
    first applied into a throwaway moto for its real kubeconfig output, whose server, CA and token
    are then pointed at the emulator (each substitution logged)."""
    spec = loaded.environments[env].spec
    if not spec.workloads:
        out.print(f"{env}: no workloads stage", markup=False)
        return
    if not sandbox:
        err.print("planning the workloads stage needs the cluster's kubeconfig (a recorded Terraform output or a "
                  "secret), which comes with the reconciler; use --sandbox to plan against throwaway stand-ins",
                  markup=False)
        raise typer.Exit(2)
    manifests = _rendered_manifests(loaded, env, settings)  # before the slow apply: fail fast on bad input
    started = time.monotonic()
    try:
        from sandbox.kube import KubeSandbox  # the [sandbox] extra (aiohttp): required above

        kubeconfig = _sandbox_kubeconfig_source(loaded, env, settings, quiet=quiet)
        with KubeSandbox(controller_delay=None) as kube:
            context = _workloads_context(loaded, env, settings, manifests, _point_at_emulator(kubeconfig, kube))
            result = KubernetesStage().plan(context)
    except (TerraformError, KubeStageError, KubeError, ValueError) as error:
        err.print(f"[red]error[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    _print_workloads_plan(env, result, show_diff=show_diff, seconds=time.monotonic() - started)


def _rendered_manifests(loaded: LoadedRepo, env: str, settings: Settings) -> dict[str, list[Any]]:
    """Workload name → its rendered manifests, as `tidegate render` renders them; issues exit 1."""
    checked = check_checkout(loaded.root, cache_dir=settings.render_cache_dir, only=env)
    if checked.issues or env not in checked.environments:
        for issue in checked.issues:
            err.print(str(issue), markup=False)
        err.print(f"[red]{len(checked.issues)} errors[/red] rendering {escape(env)}'s workloads")
        raise typer.Exit(1)
    return {name: list(rendered.manifests) for name, rendered in checked.environments[env].workloads.items()}


def _sandbox_kubeconfig_source(loaded: LoadedRepo, env: str, settings: Settings, *, quiet: bool) -> dict[str, Any]:
    """The kubeconfig the environment names, produced for real where it is a Terraform output
    (applied into a throwaway moto); {} when it names a secret or nothing (the emulator's is used)."""
    spec = loaded.environments[env].spec
    output_name = spec.cluster.kubeconfig_from.terraform_output if spec.cluster is not None else None
    if output_name is None or spec.infrastructure is None:
        log.info("sandbox: %s names no kubeconfig Terraform output; using the emulator's kubeconfig", env)
        err.print("[dim]sandbox: no kubeconfig Terraform output -> the emulator's kubeconfig[/dim]")
        return {}
    backend = loaded.backend(env)
    with AwsSandbox(bucket=(backend.bucket if backend else None) or DEFAULT_BUCKET,
                    lock_table=(backend.dynamodb_table if backend else None) or DEFAULT_LOCK_TABLE,
                    region=(backend.region if backend else None) or DEFAULT_REGION) as aws:
        err.print(f"sandbox: applying {env}'s infrastructure first, for its `{output_name}` output", markup=False)
        applied = apply_infrastructure_into_sandbox(loaded, env, settings, aws,
                                                    TerraformStage(on_line=None if quiet else _progress))
    value = applied.outputs.get(output_name)
    parsed = yaml.safe_load(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise TerraformError(f"output {output_name!r} is not a kubeconfig (YAML mapping): {type(parsed).__name__}")
    return parsed


def _point_at_emulator(kubeconfig: dict[str, Any], kube: KubeSandbox) -> str:
    """The kubeconfig with every cluster's server and CA and every user's credentials replaced by
    the emulator's; each substitution is logged (never a credential's value)."""
    from sandbox.kube.runner import kubeconfig as kube_kubeconfig

    emulator = kube_kubeconfig(kube.url, kube.token, kube.certs.ca_pem if kube.certs is not None else None)
    if not kubeconfig.get("clusters"):
        return yaml.safe_dump(emulator)
    ca = emulator["clusters"][0]["cluster"].get("certificate-authority-data")
    for entry in kubeconfig.get("clusters") or []:
        cluster = entry.setdefault("cluster", {})
        _substitute(f"cluster {entry.get('name')}: server {cluster.get('server')}", kube.url)
        cluster["server"] = kube.url
        cluster.pop("certificate-authority", None)
        cluster.pop("insecure-skip-tls-verify", None)
        _substitute(f"cluster {entry.get('name')}: certificate authority", "the emulator's CA")
        cluster["certificate-authority-data"] = ca
    for entry in kubeconfig.get("users") or []:
        _substitute(f"user {entry.get('name')}: credentials", "the emulator's bearer token")
        entry["user"] = {"token": kube.token}
    return yaml.safe_dump(kubeconfig)


def _substitute(what: str, replacement: str) -> None:
    log.info("sandbox: kubeconfig %s -> %s", what, replacement)
    err.print(f"[dim]sandbox: kubeconfig {escape(what)} -> {escape(replacement)}[/dim]")


def _workloads_context(loaded: LoadedRepo, env: str, settings: Settings, manifests: dict[str, list[Any]],
                       kubeconfig: str) -> StageContext[WorkloadsInputs]:
    """The workloads StageContext: the stage's typed input as the reconciler builds it (rendered
    manifests, each workload's settings), and the cluster's kubeconfig content."""
    area = settings.data_dir / "runs" / "sandbox" / repo_key(loaded.root) / "kubernetes"
    return StageContext(environment=env, revision="working-tree", workdir=loaded.root, artifacts=area,
                        spec=workloads_inputs(loaded, env, manifests), credentials={"kubeconfig": kubeconfig})


def _print_workloads_plan(env: str, result: StagePlan, *, show_diff: bool, seconds: float) -> None:
    for change in result.changes:
        colour = _COLOUR[change.action]
        out.print(f"[{colour}]{_SYMBOL[change.action]:>3} {change.action.value:<8}[/{colour}] {escape(change.address)}")
        if show_diff and change.action is not Action.no_op and change.diff:
            for line in change.diff.splitlines():
                out.print(f"        {escape(line)}", style="dim")
    verdict = "changes" if result.has_changes else "no changes"
    out.print(f"{env} workloads: {verdict} ({result.summary()}, {len(result.changes)} objects) in {seconds:.1f}s",
              markup=False)
    out.print(f"digest {result.digest}", markup=False)


def infrastructure_context(repo: LoadedRepo, env: str, settings: Settings,
                           aws: AwsEndpoints | None = None) -> StageContext[TerraformSpec]:
    """The infrastructure StageContext of one environment; with `aws`, pointed at the sandbox."""
    spec = infrastructure_spec(repo, env)
    area = settings.data_dir / "runs" / ("sandbox" if aws else "terraform") / repo_key(repo.root)
    stage_settings: dict[str, Any] = {
        "terraform_plugin_dirs": terraform_plugin_dirs(settings),
        "terraform_workspaces": str(area / "workspaces"),
    }
    credentials = {name: os.environ[name] for name in AWS_PASSTHROUGH if name in os.environ}
    if aws is not None:
        stage_settings.update(aws.stage_settings())
        credentials = aws.stage_credentials()
        log.info("sandbox: AWS provider endpoints for %s -> %s", ", ".join(aws.services), aws.url)
        log.info("sandbox: S3 backend bucket %s and DynamoDB lock table %s -> %s", aws.bucket, aws.lock_table,
                 aws.url)
        log.info("sandbox: AWS credentials -> the sandbox's fake keys")
        err.print(f"[dim]sandbox: AWS endpoints, backend and credentials -> {aws.url}[/dim]")
    return StageContext(
        environment=env,
        revision="working-tree",
        workdir=repo.root,
        artifacts=area / "plans",
        spec=spec,
        settings=stage_settings,
        credentials=credentials,
    )


def apply_infrastructure_into_sandbox(repo: LoadedRepo, env: str, settings: Settings, aws: AwsEndpoints,
                                      terraform: TerraformStage | None = None) -> StageResult:
    """Plan and apply the environment's Terraform into the throwaway sandbox, so that a later stage
    (configuration, workloads) can be planned against real outputs. Raises TerraformError."""
    stage = terraform or TerraformStage()
    context = infrastructure_context(repo, env, settings, aws)
    result = stage.apply(context, stage.plan(context))
    if not result.succeeded:
        raise TerraformError(f"applying {env}'s infrastructure into the sandbox failed: {result.error}")
    return result


def repo_key(root: Path) -> str:
    """One run area per checkout, so two repos with an environment of the same name never share a
    workspace (nor, with a local backend, a state file)."""
    resolved = root.resolve()
    return f"{resolved.name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:10]}"


def print_plan(env: str, result: StagePlan, *, show_diff: bool = True, seconds: float | None = None) -> None:
    for change in result.changes:
        colour = _COLOUR[change.action]
        out.print(f"[{colour}]{_SYMBOL[change.action]:>3} {change.action.value:<8}[/{colour}] {escape(change.address)}")
        if show_diff and change.action is not Action.no_op and change.diff:
            for line in change.diff.splitlines():
                out.print(f"        {escape(line)}", style="dim")
    verdict = "changes" if result.has_changes else "no changes"
    timing = f" in {seconds:.1f}s" if seconds is not None else ""
    out.print(f"{env} infrastructure: {verdict} ({result.summary()}, {len(result.changes)} addresses){timing}",
              markup=False)
    out.print(f"digest {result.digest}", markup=False)
    if result.artifact is not None:
        out.print(f"saved plan {result.artifact}", markup=False)


def sandbox_aws(
    port: Annotated[int | None, typer.Option("--port", help="Loopback port; a free one by default.")] = None,
    bucket: Annotated[str, typer.Option("--bucket", help="State bucket to create.")] = DEFAULT_BUCKET,
    lock_table: Annotated[str, typer.Option("--lock-table", help="DynamoDB lock table to create.")]
    = DEFAULT_LOCK_TABLE,
    region: Annotated[str, typer.Option("--region")] = DEFAULT_REGION,
) -> None:
    """Serve a local AWS (moto) until stopped; print its endpoints, fake credentials and backend settings."""
    require_sandbox("tidegate sandbox aws")
    stop = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # also when started in the background
        signal.signal(stop_signal, lambda signum, frame: stop.set())
    with AwsSandbox(port=port, bucket=bucket, lock_table=lock_table, region=region) as aws:
        sys.stdout.write(json.dumps(aws.describe(), indent=2) + "\n")
        sys.stdout.flush()
        err.print(f"sandbox AWS serving on {aws.url}; Ctrl-C to stop", markup=False)
        while not stop.wait(3600):
            pass
    err.print("sandbox AWS stopped", markup=False)


def register(app: typer.Typer, sandbox: typer.Typer) -> None:
    """Add `plan` to the main app and `aws` to the `sandbox` group."""
    app.command("plan")(plan)
    sandbox.command("aws")(sandbox_aws)


def _load(path: Path, env: str) -> LoadedRepo:
    try:
        loaded = load_repo(path)
    except InvalidRepo as invalid:
        for issue in invalid.issues:
            err.print(str(issue), markup=False)
        err.print(f"[red]{len(invalid.issues)} errors[/red]")
        raise typer.Exit(1) from None
    if env not in loaded.environments:
        known = ", ".join(loaded.environments) or "none"
        err.print(f"unknown environment {env!r} (known: {known})", markup=False)
        raise typer.Exit(2)
    return loaded


def _progress(stream: str, line: str) -> None:
    if line.strip():
        err.print(f"[dim]terraform: {escape(line)}[/dim]")
