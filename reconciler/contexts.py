"""The StageContext of each stage of one environment at one revision, built one way for every caller.

Syncs, drift checks and previews all call these builders, so a plan, its apply and a later drift
observation see the same spec, the same inputs and the same connection settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from providers.ansible.inventory import merge_connection
from providers.ansible.stage import EXTRA_VAR_CREDENTIAL, ConfigurationInputs
from providers.kubernetes.diff import IgnoreRule
from providers.kubernetes.inventory import from_json as inventory_from_json
from providers.kubernetes.memory import from_json as memory_from_json
from providers.kubernetes.stage import DEFAULT_NAMESPACE, WorkloadSettings, WorkloadsInputs
from providers.stage import Stage, StageContext
from providers.terraform.spec import TerraformBackend, TerraformSpec
from reconciler.desired import DesiredState
from reconciler.rendering.encrypted import decrypt_manifests, encrypted_variables
from reconciler.rendering.inputs import render_tfvars
from reconciler.rendering.sops import SopsError
from reconciler.sources.paths import configuration_paths, infrastructure_paths
from reconciler.targets import Targets, TargetsError
from repo_schema.loader import LoadedRepo
from repo_schema.models import ConfigurationSpec, EnvironmentSpec, WorkloadSpec, secret_ref


@dataclass(frozen=True)
class Run:
    """Where one environment's stage runs happen: the immutable checkout and an artifacts area."""

    repository: str
    environment: str
    revision: str
    checkout: Path
    artifacts: Path


def configuration_spec(repo: LoadedRepo, environment: str) -> ConfigurationSpec:
    """The environment's `configuration` section with the repo's default connection under the
    environment's own."""
    spec = repo.environments[environment].spec.configuration
    if spec is None:
        raise ValueError(f"environment {environment!r} has no configuration stage")
    own = spec.connection.model_dump(by_alias=True, exclude_unset=True) if spec.connection else None
    return spec.model_copy(update={"connection": merge_connection(repo.config.spec.connection, own)})


def infrastructure(repo: LoadedRepo, run: Run, targets: Targets) -> StageContext[TerraformSpec]:
    spec = infrastructure_spec(repo, run.environment)
    connection = targets.infrastructure(run.repository, run.environment)
    with _sops_errors():
        encrypted = encrypted_variables(run.checkout, spec.path, _identity(repo, run, targets))
    credentials = {**connection.credentials, **encrypted, **secret_tf_vars(repo, run, targets)}
    return StageContext(run.environment, run.revision, run.checkout, run.artifacts, spec=spec,
                        settings=dict(connection.settings), credentials=credentials)


def _identity(repo: LoadedRepo, run: Run, targets: Targets) -> Callable[[], str]:
    """The environment's age identity, read from the store only when something is encrypted."""
    def identity() -> str:
        decryption = repo.decryption(run.environment)
        if decryption is None:
            raise TargetsError(f"{run.environment}: the repo holds SOPS-encrypted files but neither the environment "
                               "nor tidegate.yaml sets decryption.secretRef (the stored secret with the age identity)")
        return targets.secret(run.repository, run.environment, decryption.secret_ref, "spec.decryption.secretRef")
    return functools.cache(identity)


@contextlib.contextmanager
def _sops_errors() -> Iterator[None]:
    """A file SOPS cannot decrypt fails the stage with the file's path and SOPS' reason."""
    try:
        yield
    except SopsError as error:
        raise TargetsError(str(error)) from None


def secret_variables(variables: Mapping[str, Any]) -> dict[str, str]:
    """Which variables are `{secretRef: NAME}`: variable -> stored secret name."""
    return {name: ref for name, value in variables.items() if (ref := secret_ref(value)) is not None}


def plain_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in variables.items() if secret_ref(value) is None}


def secret_tf_vars(repo: LoadedRepo, run: Run, targets: Targets) -> dict[str, str]:
    """Terraform variables from stored secrets, as `TF_VAR_<name>` environment variables: never in
    the tfvars file, the plan's inputs or a log (credentials are masked in every output)."""
    infra = repo.environments[run.environment].spec.infrastructure
    refs = secret_variables(infra.vars) if infra is not None else {}
    return {f"TF_VAR_{name}": targets.secret(run.repository, run.environment, ref,
                                             f"spec.infrastructure.vars.{name}.secretRef")
            for name, ref in sorted(refs.items())}


def secret_extra_vars(spec: ConfigurationSpec, run: Run, targets: Targets) -> dict[str, str]:
    """Ansible extra vars from stored secrets, handed over as credentials (`extra_var:<name>`)."""
    return {f"{EXTRA_VAR_CREDENTIAL}{name}": targets.secret(run.repository, run.environment, ref,
                                                           f"spec.configuration.extraVars.{name}.secretRef")
            for name, ref in sorted(secret_variables(spec.extra_vars).items())}


def nodes_of(repo: LoadedRepo, run: Run, targets: Targets, outputs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The nodes the inventory lists: from the Terraform output (None while it is not known yet),
    a YAML file in the checkout, or a stored secret holding the same YAML list."""
    spec = repo.environments[run.environment].spec.configuration
    if spec is None:
        return None
    source = spec.inventory_from
    if source.terraform_output is not None:
        value = outputs.get(source.terraform_output)
    elif source.file is not None:
        value = _static_inventory(_read_checkout_file(run.checkout, source.file), source.file)
    else:
        assert source.secret is not None
        text = targets.secret(run.repository, run.environment, source.secret,
                              "spec.configuration.inventoryFrom.secret")
        value = _static_inventory(text, f"stored secret {source.secret!r}")
    return [dict(node) for node in value] if isinstance(value, list) else None


def _read_checkout_file(checkout: Path, relative: str) -> str:
    path = (checkout / relative).resolve()
    if not path.is_relative_to(checkout.resolve()) or not path.is_file():
        raise TargetsError(f"spec.configuration.inventoryFrom.file: {relative} is not a file in the checkout")
    return path.read_text(encoding="utf-8", errors="replace")


def _static_inventory(text: str, where: str) -> Any:
    """A static inventory: a YAML list of nodes (checked by the Ansible stage like Terraform's)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TargetsError(f"{where}: not YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(value, list):
        raise TargetsError(f"{where}: must be a YAML list of nodes ({{name, address, groups?, vars?}})")
    return value


def configuration(repo: LoadedRepo, run: Run, targets: Targets,
                  outputs: Mapping[str, Any]) -> StageContext[ConfigurationInputs] | None:
    """The configuration context, or None while the infrastructure has not reported its nodes."""
    nodes = nodes_of(repo, run, targets, outputs)
    if nodes is None:
        return None
    spec = configuration_spec(repo, run.environment)
    connection = targets.configuration(run.repository, run.environment, nodes, spec)
    credentials = {**connection.credentials, **secret_extra_vars(spec, run, targets)}
    return StageContext(run.environment, run.revision, run.checkout, run.artifacts,
                        spec=ConfigurationInputs(spec, nodes),
                        settings=dict(connection.settings), credentials=credentials)


def kubeconfig(repo: LoadedRepo, run: Run, targets: Targets, outputs: Mapping[str, Any]) -> str | None:
    """The cluster's kubeconfig: a stored secret (an existing cluster), or the Terraform output the
    environment names (None while that output is unknown)."""
    cluster = repo.environments[run.environment].spec.cluster
    if cluster is not None and cluster.kubeconfig_from.secret is not None:
        return targets.secret(run.repository, run.environment, cluster.kubeconfig_from.secret,
                              "spec.cluster.kubeconfigFrom.secret")
    if cluster is None or cluster.kubeconfig_from.terraform_output is None:
        return None
    value = outputs.get(cluster.kubeconfig_from.terraform_output)
    return value if isinstance(value, str) and value else None


def needs_infrastructure_outputs(repo: LoadedRepo, environment: str) -> bool:
    cluster = repo.environments[environment].spec.cluster
    return cluster is not None and cluster.kubeconfig_from.terraform_output is not None


def workloads(repo: LoadedRepo, run: Run, targets: Targets, desired: DesiredState, outputs: Mapping[str, Any],
              inventory: Any = None, *, take_over: bool = False, memory: Any = None,
              ) -> StageContext[WorkloadsInputs] | None:
    """The workloads context, or None while the cluster's kubeconfig output is not known yet.

    `take_over` (self-heal) forces server-side apply conflicts on every workload: whoever changed a
    field by hand (`kubectl scale` owns `.spec.replicas` afterwards) loses it to Git, as Flux's
    force-apply does; an ordinary sync still reports such conflicts unless `forceConflicts` is set."""
    config = kubeconfig(repo, run, targets, outputs)
    if config is None and needs_infrastructure_outputs(repo, run.environment):
        return None
    try:
        connection = targets.workloads(run.repository, run.environment, config)
    except TargetsError:
        if config is None:
            return None
        raise
    with _sops_errors():
        manifests = decrypt_manifests(_manifests(desired), run.checkout, _identity(repo, run, targets))
    return StageContext(run.environment, run.revision, run.checkout, run.artifacts,
                        spec=workloads_inputs(repo, run.environment, manifests, inventory, take_over=take_over,
                                             memory=memory),
                        settings=dict(connection.settings), credentials=dict(connection.credentials))


def workload_settings(workloads: Sequence[WorkloadSpec], *, take_over: bool = False) -> dict[str, WorkloadSettings]:
    """Each workload's settings as the workloads stage reads them (`take_over`: see `workloads`)."""
    return {
        workload.name: WorkloadSettings(
            workload.name, workload.namespace or DEFAULT_NAMESPACE, take_over or workload.force_conflicts,
            workload.prune, tuple(IgnoreRule(rule.kind, tuple(rule.json_pointers), rule.group, rule.name,
                                             rule.namespace) for rule in workload.ignore_differences))
        for workload in workloads}


def _manifests(desired: DesiredState) -> dict[str, Sequence[Any]]:
    return {name: rendered.manifests for name, rendered in desired.workloads.items()}


def workloads_inputs(repo: LoadedRepo, environment: str, manifests: Mapping[str, Sequence[Any]],
                     inventory: Any = None, *, take_over: bool = False, memory: Any = None) -> WorkloadsInputs:
    """The workloads stage's typed input: rendered manifests, each workload's settings, the
    environment's prune policy, and the inventory and per-object memory the stage last recorded
    (their JSON forms; see `providers/kubernetes/memory.py`)."""
    settings = workload_settings(repo.environments[environment].spec.workloads, take_over=take_over)
    return WorkloadsInputs(manifests=manifests, workloads=settings, prune=repo.sync_policy(environment).prune,
                           inventory=inventory_from_json(inventory) if inventory is not None else None,
                           memory=memory_from_json(memory))


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
    how its context is built (None: those outputs are not known yet, so the stage is deferred),
    what a deferred stage's approval covers (its rendered inputs, with the files of `paths`), which
    files of the checkout it reads, and what else of its built context its plan depends on (its
    `settles`: the stage's own input and connection settings, never its own recorded outputs) —
    together the stage's input fingerprint (`EnvironmentSession.input_fingerprint`)."""

    defined: Callable[[EnvironmentSpec], bool]
    reads: frozenset[Stage]
    build: Callable[[Source], StageContext[Any] | None]
    covers: Callable[[DesiredState], Any]
    paths: Callable[[LoadedRepo, str], frozenset[str]]
    settles: Callable[[StageContext[Any]], Any]


def _infrastructure(source: Source) -> StageContext[Any] | None:
    return infrastructure(source.repo, source.run, source.targets)


def _configuration(source: Source) -> StageContext[Any] | None:
    return configuration(source.repo, source.run, source.targets,
                         source.recorded.get(Stage.INFRASTRUCTURE, {}))


def _workloads(source: Source) -> StageContext[Any] | None:
    recorded = source.recorded.get(Stage.WORKLOADS, {})
    return workloads(source.repo, source.run, source.targets, source.desired,
                     source.recorded.get(Stage.INFRASTRUCTURE, {}), recorded.get("inventory"),
                     take_over=source.take_over, memory=recorded.get("applied"))


def _terraform_settles(context: StageContext[Any]) -> Any:
    """The Terraform input beyond the module's files: variables, backend, timeout, provider mirror
    (its paths relative to the checkout, which is another directory at every revision)."""
    spec: TerraformSpec = context.spec
    return {"vars": dict(spec.vars), "tfvars": spec.tfvars, "timeout": spec.timeout, "offline": spec.offline,
            "backend": dataclasses.asdict(spec.backend) if spec.backend else None,
            "mirror": [_portable(path, context.workdir) for path in spec.mirror_paths]}


def _ansible_settles(context: StageContext[Any]) -> Any:
    """The configuration section (connection layered over the repo's default) and the nodes."""
    inputs: ConfigurationInputs = context.spec
    return {"spec": inputs.spec.model_dump(mode="json", by_alias=True), "nodes": [dict(n) for n in inputs.nodes]}


def _workloads_settles(context: StageContext[Any]) -> Any:
    """Each workload's settings and the prune policy; not the inventory (the stage's own output:
    every apply moves it) and not the manifests (`covers` has them as the repo renders them)."""
    inputs: WorkloadsInputs = context.spec
    return {"workloads": {name: dataclasses.asdict(settings) for name, settings in sorted(inputs.workloads.items())},
            "prune": inputs.prune}


def _portable(path: str, checkout: Path) -> str:
    candidate, root = Path(path).resolve(), checkout.resolve()
    return candidate.relative_to(root).as_posix() if candidate.is_relative_to(root) else path


WIRINGS: dict[Stage, Wiring] = {
    Stage.INFRASTRUCTURE: Wiring(
        defined=lambda spec: spec.infrastructure is not None, reads=frozenset(), build=_infrastructure,
        covers=lambda desired: {"path": desired.infrastructure_path, "vars": desired.tfvars},
        paths=infrastructure_paths, settles=_terraform_settles),
    Stage.CONFIGURATION: Wiring(
        defined=lambda spec: spec.configuration is not None, reads=frozenset({Stage.INFRASTRUCTURE}),
        build=_configuration, covers=lambda desired: {"playbook": desired.playbook, "vars": desired.extra_vars},
        paths=configuration_paths, settles=_ansible_settles),
    Stage.WORKLOADS: Wiring(
        defined=lambda spec: bool(spec.workloads), reads=frozenset({Stage.INFRASTRUCTURE}), build=_workloads,
        covers=lambda desired: {"manifests": [m.body for w in desired.workloads.values() for m in w.manifests]},
        paths=lambda repo, environment: frozenset(), settles=_workloads_settles),
}


def infrastructure_spec(repo: LoadedRepo, environment: str) -> TerraformSpec:
    """The infrastructure stage's typed input: providers never see the loaded repo."""
    infra = repo.environments[environment].spec.infrastructure
    if infra is None:
        raise ValueError(f"environment {environment!r} has no infrastructure stage")
    backend = repo.backend(environment)
    mirror = repo.config.spec.terraform.plugin_mirror
    return TerraformSpec(
        path=infra.path,
        vars=plain_variables(infra.vars),
        tfvars=render_tfvars(plain_variables(infra.vars)),
        backend=None if backend is None else TerraformBackend(
            type=backend.type, bucket=backend.bucket, key=backend.key, region=backend.region,
            dynamodb_table=backend.dynamodb_table, use_lockfile=backend.use_lockfile, encrypt=backend.encrypt,
            lock_timeout=backend.lock_timeout.total_seconds()),
        timeout=infra.timeout.total_seconds(),
        mirror_paths=tuple(str(_resolve(repo.root, path)) for path in mirror.paths),
        offline=mirror.offline,
    )


def _resolve(root: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else root / candidate
