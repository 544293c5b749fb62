"""SSH test nodes: network namespaces on a bridge, each running its own sshd with key-only auth."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sandbox.nodes import STATE_DIR, TEST_NET, SshNodes, SshNodesUnavailable
from tidegate.cli_ansible import register

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def nodes() -> Iterator[SshNodes]:
    with SshNodes(2) as sandbox:
        yield sandbox


def ssh(sandbox: SshNodes, address: str, command: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", *sandbox.ssh_args(), *options, "-o", "ConnectTimeout=5", f"root@{address}", command],
        capture_output=True, text=True, timeout=30,
    )


def test_each_node_has_its_own_test_net_address_and_answers_ssh_with_the_sandbox_key(nodes: SshNodes) -> None:
    addresses = [ipaddress.IPv4Address(node.address) for node in nodes.nodes]
    assert len(set(addresses)) == 2
    assert all(address in TEST_NET for address in addresses)
    for node in nodes.nodes:
        result = ssh(nodes, node.address, "hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == node.name


def test_a_key_the_sandbox_did_not_authorise_is_refused(nodes: SshNodes, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    result = subprocess.run(
        ["ssh", "-o", f"UserKnownHostsFile={nodes.known_hosts}", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-i", str(stranger), f"root@{nodes.nodes[0].address}", "true"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_two_nodes_never_share_a_file_under_the_same_node_prefix(nodes: SshNodes) -> None:
    first, second = nodes.nodes
    assert first.node_prefix == second.node_prefix
    assert ssh(nodes, first.address, f"echo one > {first.node_prefix}/only-here").returncode == 0

    assert (first.root / "only-here").read_text() == "one\n"
    assert not (second.root / "only-here").exists()
    assert ssh(nodes, second.address, f"test -e {second.node_prefix}/only-here").returncode == 1
    assert list(nodes.managed_path.iterdir()) == []
    (first.root / "only-here").unlink()


def test_a_stopped_sshd_refuses_connections_and_starts_again(nodes: SshNodes) -> None:
    node = nodes.nodes[1]
    nodes.stop_sshd(node.name)
    try:
        refused = ssh(nodes, node.address, "true")
        assert refused.returncode == 255 and "Connection refused" in refused.stderr
    finally:
        nodes.start_sshd(node.name)
    assert ssh(nodes, node.address, "true").returncode == 0


def _leftovers(ident: str) -> list[str]:
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found = [line.split()[0] for line in namespaces.splitlines() if ident in line]
    found += [line for line in links.splitlines() if ident in line]
    if (STATE_DIR / f"{ident}.json").exists():
        found.append("state file")
    return found


def test_everything_is_removed_on_exit_also_when_the_body_fails() -> None:
    sandbox = SshNodes(1)
    with pytest.raises(RuntimeError, match="boom"), sandbox:
        directory = sandbox.directory
        assert _leftovers(sandbox.ident)
        raise RuntimeError("boom")
    assert _leftovers(sandbox.ident) == []
    assert not directory.exists()


def test_a_sandbox_left_by_a_killed_process_is_removed_by_the_next_one(tmp_path: Path) -> None:
    script = ("from sandbox.nodes import SshNodes\nimport time\ns = SshNodes(1)\ns.start()\n"
              "print(s.ident, flush=True)\ntime.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout is not None
    ident = child.stdout.readline().strip()
    child.kill()
    child.wait()
    assert _leftovers(ident)

    with SshNodes(1):
        assert _leftovers(ident) == []


def test_where_network_namespaces_are_not_permitted_the_error_says_so() -> None:
    # An unprivileged user namespace: no CAP_NET_ADMIN over the machine's network.
    result = subprocess.run(
        ["unshare", "--user", sys.executable, "-c", "from sandbox.nodes import SshNodes; SshNodes(1).start()"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert result.returncode != 0
    assert SshNodesUnavailable.__name__ in result.stderr
    assert "network namespaces are not permitted" in result.stderr


def _cli() -> typer.Typer:
    app = typer.Typer()
    sandbox = typer.Typer()
    register(sandbox)
    app.add_typer(sandbox, name="sandbox")
    return app


@pytest.mark.parametrize("count", [pytest.param(1, id="one-node"), pytest.param(3, id="three-nodes")])
def test_sandbox_nodes_check_pings_every_node_over_ssh_and_removes_them(count: int) -> None:
    result = CliRunner().invoke(_cli(), ["sandbox", "nodes", "--count", str(count), "--check"])

    assert result.exit_code == 0, result.output
    assert f"{count}/{count} nodes answered over SSH" in result.output
    assert "ansible_connection: ssh" in result.output
    assert "node_prefix:" in result.output


def test_sandbox_nodes_keeps_the_nodes_until_interrupted_then_removes_them() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tidegate", "sandbox", "nodes", "--count", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert child.stdout is not None and child.stderr is not None
    header = child.stdout.readline()
    ident = header.split("bridge tgb", 1)[1].split()[0]
    deadline = time.monotonic() + 120
    ready = False
    while not ready and time.monotonic() < deadline:
        line = child.stderr.readline()
        ready = "Ctrl-C" in line
        if not line:
            break
    assert ready, "the command never said the nodes were up"
    assert len([name for name in _leftovers(ident) if name.startswith("tgn-")]) == 2

    os.kill(child.pid, signal.SIGINT)
    assert child.wait(timeout=120) == 0, child.stderr.read()
    assert _leftovers(ident) == []


def test_the_examples_configuration_plans_in_sandbox_mode_with_every_substitution_logged(tmp_path: Path) -> None:
    from repo_schema.loader import load_repo
    from tidegate.cli_ansible import format_plan, sandbox_plan

    logged: list[str] = []
    # The shape of the example module's `nodes` output (the CLI takes it from a sandbox apply).
    nodes = [{"name": "production-node-1", "address": "10.40.1.10", "groups": ["nodes", "ingress"]},
             {"name": "production-node-2", "address": "10.40.2.10", "groups": ["nodes"]}]
    plan = sandbox_plan(load_repo(ROOT / "examples" / "infra-repo"), "production", tmp_path, nodes,
                        log=logged.append)

    text = format_plan(plan)
    assert text.startswith("configuration: +14 ~0 -0")
    assert "create  production-node-1/common : Write the node identity file" in text
    assert "+TIDEGATE_NODE_NAME=production-node-2" in text
    assert [line.split(" -> ")[0] for line in logged[:2]] == [
        "sandbox: production-node-1", "sandbox: production-node-2",
    ]
    assert "replaces connection.privateKeyRef" in logged[2]
