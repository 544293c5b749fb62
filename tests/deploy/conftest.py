"""A Docker engine for the deploy tests: Debian's `dockerd`, started by the fixture on private paths.

Networking is fixed so that the engine can never cut this machine off: the bridge and every local
network come from 198.18.0.0/16, the swarm's overlays from 198.19.0.0/16 (both in 198.18.0.0/15,
away from the private ranges, the machine's own subnet and the package proxy), and `--iptables=false`
leaves the host's routing and firewall alone. Its seccomp profile is deploy/swarm/seccomp.json, as
deploy/README.md tells a swarm node's operator. Images and layers are kept in a cache directory
between runs (`TIDEGATE_TEST_CACHE`, default ~/.cache/tidegate-tests), so a second run rebuilds only
what changed; the swarm itself is left and the daemon stopped (by its PID) at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.git_server import free_port

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = "198.18.0.1/24"
ADDRESS_POOL = "base=198.18.0.0/16,size=24"
SWARM_POOL = "198.19.0.0/16"
BASE_IMAGE = "tidegate-test/python:3.11-slim"
#: The local stand-in for python:3.11-slim-bookworm: Debian 12 with its Python 3.11.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
SUITES = ("bookworm", "bookworm-updates")
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"


@dataclass
class Docker:
    """The docker CLI against the fixture's engine, and what each phase took."""

    host: str
    cache: Path
    phases: dict[str, float] = field(default_factory=dict)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false",
                **(extra or {})}

    def run(self, *args: str, timeout: float = 300, check: bool = True, env: Mapping[str, str] | None = None,
            both: bool = False) -> str:
        """`docker ARGS`; `env` adds variables (a stack file's ${…}); `both` returns stderr interleaved
        with stdout (`service logs` writes each container's stderr there: Celery logs to it)."""
        done = subprocess.run(["docker", *args], env=self.env(env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT if both else subprocess.PIPE, text=True, timeout=timeout,
                              check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}"
                                 f"\n{(done.stderr or '')[-3000:]}")
        return done.stdout

    def lines(self, *args: str) -> list[str]:
        return [line for line in self.run(*args).splitlines() if line.strip()]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = time.monotonic() - started
            print(f"docker phase {name}: {self.phases[name]:.1f} s", flush=True)


def _require(tool: str) -> str:
    found = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if Path(p).exists()),
                                       None)
    if found is None:
        # Under CI=true tests/conftest.py turns this skip into a failure: scripts/setup.sh installs them.
        pytest.skip(f"{tool} is not installed (scripts/setup.sh --dev installs docker.io and mmdebstrap)")
    return found


def _cache_dir() -> Path:
    cache = Path(os.environ.get("TIDEGATE_TEST_CACHE") or Path.home() / ".cache" / "tidegate-tests")
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def _wait_for_engine(docker: Docker, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dockerd exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        if docker.run("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).strip():
            return
        time.sleep(0.5)
    raise AssertionError(f"dockerd did not answer within 90 s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the daemon we started, by its PID, then wait for the rest of its process group (its
    containerd, which holds the data root's database until it has exited: a next engine started on
    the same cache before that fails with "timeout waiting for containerd to start")."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for wait in (30, 30):
        deadline = time.monotonic() + wait
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _group_alive(process.pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    """Whether a process of process group `group` still runs (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            return True
    return False


def _unmount_under(directory: Path) -> None:
    """dockerd leaves its namespace files (exec-root/netns/…) mounted after it stops."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for target in reversed([m for m in mounts if m.startswith(f"{directory}/")]):
        subprocess.run(["umount", "--lazy", target], check=False, capture_output=True)


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    dockerd = _require("dockerd")
    _require("docker")
    cache = _cache_dir()
    run_dir = Path(tempfile.mkdtemp(prefix="tgd-"))  # short: the daemon's sockets live under it
    host = f"unix://{run_dir}/docker.sock"
    log = run_dir / "dockerd.log"
    engine = Docker(host, cache)
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [dockerd, "--data-root", str(cache / "docker"), "--exec-root", str(run_dir / "exec"),
             "--pidfile", str(run_dir / "docker.pid"), "-H", host, "--bip", BRIDGE,
             "--default-address-pool", ADDRESS_POOL, "--iptables=false",
             "--seccomp-profile", str(ROOT / "deploy" / "swarm" / "seccomp.json")],
            stdout=handle, stderr=handle, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        with engine.phase("engine start"):
            _wait_for_engine(engine, process, log)
            # A run that was killed may have left its swarm and containers in the cached data root.
            engine.run("swarm", "leave", "--force", check=False)
            engine.run("container", "prune", "--force")
            engine.run("volume", "prune", "--force")
            engine.run("swarm", "init", "--default-addr-pool", SWARM_POOL, "--advertise-addr", "127.0.0.1",
                       "--listen-addr", f"127.0.0.1:{free_port()}")
        yield engine
    finally:
        with contextlib.suppress(Exception):
            engine.run("swarm", "leave", "--force", timeout=60, check=False)
            # The cache keeps the current images and their layers, not every superseded build.
            engine.run("image", "prune", "--force", timeout=120, check=False)
        _stop(process)
        _unmount_under(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def base_image(docker: Docker) -> str:
    """Debian 12 with Python, made from Debian's packages (no image registry is reachable here)."""
    with docker.phase("base image"):
        if docker.run("image", "inspect", BASE_IMAGE, check=False).strip() not in ("", "[]"):
            return BASE_IMAGE
        mmdebstrap = _require("mmdebstrap")
        recipe = json.dumps([BASE_PACKAGES, SUITES, MIRROR]).encode()
        tarball = docker.cache / f"bookworm-python-{hashlib.sha256(recipe).hexdigest()[:12]}.tar"
        if not tarball.exists():
            partial = tarball.with_name(f"{tarball.stem}.partial.tar")  # mmdebstrap's format follows the suffix
            partial.unlink(missing_ok=True)
            sources = [f"deb {MIRROR} {suite} main" for suite in SUITES]
            sources.append(f"deb {SECURITY_MIRROR} bookworm-security main")
            subprocess.run([mmdebstrap, "--quiet", "--variant=apt", f"--include={','.join(BASE_PACKAGES)}",
                            "--aptopt=Acquire::Check-Valid-Until \"false\"", "bookworm", str(partial), *sources],
                           check=True, capture_output=True, timeout=900)
            partial.rename(tarball)
        docker.run("import", str(tarball), BASE_IMAGE, timeout=300)
    return BASE_IMAGE
