"""Real SSH nodes for the Ansible stage tests, and stage contexts pointed at them.

The nodes are network namespaces running sshd (sandbox/nodes.py), created once per session. Where
network namespaces are not permitted, the fixture raises SshNodesUnavailable and every test that
needs real SSH fails with that message (they are not skipped).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.ansible import AnsibleStage, ConfigurationInputs
from providers.stage import StageContext, StagePlan, StageResult
from repo_schema.models import ConfigurationSpec
from sandbox.nodes import SshNodes

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[2] / "examples" / "infra-repo"
PLAYBOOKS = HERE / "playbooks"
EVENTS = HERE / "events"

#: The Terraform `nodes` output of the example's staging environment, as the infrastructure stage
#: reports it (moto's private addresses); sandbox host overrides send them to the SSH nodes.
TERRAFORM_NODES: list[dict[str, Any]] = [
    {"name": "staging-node-1", "address": "10.0.1.10", "groups": ["nodes", "ingress"]},
    {"name": "staging-node-2", "address": "10.0.2.11", "groups": ["nodes"]},
]

ContextFactory = Callable[..., StageContext[ConfigurationInputs]]


@pytest.fixture(scope="session")
def ssh_nodes() -> Iterator[SshNodes]:
    with SshNodes(2) as nodes:
        yield nodes


def _wipe(nodes: SshNodes) -> None:
    """Remove every managed file (the node roots stay: each is bind-mounted into its node)."""
    for node in nodes.nodes:
        for child in node.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


@pytest.fixture
def clean_nodes(ssh_nodes: SshNodes) -> SshNodes:
    """The session's nodes with every managed file removed (each test starts from bare nodes)."""
    _wipe(ssh_nodes)
    return ssh_nodes


@dataclass(frozen=True)
class ExampleApplied:
    """The example's staging playbook applied once over SSH to bare nodes, and what was seen on the way.

    CI budget: a full plan and apply of the example over SSH costs tens of seconds, so it is done
    once per module; tests that need configured nodes get them restored from `snapshot` (a byte,
    mode and owner exact copy of what the real apply wrote) instead of applying again."""

    context: StageContext[ConfigurationInputs]
    plan: StagePlan
    result: StageResult
    logins_before: dict[str, int]
    logins_after: dict[str, int]
    files_after_plan: list[dict[str, str]]
    snapshot: Path


def example_configuration() -> dict[str, Any]:
    """The `configuration` section of the example's staging environment."""
    document = yaml.safe_load((EXAMPLE / "environments" / "staging.yaml").read_text())
    return dict(document["spec"]["configuration"])


def accepted_logins(nodes: SshNodes) -> dict[str, int]:
    """Public-key logins each node's sshd has logged so far."""
    return {node.name: node.log_path.read_text().count("Accepted publickey") for node in nodes.nodes}


def node_files(root: Path) -> dict[str, str]:
    """A node's managed files (host view), path → text."""
    return {
        str(path.relative_to(root)): path.read_text(errors="replace")
        for path in sorted(root.rglob("*")) if path.is_file()
    }


@pytest.fixture(scope="module")
def example_applied(ssh_nodes: SshNodes, tmp_path_factory: pytest.TempPathFactory) -> ExampleApplied:
    _wipe(ssh_nodes)
    base = tmp_path_factory.mktemp("example-applied")
    stage = AnsibleStage()
    context = _sandbox_context(ssh_nodes, EXAMPLE, base / "artifacts", example_configuration())
    logins_before = accepted_logins(ssh_nodes)
    plan = stage.plan(context)
    files_after_plan = [node_files(node.root) for node in ssh_nodes.nodes]
    result = stage.apply(context, plan)
    snapshot = base / "snapshot"
    for node in ssh_nodes.nodes:
        (snapshot / node.name).mkdir(parents=True)
        _copy_tree(node.root, snapshot / node.name)
    return ExampleApplied(context, plan, result, logins_before, accepted_logins(ssh_nodes), files_after_plan,
                          snapshot)


@pytest.fixture
def configured_nodes(ssh_nodes: SshNodes, example_applied: ExampleApplied) -> SshNodes:
    """The session's nodes exactly as the example's apply left them (see ExampleApplied)."""
    assert example_applied.result.succeeded, example_applied.result.error
    _wipe(ssh_nodes)
    for node in ssh_nodes.nodes:
        _copy_tree(example_applied.snapshot / node.name, node.root)
    return ssh_nodes


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a directory's contents keeping modes, owners and times (`cp -a`), so Ansible sees them as it left them."""
    subprocess.run(["cp", "-a", f"{source}/.", str(target)], check=True, capture_output=True, timeout=60)


@pytest.fixture
def sandbox_context() -> ContextFactory:
    """Builds stage contexts for the sandbox nodes (see `_sandbox_context`)."""
    return _sandbox_context


def _sandbox_context(
    nodes: SshNodes,
    workdir: Path,
    artifacts: Path,
    configuration: Mapping[str, Any],
    terraform_nodes: list[dict[str, Any]] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> StageContext[ConfigurationInputs]:
    """A context as the composition root builds it in sandbox mode: the Terraform node names are
    mapped onto the sandbox nodes, the client key travels as a credential."""
    terraform_nodes = terraform_nodes if terraform_nodes is not None else TERRAFORM_NODES
    endpoint = nodes.endpoint_map([node["name"] for node in terraform_nodes])
    key_path = Path(endpoint.pop("private_key_path"))
    merged = {**endpoint, **{key: value for key, value in (settings or {}).items() if key != "connection"}}
    extra_connection = dict((settings or {}).get("connection", {}))
    if extra_connection:
        overrides = {name: dict(value) for name, value in endpoint["connection"]["hostOverrides"].items()}
        for name, value in extra_connection.pop("hostOverrides", {}).items():
            overrides[name] = {**overrides[name], **value}
        merged["connection"] = {**endpoint["connection"], **extra_connection, "hostOverrides": overrides}
    return StageContext(
        environment="staging",
        revision="0" * 40,
        workdir=workdir,
        artifacts=artifacts,
        spec=configuration_inputs(configuration, terraform_nodes),
        credentials={"ssh_private_key": key_path.read_text()},
        settings=merged,
    )


def configuration_inputs(configuration: Mapping[str, Any],
                         nodes: Sequence[Mapping[str, Any]]) -> ConfigurationInputs:
    """The stage's typed input from a `configuration` section in the config repo's spelling, read by
    the repo's own model as the reconciler reads it."""
    return ConfigurationInputs(ConfigurationSpec.model_validate(dict(configuration)), list(nodes))
