"""Real SSH nodes for the Ansible stage tests, and stage contexts pointed at them.

The nodes are network namespaces running sshd (sandbox/nodes.py), created once per session. Where
network namespaces are not permitted, the fixture raises SshNodesUnavailable and every test that
needs real SSH fails with that message (they are not skipped).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from providers.ansible import ConfigurationInputs
from providers.stage import StageContext
from repo_schema.models import ConfigurationSpec
from sandbox.nodes import SshNodes

HERE = Path(__file__).resolve().parent
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


@pytest.fixture
def clean_nodes(ssh_nodes: SshNodes) -> SshNodes:
    """The session's nodes with every managed file removed (each test starts from bare nodes)."""
    for node in ssh_nodes.nodes:
        for child in node.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    return ssh_nodes


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
