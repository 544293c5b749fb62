"""The Ansible inventory, generated from the stage inputs and the environment's connection settings.

Input: the Terraform `nodes` output, a list of `{name, address, groups, vars?}`. Connection
settings (`repo_schema.models.Connection`: type, user, port, become, host overrides; the composition
root may layer sandbox or bastion settings over the repo's) decide how each node is reached;
per-host vars injected by the composition root (such as a sandbox node's `node_prefix`) come last.

Precedence of a host's variables, lowest first:

1. the `connection` defaults: `type` (`ansible_connection`), `user`, `port`, `become`, and the
   node's Terraform `address` (`ansible_host`);
2. the node's Terraform `vars`: what the infrastructure knows about one host (`ansible_connection`,
   `ansible_user`, `ansible_port`, `ansible_host`, `ansible_python_interpreter`, ...) wins over
   the environment-wide defaults;
3. `connection.hostOverrides[<node>]` (`address`, `port`, `user`): written for one named host (by
   the repo or the composition root, e.g. the sandbox's SSH nodes), so they win over Terraform;
4. host vars injected by the composition root.

The private key never appears here: the runner passes a key file path. Nor does the interpreter
of a `local` connection: the runner adds the controller's own (`sys.executable`) when the run
starts, for every host whose `ansible_connection` is `local` and that sets no
`ansible_python_interpreter`, so that a plan made by one worker still matches on another.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repo_schema.models import Connection

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InventoryError(ValueError):
    """The stage input cannot be turned into an inventory; the message names the offending entry."""


@dataclass(frozen=True)
class InventoryNode:
    """One entry of the Terraform `nodes` output."""

    name: str
    address: str
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)


def nodes_from_output(value: Any, output_name: str = "nodes") -> list[InventoryNode]:
    """Read and check the Terraform output; every problem is reported at once."""
    if not isinstance(value, list):
        source = output_name if " " in output_name else f"Terraform output `{output_name}`"
        raise InventoryError(f"{source} must be a list of nodes, got {type(value).__name__}")
    problems: list[str] = []
    nodes: list[InventoryNode] = []
    seen: set[str] = set()
    for index, entry in enumerate(value):
        where = f"{output_name}[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected an object with name and address, got {type(entry).__name__}")
            continue
        unknown = set(entry) - {"name", "address", "groups", "vars"}
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        name, address = entry.get("name"), entry.get("address")
        groups, host_vars = entry.get("groups", []), entry.get("vars") or {}
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{where}.name: expected a host name (letters, digits, '.', '-', '_'), got {name!r}")
            continue
        if name in seen:
            problems.append(f"{where}.name: duplicate node name {name!r}")
        seen.add(name)
        if not isinstance(address, str) or not address.strip():
            problems.append(f"{where}.address: expected an address, got {address!r}")
            continue
        if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
            problems.append(f"{where}.groups: expected a list of group names, got {groups!r}")
            continue
        bad_groups = [group for group in groups if not _GROUP.match(group) or group in ("all", "ungrouped")]
        if bad_groups:
            problems.append(f"{where}.groups: invalid Ansible group name(s) {', '.join(map(repr, bad_groups))}")
        if not isinstance(host_vars, Mapping) or not all(isinstance(key, str) for key in host_vars):
            problems.append(f"{where}.vars: expected an object, got {host_vars!r}")
            continue
        nodes.append(InventoryNode(name=name, address=address, groups=tuple(groups), vars=dict(host_vars)))
    if problems:
        raise InventoryError("; ".join(problems))
    return nodes


def host_vars_for(
    node: InventoryNode,
    connection: Connection,
    injected: Mapping[str, Any] | None = None,
    private_key_file: Path | None = None,
) -> dict[str, Any]:
    """The variables of one host, in the precedence of the module docstring."""
    variables = _connection_defaults(node, connection)
    variables.update(node.vars)
    override = connection.host_overrides.get(node.name)
    if connection.type != "local":
        if override is not None:
            variables.update({key: value for key, value in (
                ("ansible_host", override.address), ("ansible_port", override.port), ("ansible_user", override.user),
            ) if value})
        if private_key_file is not None:
            variables["ansible_ssh_private_key_file"] = str(private_key_file)
    variables.update(injected or {})
    return variables


def _connection_defaults(node: InventoryNode, connection: Connection) -> dict[str, Any]:
    """What `connection` says for every host (level 1 of the precedence)."""
    variables: dict[str, Any] = {"ansible_connection": connection.type}
    if connection.type != "local":
        variables["ansible_host"] = node.address
        variables["ansible_port"] = connection.port
        if connection.user:
            variables["ansible_user"] = connection.user
    if connection.become:
        variables["ansible_become"] = True
    return variables


def build_inventory(
    nodes: Sequence[InventoryNode],
    connection: Connection | None = None,
    host_vars: Mapping[str, Mapping[str, Any]] | None = None,
    private_key_file: Path | None = None,
) -> dict[str, Any]:
    """A YAML-inventory dict: `all.hosts` with each host's vars, `all.children` per group.

    `host_vars` may only name nodes that exist (a typo there would silently configure nothing).
    """
    connection = connection or Connection()
    injected = dict(host_vars or {})
    unknown = sorted(set(injected) - {node.name for node in nodes})
    if unknown:
        raise InventoryError(f"host vars given for unknown node(s): {', '.join(unknown)}")
    overridden = sorted(set(connection.host_overrides) - {node.name for node in nodes})
    if overridden:
        raise InventoryError(f"host overrides given for unknown node(s): {', '.join(overridden)}")
    hosts = {
        node.name: host_vars_for(node, connection, injected.get(node.name), private_key_file) for node in nodes
    }
    children: dict[str, dict[str, Any]] = {}
    for node in nodes:
        for group in node.groups:
            children.setdefault(group, {"hosts": {}})["hosts"][node.name] = None
    inventory: dict[str, Any] = {"all": {"hosts": hosts}}
    if children:
        inventory["all"]["children"] = children
    return inventory


def merge_connection(base: Connection | None, override: Mapping[str, Any] | None) -> Connection:
    """Layer connection settings (camelCase or snake_case keys) from the composition root over the
    repo's; host overrides merge per host."""
    merged: dict[str, Any] = (base or Connection()).model_dump(by_alias=False)
    if override:
        data = Connection.model_validate(dict(override)).model_dump(by_alias=False, exclude_unset=True)
        overrides = {**merged.get("host_overrides", {}), **data.pop("host_overrides", {})}
        merged.update(data)
        merged["host_overrides"] = overrides
    return Connection.model_validate(merged, strict=False)
