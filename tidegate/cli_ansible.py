"""`tidegate sandbox nodes`: real SSH test nodes (network namespaces running sshd) on this machine.

Wiring: `register(sandbox)` adds the `nodes` command to the `sandbox` command group.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from providers.ansible import AnsibleStage, ConfigurationInputs
from providers.ansible.events import TaskStatus, parse_events
from providers.ansible.runner import RunRequest, run_playbook
from providers.stage import Action, StageContext, StagePlan
from reconciler.contexts import configuration_spec
from repo_schema.loader import LoadedRepo
from sandbox.nodes import MAX_NODES, SshNodes, SshNodesUnavailable

err = Console(stderr=True, highlight=False, soft_wrap=True)

PING_PLAYBOOK = """\
- name: Ping every sandbox node over SSH
  hosts: all
  gather_facts: false
  tasks:
    - name: ping
      ansible.builtin.ping:
"""


def ping_nodes(nodes: SshNodes, work_dir: Path) -> dict[str, str | None]:
    """An Ansible ping over SSH to every node: node name → None if it answered, else the error."""
    playbook = work_dir / "ping.yml"
    playbook.write_text(PING_PLAYBOOK)
    work_dir.chmod(0o755)  # the playbook runs sealed, as the runner user, which must read it
    playbook.chmod(0o644)
    inventory = nodes.inventory()
    for host_vars in inventory["all"]["hosts"].values():
        host_vars.pop("ansible_ssh_private_key_file", None)
    inventory["all"]["vars"].pop("ansible_ssh_common_args", None)
    outcome = run_playbook(
        RunRequest(playbook=playbook, inventory=inventory, private_key=nodes.private_key.read_text(),
                   known_hosts=nodes.known_hosts.read_text(), diff=False),
        work_dir / "run", ident="ping",
    )
    report = parse_events(outcome.events)
    answers: dict[str, str | None] = {}
    for node in nodes.nodes:
        tasks = report.for_host(node.name)
        if node.name in report.host_errors:
            answers[node.name] = report.host_errors[node.name]
        elif tasks and all(task.status is TaskStatus.ok for task in tasks):
            answers[node.name] = None
        else:
            answers[node.name] = f"no answer (ansible-playbook status {outcome.status})"
    return answers


def sandbox_context(repo: LoadedRepo, environment: str, workdir: Path, artifacts: Path, nodes: SshNodes,
                    nodes_output: list[dict[str, Any]],
                    log: Callable[[str], None]) -> StageContext[ConfigurationInputs]:
    """The configuration stage's context in sandbox mode: Terraform's node names are sent to the
    sandbox's SSH nodes and the sandbox's client key replaces the repo's privateKeyRef; every
    substitution is logged."""
    endpoint = nodes.endpoint_map([node["name"] for node in nodes_output])
    key_path = Path(endpoint.pop("private_key_path"))
    for name, override in endpoint["connection"]["hostOverrides"].items():
        log(f"sandbox: {name} -> ssh://{override['user']}@{override['address']}:{override['port']}")
    log(f"sandbox: SSH key from {key_path} replaces connection.privateKeyRef; host vars node_prefix="
        f"{nodes.managed_path} (each node sees its own files there)")
    return StageContext(
        environment=environment, revision="working-tree", workdir=workdir, artifacts=artifacts,
        spec=ConfigurationInputs(configuration_spec(repo, environment), nodes_output),
        credentials={"ssh_private_key": key_path.read_text()}, settings=endpoint,
    )


def format_plan(plan: StagePlan) -> str:
    """A configuration plan as people read it: one line per changed host/task, then its diff."""
    lines = [f"configuration: {plan.summary()} ({sum(c.action is Action.no_op for c in plan.changes)} unchanged)"]
    for change in plan.changes:
        if change.action is Action.no_op:
            continue
        lines.append(f"  {change.action.value:<7} {change.address}")
        lines.extend(f"      {line}" for line in change.diff.splitlines())
    return "\n".join(lines) + "\n"


def sandbox_plan(repo: LoadedRepo, environment: str, artifacts: Path,
                 nodes_output: list[dict[str, Any]],
                 log: Callable[[str], None] = lambda line: err.print(line, markup=False)) -> StagePlan:
    """`tidegate plan ENV --repo PATH --stage configuration --sandbox`: SSH nodes for the
    environment's nodes, a check-mode plan against them, nodes removed afterwards."""
    with SshNodes(len(nodes_output)) as nodes:
        context = sandbox_context(repo, environment, repo.root, artifacts, nodes, nodes_output, log)
        return AnsibleStage().plan(context)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def nodes(
    count: Annotated[int, typer.Option("--count", min=1, max=MAX_NODES, help="How many nodes.")] = 2,
    check: Annotated[bool, typer.Option("--check", help="Ping each node over SSH with Ansible, remove them, "
                                        "exit 0 only if every node answered.")] = False,
) -> None:
    """Create SSH nodes (network namespaces running sshd), print their inventory, keep them until Ctrl-C."""
    # Both signals explicitly: a process started in the background by a non-interactive shell
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt for Ctrl-C/kill -INT.
    previous = {number: signal.signal(number, _raise_interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with SshNodes(count) as sandbox:
            sys.stdout.write(f"# {count} SSH nodes, bridge {sandbox.bridge} {sandbox.network}; "
                             f"client key {sandbox.private_key}\n")
            sys.stdout.write(sandbox.inventory_yaml())
            sys.stdout.flush()
            if check:
                with tempfile.TemporaryDirectory(prefix="tidegate-ping-") as work:
                    started = time.monotonic()
                    answers = ping_nodes(sandbox, Path(work))
                elapsed = time.monotonic() - started
                failed = {name: error for name, error in answers.items() if error}
                for name, error in answers.items():
                    err.print(f"{name}: {'pong' if error is None else error}", markup=False)
                err.print(f"{len(answers) - len(failed)}/{len(answers)} nodes answered over SSH in {elapsed:.1f} s",
                          markup=False)
                if failed:
                    raise typer.Exit(1)
                return
            node = sandbox.nodes[0]
            err.print(f"try: ssh {' '.join(sandbox.ssh_args())} {node.user}@{node.address}", markup=False)
            err.print("nodes are up; Ctrl-C removes them", markup=False)
            while True:
                time.sleep(3600)
    except SshNodesUnavailable as error:
        err.print(f"SSH nodes unavailable: {error}", markup=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("nodes removed", markup=False)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def register(sandbox: typer.Typer) -> None:
    """Add `nodes` to the `sandbox` command group."""
    sandbox.command("nodes")(nodes)
