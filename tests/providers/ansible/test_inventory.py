"""The inventory from the Terraform `nodes` output and the connection settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.ansible.inventory import (
    InventoryError,
    build_inventory,
    merge_connection,
    nodes_from_output,
)
from repo_schema.models import Connection

NODES = [
    {"name": "prod-node-1", "address": "10.0.1.10", "groups": ["nodes", "ingress"]},
    {"name": "prod-node-2", "address": "10.0.2.11", "groups": ["nodes"], "vars": {"zone": "b"}},
]


def test_each_node_becomes_a_host_in_its_groups_reached_over_ssh_at_its_address() -> None:
    connection = Connection(user="tidegate", port=2222)

    inventory = build_inventory(nodes_from_output(NODES), connection)

    assert inventory["all"]["hosts"]["prod-node-1"] == {
        "ansible_connection": "ssh", "ansible_host": "10.0.1.10", "ansible_port": 2222, "ansible_user": "tidegate",
    }
    assert inventory["all"]["hosts"]["prod-node-2"]["zone"] == "b"
    assert inventory["all"]["children"] == {
        "nodes": {"hosts": {"prod-node-1": None, "prod-node-2": None}},
        "ingress": {"hosts": {"prod-node-1": None}},
    }


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param({"address": "bastion.example"}, ("bastion.example", 22, "tidegate"), id="address-only"),
        pytest.param({"port": 2201, "user": "ops"}, ("10.0.1.10", 2201, "ops"), id="port-and-user"),
        pytest.param({}, ("10.0.1.10", 22, "tidegate"), id="empty-override"),
    ],
)
def test_a_host_override_replaces_only_what_it_sets(override: dict[str, Any], expected: tuple[str, int, str]) -> None:
    connection = Connection.model_validate({"user": "tidegate", "hostOverrides": {"prod-node-1": override}})

    host = build_inventory(nodes_from_output(NODES), connection)["all"]["hosts"]["prod-node-1"]

    assert (host["ansible_host"], host["ansible_port"], host["ansible_user"]) == expected


def test_injected_host_vars_come_last_and_the_key_is_a_path() -> None:
    inventory = build_inventory(
        nodes_from_output(NODES), Connection(become=True),
        host_vars={"prod-node-2": {"node_prefix": "/srv/n2", "zone": "override"}},
        private_key_file=Path("/run/key"),
    )

    host = inventory["all"]["hosts"]["prod-node-2"]
    assert host["node_prefix"] == "/srv/n2"
    assert host["zone"] == "override"
    assert host["ansible_ssh_private_key_file"] == "/run/key"
    assert host["ansible_become"] is True


@pytest.mark.parametrize(
    ("terraform_vars", "expected"),
    [
        pytest.param({"ansible_user": "ubuntu"}, {"ansible_user": "ubuntu", "ansible_port": 2222},
                     id="terraform-user-over-the-connection-user"),
        pytest.param({"ansible_port": 2200}, {"ansible_user": "tidegate", "ansible_port": 2200},
                     id="terraform-port-over-the-connection-port"),
        pytest.param({"ansible_connection": "local"}, {"ansible_connection": "local"},
                     id="terraform-connection-over-the-connection-type"),
        pytest.param({"ansible_python_interpreter": "/opt/py/bin/python"},
                     {"ansible_python_interpreter": "/opt/py/bin/python", "ansible_connection": "ssh"},
                     id="terraform-interpreter-kept"),
        pytest.param({"ansible_host": "203.0.113.9"}, {"ansible_host": "203.0.113.9"},
                     id="terraform-host-over-the-node-address"),
    ],
)
def test_a_hosts_terraform_vars_win_over_the_repos_connection_defaults(
    terraform_vars: dict[str, Any], expected: dict[str, Any],
) -> None:
    node = {"name": "prod-node-1", "address": "10.0.1.10", "vars": terraform_vars}

    host = build_inventory(nodes_from_output([node]), Connection(user="tidegate", port=2222))["all"]["hosts"]

    assert {key: host["prod-node-1"][key] for key in expected} == expected


def test_a_host_override_wins_over_the_hosts_terraform_vars_and_injected_vars_over_both() -> None:
    node = {"name": "prod-node-1", "address": "10.0.1.10",
            "vars": {"ansible_user": "ubuntu", "ansible_port": 2200, "ansible_host": "203.0.113.9"}}
    connection = Connection.model_validate({"user": "tidegate", "hostOverrides": {
        "prod-node-1": {"address": "198.51.100.7", "port": 22}}})

    host = build_inventory(nodes_from_output([node]), connection,
                           host_vars={"prod-node-1": {"ansible_user": "root"}})["all"]["hosts"]["prod-node-1"]

    assert (host["ansible_host"], host["ansible_port"], host["ansible_user"]) == ("198.51.100.7", 22, "root")


def test_a_local_connection_has_no_address() -> None:
    inventory = build_inventory(nodes_from_output(NODES[:1]), Connection(type="local"))
    assert inventory["all"]["hosts"]["prod-node-1"] == {"ansible_connection": "local"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param({"name": "x"}, "must be a list of nodes, got dict", id="not-a-list"),
        pytest.param([{"address": "10.0.0.1"}], "nodes[0].name: expected a host name", id="missing-name"),
        pytest.param([{"name": "a b", "address": "10.0.0.1"}], "nodes[0].name", id="name-with-space"),
        pytest.param([{"name": "n", "address": ""}], "nodes[0].address: expected an address", id="empty-address"),
        pytest.param([{"name": "n", "address": "a"}, {"name": "n", "address": "b"}],
                     "nodes[1].name: duplicate node name 'n'", id="duplicate-name"),
        pytest.param([{"name": "n", "address": "a", "groups": ["web-servers"]}],
                     "invalid Ansible group name(s) 'web-servers'", id="group-with-dash"),
        pytest.param([{"name": "n", "address": "a", "groups": "nodes"}], "expected a list of group names",
                     id="groups-not-a-list"),
        pytest.param([{"name": "n", "address": "a", "ip": "b"}], "unknown field(s) ip", id="unknown-field"),
    ],
)
def test_a_malformed_nodes_output_is_rejected_with_the_offending_entry(value: Any, message: str) -> None:
    with pytest.raises(InventoryError, match=None) as caught:
        nodes_from_output(value)
    assert message in str(caught.value)


def test_every_problem_of_the_output_is_reported_at_once() -> None:
    with pytest.raises(InventoryError) as caught:
        nodes_from_output([{"name": "", "address": "a"}, {"name": "n", "address": None}])
    assert "nodes[0].name" in str(caught.value) and "nodes[1].address" in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [pytest.param("host_vars", {"ghost": {"node_prefix": "/x"}}, id="host-vars"),
     pytest.param("overrides", {"ghost": {"port": 1}}, id="host-overrides")],
)
def test_settings_for_an_unknown_node_are_an_error_not_silently_ignored(field: str, value: Any) -> None:
    nodes = nodes_from_output(NODES)
    with pytest.raises(InventoryError, match="unknown node"):
        if field == "host_vars":
            build_inventory(nodes, host_vars=value)
        else:
            build_inventory(nodes, Connection.model_validate({"hostOverrides": value}))


def test_sandbox_connection_settings_layer_over_the_repos_and_merge_host_overrides() -> None:
    repo = Connection.model_validate({"user": "tidegate", "port": 22, "privateKeyRef": {"secret": "node-ssh-key"},
                                      "hostOverrides": {"a": {"user": "admin"}}})

    merged = merge_connection(repo, {"user": "root", "hostOverrides": {"b": {"address": "198.51.100.2"}}})

    assert merged.user == "root"
    assert merged.port == 22
    assert merged.private_key_ref is not None and merged.private_key_ref.secret == "node-ssh-key"
    assert set(merged.host_overrides) == {"a", "b"}


def test_a_local_connection_is_refused_for_an_untrusted_pull_request_head(tmp_path: Path) -> None:
    """A `local` playbook runs as the service user on the worker (it configures that machine): a
    preview of a head whose author is not trusted never runs it, go-ahead or not."""
    from providers.ansible.stage import AnsibleStageError, resolve
    from providers.stage import StageContext
    from tests.providers.ansible.conftest import configuration_inputs

    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    spec = configuration_inputs({"playbook": "site.yml", "inventoryFrom": {"terraformOutput": "nodes"},
                                 "connection": {"type": "local"}},
                                [{"name": "n1", "address": "127.0.0.1", "groups": []}])
    context = StageContext("staging", "abc", tmp_path, tmp_path / "artifacts", spec=spec,
                           settings={"untrusted_head": True})

    with pytest.raises(AnsibleStageError, match="not run for a pull request head whose author is not trusted"):
        resolve(context)
