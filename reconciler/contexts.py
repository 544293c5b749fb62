"""The StageContext of each stage of one environment at one revision, built one way for every caller.

Syncs, drift checks and previews all call these builders, so a plan, its apply and a later drift
observation see the same spec, the same inputs and the same connection settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.ansible.inventory import merge_connection
from providers.stage import Stage, StageContext
from reconciler.desired import DesiredState
from reconciler.rendering.inputs import render_tfvars
from reconciler.targets import Targets, TargetsError
from repo_schema.loader import LoadedRepo
from repo_schema.models import EnvironmentSpec


@dataclass(frozen=True)
class Run:
    """Where one environment's stage runs happen: the immutable checkout and an artifacts area."""

    repository: str
    environment: str
    revision: str
    checkout: Path
    artifacts: Path


def configuration_spec(repo: LoadedRepo, environment: str) -> dict[str, Any]:
    """The environment's `configuration` section (repo spelling) with the repo's default
    connection under the environment's own."""
    spec = repo.environments[environment].spec.configuration
    if spec is None:
        raise ValueError(f"environment {environment!r} has no configuration stage")
    own = spec.connection.model_dump(by_alias=True, exclude_unset=True) if spec.connection else None
    connection = merge_connection(repo.config.spec.connection, own)
    section: dict[str, Any] = spec.model_dump(by_alias=True, mode="json", exclude={"connection", "timeout"})
    section["timeout"] = f"{int(spec.timeout.total_seconds())}s"
    section["connection"] = connection.model_dump(by_alias=True, mode="json", exclude_none=True)
    return section


def infrastructure(repo: LoadedRepo, run: Run, targets: Targets) -> StageContext:
    spec = infrastructure_spec(repo, run.environment)
    spec["tfvars"] = render_tfvars(spec["vars"])
    connection = targets.infrastructure(run.repository, run.environment)
    return StageContext(run.environment, run.revision, run.checkout, run.artifacts, spec=spec,
                        settings=dict(connection.settings), credentials=dict(connection.credentials))


def nodes_output(repo: LoadedRepo, environment: str, outputs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The Terraform output the inventory comes from, or None when it is not known yet."""
    spec = repo.environments[environment].spec.configuration
    if spec is None:
        return None
    value = outputs.get(spec.inventory_from.terraform_output)
    return [dict(node) for node in value] if isinstance(value, list) else None


def configuration(repo: LoadedRepo, run: Run, targets: Targets, outputs: Mapping[str, Any]) -> StageContext | None:
    """The configuration context, or None while the infrastructure has not reported its nodes."""
    nodes = nodes_output(repo, run.environment, outputs)
    if nodes is None:
        return None
    spec = configuration_spec(repo, run.environment)
    connection = targets.configuration(run.repository, run.environment, nodes, spec)
    output_name = str(spec["inventoryFrom"]["terraformOutput"])
    return StageContext(run.environment, run.revision, run.checkout, run.artifacts,
                        spec={"configuration": spec}, inputs={output_name: nodes},
                        settings=dict(connection.settings), credentials=dict(connection.credentials))


def kubeconfig(repo: LoadedRepo, environment: str, outputs: Mapping[str, Any]) -> str | None:
    """The cluster's kubeconfig from the Terraform output the environment names (None if unknown)."""
    cluster = repo.environments[environment].spec.cluster
    if cluster is None or cluster.kubeconfig_from.terraform_output is None:
        return None
    value = outputs.get(cluster.kubeconfig_from.terraform_output)
    return value if isinstance(value, str) and value else None


def needs_infrastructure_outputs(repo: LoadedRepo, environment: str) -> bool:
    cluster = repo.environments[environment].spec.cluster
    return cluster is not None and cluster.kubeconfig_from.terraform_output is not None


def workloads(repo: LoadedRepo, run: Run, targets: Targets, desired: DesiredState, outputs: Mapping[str, Any],
              inventory: Any = None, *, take_over: bool = False) -> StageContext | None:
    """The workloads context, or None while the cluster's kubeconfig output is not known yet.

    `take_over` (self-heal) forces server-side apply conflicts on every workload: whoever changed a
    field by hand (`kubectl scale` owns `.spec.replicas` afterwards) loses it to Git, as Flux's
    force-apply does; an ordinary sync still reports such conflicts unless `forceConflicts` is set."""
    env = repo.environments[run.environment]
    config = kubeconfig(repo, run.environment, outputs)
    if config is None and needs_infrastructure_outputs(repo, run.environment):
        return None
    try:
        connection = targets.workloads(run.repository, run.environment, config)
    except TargetsError:
        if config is None:
            return None
        raise
    spec = env.spec.model_dump(by_alias=True, mode="json", include={"workloads", "sync"})
    if take_over:
        for workload in spec.get("workloads") or []:
            workload["forceConflicts"] = True
    spec["sync"] = repo.sync_policy(run.environment).model_dump(by_alias=True, mode="json")
    inputs: dict[str, Any] = {"manifests": {name: rendered.manifests for name, rendered in desired.workloads.items()}}
    if inventory is not None:
        inputs["inventory"] = inventory
    return StageContext(run.environment, run.revision, run.checkout, run.artifacts, spec=spec, inputs=inputs,
                        settings=dict(connection.settings), credentials=dict(connection.credentials))


def stages_of(repo: LoadedRepo, environment: str) -> Sequence[Stage]:
    """The stages an environment defines, in pipeline order."""
    spec = repo.environments[environment].spec
    return [stage for stage in Stage if WIRINGS[stage].defined(spec)]


Recorded = dict[Stage, dict[str, Any]]
"""What each stage of an environment last recorded as its outputs (Terraform's outputs, the
Kubernetes inventory, ...): the single authority later stages, drift and watches read."""


@dataclass(frozen=True)
class Source:
    """What one stage's context is built from: one environment at one revision, its rendered
    desired state, the stages' recorded outputs, and where the stages run."""

    repo: LoadedRepo
    run: Run
    desired: DesiredState
    recorded: Recorded
    targets: Targets
    take_over: bool = False


@dataclass(frozen=True)
class Wiring:
    """How the reconciler feeds one stage, so that callers loop over stages with no per-stage code:
    whether an environment defines it, which earlier stages' recorded outputs its context reads,
    how its context is built (None: those outputs are not known yet, so the stage is deferred), and
    what a deferred stage's approval covers (its rendered inputs)."""

    defined: Callable[[EnvironmentSpec], bool]
    reads: frozenset[Stage]
    build: Callable[[Source], StageContext | None]
    covers: Callable[[DesiredState], Any]


def _infrastructure(source: Source) -> StageContext | None:
    return infrastructure(source.repo, source.run, source.targets)


def _configuration(source: Source) -> StageContext | None:
    return configuration(source.repo, source.run, source.targets,
                         source.recorded.get(Stage.INFRASTRUCTURE, {}))


def _workloads(source: Source) -> StageContext | None:
    return workloads(source.repo, source.run, source.targets, source.desired,
                     source.recorded.get(Stage.INFRASTRUCTURE, {}),
                     source.recorded.get(Stage.WORKLOADS, {}).get("inventory"), take_over=source.take_over)


WIRINGS: dict[Stage, Wiring] = {
    Stage.INFRASTRUCTURE: Wiring(
        defined=lambda spec: spec.infrastructure is not None, reads=frozenset(), build=_infrastructure,
        covers=lambda desired: {"path": desired.infrastructure_path, "vars": desired.tfvars}),
    Stage.CONFIGURATION: Wiring(
        defined=lambda spec: spec.configuration is not None, reads=frozenset({Stage.INFRASTRUCTURE}),
        build=_configuration, covers=lambda desired: {"playbook": desired.playbook, "vars": desired.extra_vars}),
    Stage.WORKLOADS: Wiring(
        defined=lambda spec: bool(spec.workloads), reads=frozenset({Stage.INFRASTRUCTURE}), build=_workloads,
        covers=lambda desired: {"manifests": [m.body for w in desired.workloads.values() for m in w.manifests]}),
}


def infrastructure_spec(repo: LoadedRepo, environment: str) -> dict[str, Any]:
    """The plain `StageContext.spec` of one environment's infrastructure stage (what
    `providers.terraform.spec.TerraformSpec` reads): providers never see the loaded repo."""
    infra = repo.environments[environment].spec.infrastructure
    if infra is None:
        raise ValueError(f"environment {environment!r} has no infrastructure stage")
    backend = repo.backend(environment)
    mirror = repo.config.spec.terraform.plugin_mirror
    backend_values: dict[str, Any] | None = None
    if backend is not None:
        backend_values = backend.model_dump(exclude={"lock_timeout", "key_prefix"})
        backend_values["lock_timeout"] = backend.lock_timeout.total_seconds()
    return {
        "path": infra.path,
        "vars": dict(infra.vars),
        "backend": backend_values,
        "timeout": infra.timeout.total_seconds(),
        "plugin_mirror": {"paths": [str(_resolve(repo.root, p)) for p in mirror.paths], "offline": mirror.offline},
    }


def _resolve(root: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else root / candidate
