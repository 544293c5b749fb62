"""Real SSH hosts for the tests and the demo: one network namespace per node, each running sshd.

Layout of one sandbox (`SshNodes(count)`), all names carrying a random sandbox id:

* a Linux bridge `tgb<id>` holding the first address of a block of the TEST-NET-2 range
  198.51.100.0/24 (RFC 5737; never routed on the internet). The block is chosen after checking
  that no route or address of this machine overlaps it; IP forwarding is not touched, so nodes
  reach nothing but the bridge address.
* per node, a network namespace `tgn-<id>-<i>` with a veth pair (host end on the bridge, node end
  `eth0` in the namespace) and Debian's `sshd` listening on the node's address, port 22 of the
  namespace (never the machine's own port 22). Host key generated per sandbox, key-only auth,
  one client key pair generated per sandbox and authorised on every node.
* per node, a private mount namespace (and UTS namespace, so `hostname` is the node name) in which
  the node's own directory `<sandbox>/nodes/<name>/root` is bind-mounted over the common path
  `<sandbox>/managed`. Every node therefore sees its own files at the same `node_prefix` and two
  nodes never share a file; a run that did not go over SSH would write to the machine's empty
  `<sandbox>/managed` instead, which the tests check. `node.root` is the host's view of a node's
  files (for "edited by hand" scenarios).

Everything is removed on exit, also when the body raises, and sandboxes left behind by a killed
process are removed by the next one (their owner pid is recorded under /run/tidegate-nodes).
Where network namespaces are not permitted (no root, no CAP_NET_ADMIN/CAP_SYS_ADMIN, a container
without them) `SshNodesUnavailable` says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

log = logging.getLogger(__name__)

TEST_NET = ipaddress.IPv4Network("198.51.100.0/24")
STATE_DIR = Path("/run/tidegate-nodes")
MAX_NODES = 60
_SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


class SshNodesUnavailable(RuntimeError):
    """SSH test nodes cannot be created on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class SshNode:
    """One node as a client sees it, plus the host's view of its files."""

    name: str
    address: str
    port: int
    user: str
    private_key: Path
    node_prefix: str
    root: Path
    namespace: str
    log_path: Path

    def host_vars(self) -> dict[str, Any]:
        return {
            "ansible_host": self.address,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_connection": "ssh",
            "ansible_ssh_private_key_file": str(self.private_key),
            "ansible_python_interpreter": "/usr/bin/python3",
            "node_prefix": self.node_prefix,
        }


@dataclass
class _Process:
    node: str
    popen: subprocess.Popen[bytes]


@dataclass
class SshNodes:
    """Context manager creating `count` SSH nodes; `with SshNodes(2) as nodes: nodes.nodes[0]...`."""

    count: int
    name_prefix: str = "node-"
    base_dir: Path | None = None
    ident: str = field(default_factory=lambda: secrets.token_hex(3))
    nodes: list[SshNode] = field(default_factory=list, init=False)
    directory: Path = field(default=Path(), init=False)
    network: ipaddress.IPv4Network | None = field(default=None, init=False)
    _processes: list[_Process] = field(default_factory=list, init=False)
    _created_links: list[str] = field(default_factory=list, init=False)
    _created_namespaces: list[str] = field(default_factory=list, init=False)

    # -- public API ---------------------------------------------------------------------------

    @property
    def bridge(self) -> str:
        return f"tgb{self.ident}"

    @property
    def private_key(self) -> Path:
        return self.directory / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def managed_path(self) -> Path:
        """The common path at which every node sees its own files (published as `node_prefix`)."""
        return self.directory / "managed"

    def node(self, name: str) -> SshNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def ssh_args(self) -> list[str]:
        """Client options that trust exactly this sandbox's host key and use its client key."""
        return [
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-i", str(self.private_key),
        ]

    def inventory(self, groups: Sequence[str] = ("nodes",)) -> dict[str, Any]:
        """An Ansible YAML inventory with every node in `groups`."""
        hosts = {node.name: node.host_vars() for node in self.nodes}
        common_args = f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes"
        children = {group: {"hosts": {name: None for name in hosts}} for group in groups}
        return {"all": {"hosts": hosts, "vars": {"ansible_ssh_common_args": common_args}, "children": children}}

    def inventory_yaml(self) -> str:
        return yaml.safe_dump(self.inventory(), sort_keys=False)

    def terraform_nodes(self) -> list[dict[str, Any]]:
        """The nodes as the Terraform `nodes` output lists them (the Ansible stage's input)."""
        return [
            {"name": node.name, "address": node.address, "groups": ["nodes", "ingress"] if i == 0 else ["nodes"]}
            for i, node in enumerate(self.nodes)
        ]

    def endpoint_map(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """Connection settings for the Ansible stage that send the given node names to these nodes.

        In sandbox mode the composition root maps the node names Terraform reported (in order)
        onto the sandbox's nodes; without `names` the sandbox's own names are used. Returns plain
        settings: `connection` (user, port, host overrides), `host_vars` (node_prefix),
        `known_hosts` (text) and `private_key_path` (the composition root reads it into the
        credentials; the key itself is never part of settings).
        """
        wanted = list(names) if names is not None else [node.name for node in self.nodes]
        if len(wanted) > len(self.nodes):
            raise ValueError(f"{len(wanted)} node names but the sandbox has {len(self.nodes)} nodes")
        overrides = {}
        host_vars = {}
        for name, node in zip(wanted, self.nodes, strict=False):
            overrides[name] = {"address": node.address, "port": node.port, "user": node.user}
            host_vars[name] = {"node_prefix": node.node_prefix, "ansible_python_interpreter": "/usr/bin/python3"}
        return {
            "connection": {"type": "ssh", "user": self.nodes[0].user, "port": 22, "hostOverrides": overrides},
            "host_vars": host_vars,
            "known_hosts": self.known_hosts.read_text(),
            "private_key_path": str(self.private_key),
        }

    def stop_sshd(self, name: str) -> None:
        """Stop one node's sshd and its sessions (the node keeps its address: connections are
        refused, as on a machine whose sshd died)."""
        node = self.node(name)
        _kill_namespace_processes(node.namespace)
        for process in [process for process in self._processes if process.node == name]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=5)
            self._processes.remove(process)

    def start_sshd(self, name: str, timeout: float = 10.0) -> None:
        """Start a stopped node's sshd again; returns once it listens."""
        node = self.node(name)
        if any(process.node == name and process.popen.poll() is None for process in self._processes):
            return
        listening = node.log_path.read_text(errors="replace").count("Server listening")
        self._spawn_sshd(node)
        self._wait_listening(node, listening + 1, timeout)

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> SshNodes:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        if not 1 <= self.count <= MAX_NODES:
            raise ValueError(f"count must be between 1 and {MAX_NODES}, got {self.count}")
        _check_prerequisites()
        try:
            self.directory = Path(tempfile.mkdtemp(prefix=f"tidegate-nodes-{self.ident}-", dir=self.base_dir))
            self.managed_path.mkdir()
            self._generate_keys()
            with _state_lock():
                _remove_abandoned()
                self.network = _free_block(self.count)
                self._record_state()
                self._create_bridge()
            hosts = list(self.network.hosts())
            for index in range(self.count):
                self.nodes.append(self._create_node(index, str(hosts[index + 1])))
            self._write_known_hosts()
            self._wait_for_sshd()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove everything this sandbox created; safe to call twice and after a partial start."""
        for namespace in self._created_namespaces:
            _kill_namespace_processes(namespace)
        for process in self._processes:
            with contextlib.suppress(ProcessLookupError):
                process.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=5)
        self._processes.clear()
        for namespace in reversed(self._created_namespaces):
            _ip("netns", "delete", namespace, check=False)
        self._created_namespaces.clear()
        for link in reversed(self._created_links):
            _ip("link", "delete", link, check=False)
        self._created_links.clear()
        with contextlib.suppress(FileNotFoundError):
            (STATE_DIR / f"{self.ident}.json").unlink()
        if self.directory != Path() and self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)
        self.nodes = []

    # -- steps --------------------------------------------------------------------------------

    def _generate_keys(self) -> None:
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tidegate-sandbox-{self.ident}",
                 "-f", str(self.directory / name)],
                check=True, capture_output=True,
            )
        os.chmod(self.private_key, 0o600)
        shutil.copyfile(self.directory / "client_key.pub", self.directory / "authorized_keys")

    def _record_state(self) -> None:
        STATE_DIR.mkdir(mode=0o700, exist_ok=True)
        state = {"owner": os.getpid(), "ident": self.ident, "directory": str(self.directory), "count": self.count}
        (STATE_DIR / f"{self.ident}.json").write_text(json.dumps(state))

    def _create_bridge(self) -> None:
        assert self.network is not None
        gateway = f"{next(self.network.hosts())}/{self.network.prefixlen}"
        _ip("link", "add", self.bridge, "type", "bridge")
        self._created_links.append(self.bridge)
        _ip("addr", "add", gateway, "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def _create_node(self, index: int, address: str) -> SshNode:
        assert self.network is not None
        name = f"{self.name_prefix}{index + 1}"
        namespace = f"tgn-{self.ident}-{index + 1}"
        veth = f"tgv{self.ident}{index + 1}"
        _ip("netns", "add", namespace)
        self._created_namespaces.append(namespace)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        self._created_links.append(veth)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", namespace, "link", "set", "eth0", "up")

        node_dir = self.directory / "nodes" / name
        root = node_dir / "root"
        root.mkdir(parents=True)
        (node_dir / "sshd_config").write_text(_sshd_config(address, self.directory))
        node = SshNode(
            name=name, address=address, port=22, user=_current_user(), private_key=self.private_key,
            node_prefix=str(self.managed_path), root=root, namespace=namespace, log_path=node_dir / "sshd.log",
        )
        self._spawn_sshd(node)
        return node

    def _spawn_sshd(self, node: SshNode) -> None:
        """sshd in the node's network namespace, with a private mount namespace in which the node's
        root is bind-mounted over the common managed path, and its own hostname."""
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # Debian's sshd privilege separation dir
        config = node.log_path.parent / "sshd_config"
        script = (
            f"mount --bind {_quote(node.root)} {_quote(self.managed_path)} && hostname {_quote(node.name)} && "
            f"exec {_sshd()} -D -e -f {_quote(config)}"
        )
        with node.log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", node.namespace, "unshare", "--mount", "--uts", "--propagation", "private",
                 "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                start_new_session=True,
            )
        self._processes.append(_Process(node.name, popen))

    def _write_known_hosts(self) -> None:
        public = (self.directory / "host_key.pub").read_text().split()
        lines = [f"{node.address} {public[0]} {public[1]}\n" for node in self.nodes]
        self.known_hosts.write_text("".join(lines))

    def _wait_for_sshd(self, timeout: float = 10.0) -> None:
        for node in self.nodes:
            self._wait_listening(node, 1, timeout)

    def _wait_listening(self, node: SshNode, times: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = [process for process in self._processes if process.node == node.name][-1]
        while True:
            if process.popen.poll() is not None:
                raise SshNodesUnavailable(
                    f"sshd of {node.name} exited with {process.popen.returncode}: "
                    f"{node.log_path.read_text(errors='replace').strip()}"
                )
            if node.log_path.read_text(errors="replace").count("Server listening") >= times:
                return
            if time.monotonic() > deadline:
                raise SshNodesUnavailable(f"sshd of {node.name} did not start within {timeout:.0f} s")
            time.sleep(0.02)


# -- helpers ------------------------------------------------------------------------------------


def _sshd_config(address: str, directory: Path) -> str:
    return "\n".join([
        f"ListenAddress {address}:22",
        f"HostKey {directory / 'host_key'}",
        f"AuthorizedKeysFile {directory / 'authorized_keys'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        # The sandbox lives under /tmp, which is world-writable: StrictModes would refuse it.
        "StrictModes no",
        "UseDNS no",
        "PidFile none",
        "MaxSessions 50",
        "MaxStartups 100:30:200",
        "Subsystem sftp internal-sftp",
        "",
    ])


def _quote(value: object) -> str:
    import shlex

    return shlex.quote(str(value))


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _sshd() -> str:
    for candidate in _SSHD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("sshd")
    if found:
        return found
    raise SshNodesUnavailable(
        "sshd is not installed: SSH test nodes need Debian's openssh-server "
        "(apt-get install -y openssh-server iproute2; scripts/setup.sh --dev installs it)"
    )


def _check_prerequisites() -> None:
    _sshd()
    if shutil.which("ip") is None:
        raise SshNodesUnavailable("`ip` is not installed: SSH test nodes need iproute2 (apt-get install -y iproute2)")
    if shutil.which("ssh-keygen") is None:
        raise SshNodesUnavailable("ssh-keygen is not installed: SSH test nodes need openssh-client")
    if os.geteuid() != 0:
        raise SshNodesUnavailable(
            "network namespaces are not permitted: SSH test nodes need root (CAP_NET_ADMIN and "
            f"CAP_SYS_ADMIN) to create network namespaces, a bridge and veth pairs; running as uid {os.geteuid()}"
        )
    probe = f"tgprobe-{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        raise SshNodesUnavailable(
            "network namespaces are not permitted on this machine (`ip netns add` failed: "
            f"{result.stderr.strip()}); SSH test nodes need CAP_NET_ADMIN and CAP_SYS_ADMIN"
        )
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        message = result.stderr.strip()
        if "Operation not permitted" in message:
            raise SshNodesUnavailable(
                f"network namespaces are not permitted on this machine (`ip {' '.join(args)}`: {message})"
            )
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {message}")
    return result


def _kill_namespace_processes(namespace: str) -> None:
    """Kill every process in a namespace (sshd and its sessions), then wait until they are gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        result = _ip("netns", "pids", namespace, check=False)
        pids = [int(pid) for pid in result.stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and _ip("netns", "pids", namespace, check=False).stdout.strip():
            time.sleep(0.02)


def _used_networks() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    for route in routes:
        destination = route.get("dst", "")
        if destination in ("", "default") or route.get("type") in ("broadcast", "local"):
            continue
        with contextlib.suppress(ValueError):
            used.append(ipaddress.IPv4Network(destination, strict=False))
    for link in json.loads(_ip("-j", "-4", "addr", "show").stdout or "[]"):
        for info in link.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                used.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return used


def _free_block(count: int) -> ipaddress.IPv4Network:
    """The first block of 198.51.100.0/24 large enough for the bridge and `count` nodes that this
    machine neither routes nor uses (a route covering the whole range makes it unusable)."""
    prefix = 30
    while (2 ** (32 - prefix)) - 3 < count:
        prefix -= 1
    used = _used_networks()
    for block in TEST_NET.subnets(new_prefix=prefix):
        if not any(block.overlaps(network) for network in used):
            return block
    covering = [str(network) for network in used if network.overlaps(TEST_NET)]
    raise SshNodesUnavailable(
        f"no free block of {TEST_NET} for {count} nodes: this machine already routes or uses {', '.join(covering)}"
    )


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    with (STATE_DIR / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned() -> None:
    """Remove sandboxes whose owning process died without cleaning up (a killed test run)."""
    for state_file in STATE_DIR.glob("*.json"):
        try:
            state = json.loads(state_file.read_text())
            owner, ident = int(state["owner"]), str(state["ident"])
        except (OSError, ValueError, KeyError):
            continue
        if _pid_alive(owner):
            continue
        log.warning("removing SSH sandbox %s abandoned by process %s", ident, owner)
        namespaces = [name.split()[0] for name in _ip("netns", "list", check=False).stdout.splitlines()]
        for namespace in namespaces:
            if namespace.startswith(f"tgn-{ident}-"):
                _kill_namespace_processes(namespace)
                _ip("netns", "delete", namespace, check=False)
        _ip("link", "delete", f"tgb{ident}", check=False)
        directory = Path(state.get("directory", ""))
        if directory.name.startswith("tidegate-nodes-"):
            shutil.rmtree(directory, ignore_errors=True)
        state_file.unlink(missing_ok=True)


def port_open(address: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at address:port (only used on sandbox addresses)."""
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=timeout):
        return True
    return False
