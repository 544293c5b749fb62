"""deploy/container/Dockerfile and deploy/swarm/stack.yaml, built and deployed on a real swarm.

One story, in phases (each prints its duration): the engine starts (conftest), the images are built
(Tidegate's on a base made from Debian's packages, PostgreSQL's and Redis's from Debian's packages
too), the stack is deployed with tests/deploy/swarm-host-network.yaml (the sandbox listens on this
host's loopback), every service's tasks run and are healthy, the workers report themselves sealed,
an operator adds a user, a token and the example repo inside the serve container, and the CLI on
this machine talks only to the deployed serve's API: `tidegate status`, `tidegate sync staging
--wait` against the sandbox. Then `docker stack rm` and its volumes, and nothing of the stack is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from cryptography.fernet import Fernet

from repo_schema.loader import load_repo
from tests.deploy.conftest import ROOT, Docker
from tests.support.git_server import files_of, free_port, git_daemon, make_bare_repo
from tests.support.polling import wait_until
from tidegate.sandbox_session import SandboxSession

pytestmark = pytest.mark.integration
EXAMPLE = ROOT / "examples" / "infra-repo"
IMAGE = "tidegate-test/tidegate:dev"
POSTGRES_IMAGE = "tidegate-test/postgres:15"
REDIS_IMAGE = "tidegate-test/redis:7"
SERVICES = {"postgres": 1, "redis": 1, "serve": 1, "worker": 2, "beat": 1}
T = TypeVar("T")


def _wait(check: Callable[[], T | None], timeout: float, what: str, explain: Callable[[], str] = str) -> T:
    return wait_until(check, timeout, what, explain, interval=2)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _context(directory: Path, wheelhouse: Path) -> Path:
    """The build context as a user would lay it out: the repository's files, plus Terraform, its
    provider mirror, this machine's extra CA certificates and the wheels to install under
    deploy/container/vendor."""
    directory.mkdir()
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy2(ROOT / name, directory / name)
    for name in ("tidegate", "repo_schema", "reconciler", "drift", "providers", "webhooks", "dashboard", "store",
                 "sandbox", "deploy/container"):
        shutil.copytree(ROOT / name, directory / name, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns("__pycache__", "vendor"))
    vendor = directory / "deploy" / "container" / "vendor"
    vendor.mkdir()
    terraform = shutil.which("terraform")
    mirrors = [Path(p) for p in os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS", "").split(":") if p]
    assert terraform and mirrors, "terraform and its provider mirror (scripts/terraform-env.sh) are needed"
    _link_or_copy(terraform, str(vendor / "terraform"))
    for mirror in mirrors:
        shutil.copytree(mirror, vendor / "terraform-plugins", copy_function=_link_or_copy, dirs_exist_ok=True)
    certificates = vendor / "ca-certificates"
    certificates.mkdir()
    for certificate in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy2(certificate, certificates / certificate.name)
    shutil.copytree(wheelhouse, vendor / "wheels", copy_function=_link_or_copy)
    return directory


def _wheelhouse(cache: Path) -> Path:
    """Wheels of exactly the versions this machine's tests run with (`pip freeze`), made from pip's
    cache: the image installs them with `--no-index`, so a cold build does not resolve and download
    its dependencies again (that alone took 8 minutes). Kept in the cache, so a warm build's layer
    cache sees the same bytes."""
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    recipe = hashlib.sha256(frozen.encode() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    wheels = cache / f"wheels-{recipe}"
    if not wheels.exists():
        partial = cache / f"wheels-{recipe}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        constraints = cache / f"constraints-{recipe}.txt"
        constraints.write_text(frozen)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                        "--constraint", str(constraints), "--wheel-dir", str(partial), f"{ROOT}[sandbox]",
                        "setuptools>=68", "wheel"],  # Tidegate's own build backend, for the offline build
                       check=True, capture_output=True, timeout=900)
        for own in partial.glob("tidegate-*.whl"):  # the image installs Tidegate from its sources
            own.unlink()
        partial.rename(wheels)
    return wheels


def _build(docker: Docker, base: str, tmp: Path) -> None:
    """The three images at once: PostgreSQL's and Redis's wait on the package mirror while
    Tidegate's copies its layers."""
    context = _context(tmp / "context", _wheelhouse(docker.cache))
    images = ROOT / "tests" / "deploy" / "images"
    builds = [["-f", "deploy/container/Dockerfile", "-t", IMAGE, "--build-arg", "TIDEGATE_EXTRAS=sandbox",
               "--build-arg", "TERRAFORM_BINARY=deploy/container/vendor/terraform",
               "--build-arg", "TERRAFORM_PLUGINS=deploy/container/vendor/terraform-plugins",
               "--build-arg", "CA_CERTIFICATES=deploy/container/vendor/ca-certificates",
               "--build-arg", "WHEELS=deploy/container/vendor/wheels", str(context)]]
    builds += [["-f", str(images / f"{name}.Dockerfile"), "-t", tag, str(images)]
               for name, tag in (("postgres", POSTGRES_IMAGE), ("redis", REDIS_IMAGE))]
    with ThreadPoolExecutor(len(builds)) as pool:
        done = [pool.submit(docker.run, "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", *args,
                            timeout=1800) for args in builds]
        for build in done:
            build.result()


@dataclass
class Deployed:
    docker: Docker
    stack: str
    port: int
    bare: Path
    git_url: str
    env: dict[str, str]

    def tidegate(self, *args: str, timeout: float = 120) -> str:
        """The CLI on this machine, talking only to the deployed serve's API."""
        done = subprocess.run([sys.executable, "-m", "tidegate", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"tidegate {' '.join(args)}: {done.stdout}\n{done.stderr}\n{self.logs()}"
        return done.stdout

    def containers(self, service: str) -> list[str]:
        return self.docker.lines("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.stack}_{service}")

    def tasks(self) -> str:
        """Every task the services ran, restarts included, with why each one ended."""
        return self.docker.run("service", "ps", "--no-trunc", "--format", "{{.Name}} {{.CurrentState}} {{.Error}}",
                               *(f"{self.stack}_{service}" for service in SERVICES), check=False)

    def logs(self) -> str:
        return self.tasks() + "\n".join(
            f"--- {service}\n" + self.docker.run("service", "logs", "--tail", "80", f"{self.stack}_{service}",
                                                 check=False, both=True)
            for service in SERVICES)

    def healthz(self) -> dict[str, Any] | None:
        """serve's /healthz, as this machine reaches it; None while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=10) as answer:
                body: dict[str, Any] = json.loads(answer.read())
                return body
        except OSError:
            return None


def _secrets(directory: Path, postgres_port: int, redis_port: int) -> Path:
    directory.mkdir(mode=0o700)
    password, redis_password = Fernet.generate_key().hex()[:32], Fernet.generate_key().hex()[:32]
    values = {"postgres-password": password, "redis-password": redis_password,
              "database-url": f"postgresql+psycopg://tidegate:{password}@127.0.0.1:{postgres_port}/tidegate",
              "redis-url": f"redis://:{redis_password}@127.0.0.1:{redis_port}/0",
              "secret-key": Fernet.generate_key().decode()}
    for name, value in values.items():
        (directory / name).write_text(value + "\n")
    return directory


def _running_and_healthy(docker: Docker, stack: str) -> bool:
    for service, replicas in SERVICES.items():
        states = docker.lines("service", "ps", "--filter", "desired-state=running", "--format", "{{.CurrentState}}",
                              f"{stack}_{service}")
        if sum(state.startswith("Running") for state in states) != replicas:
            return False
        statuses = docker.lines("ps", "--filter", f"label=com.docker.swarm.service.name={stack}_{service}",
                                "--format", "{{.Status}}")
        if len(statuses) != replicas or not all("(healthy)" in status for status in statuses):
            return False
    return True


@pytest.fixture(scope="module")
def deployed(docker: Docker, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp("swarm")
    with docker.phase("image builds"):
        _build(docker, base_image, tmp)
    stack = f"tg{os.getpid()}"
    port, postgres_port, redis_port = free_port(), free_port(), free_port()
    git_root = tmp / "git"
    git_root.mkdir()
    bare = git_root / "infra.git"
    make_bare_repo(bare, files_of(EXAMPLE), message="Add the example environments")
    # Everything the sandbox writes (its endpoint map, the SSH nodes' key and known_hosts, which they
    # keep in a temporary directory) lies under one directory that the override mounts into the services.
    shared = tmp / "shared"
    (shared / "tmp").mkdir(parents=True)
    shared.chmod(0o755)
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(shared / "tmp")
    with git_daemon(git_root) as daemon_url, SandboxSession(load_repo(EXAMPLE), shared / "sandbox") as sandbox:
        tempfile.tempdir = saved_tempdir
        (shared / "sandbox").chmod(0o755)  # the serve container reads the endpoint map as the tidegate user
        sandbox.path.chmod(0o644)
        deploy_env = {"TIDEGATE_IMAGE": IMAGE, "TIDEGATE_POSTGRES_IMAGE": POSTGRES_IMAGE,
                      "TIDEGATE_REDIS_IMAGE": REDIS_IMAGE, "TIDEGATE_PORT": str(port),
                      "TIDEGATE_POSTGRES_PORT": str(postgres_port), "TIDEGATE_REDIS_PORT": str(redis_port),
                      "TIDEGATE_SECRETS": str(_secrets(tmp / "secrets", postgres_port, redis_port)),
                      "TIDEGATE_TEST_SANDBOX": str(shared)}
        cli_env = {key: value for key, value in os.environ.items() if not key.startswith("TIDEGATE_")}
        deployed = Deployed(docker, stack, port, bare, f"{daemon_url}infra.git",
                            {**cli_env, "TIDEGATE_SERVER": f"http://127.0.0.1:{port}"})
        try:
            with docker.phase("deploy until healthy"):
                docker.run("stack", "deploy", "--resolve-image", "never", "-c", str(ROOT / "deploy/swarm/stack.yaml"),
                           "-c", str(ROOT / "tests/deploy/swarm-host-network.yaml"), stack, env=deploy_env)
                _wait(lambda: _running_and_healthy(docker, stack), 300, "every service running and healthy",
                      deployed.logs)
                _wait(deployed.healthz, 60, "serve's /healthz answering this machine", deployed.logs)
            yield deployed
        finally:
            with docker.phase("stack rm"):
                docker.run("stack", "rm", stack, check=False)
                _wait(lambda: not docker.lines("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}"),
                      120, "the stack's containers gone")
                volumes = docker.lines("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}")
                if volumes:
                    docker.run("volume", "rm", *volumes)


@pytest.mark.docker
def test_every_service_runs_healthy_and_both_workers_report_themselves_sealed(deployed: Deployed) -> None:
    # A worker is healthy once it answers a ping; its seal report reaches Redis moments later.
    health = _wait(lambda: _with_both_workers(deployed.healthz()), 60, "both workers' seal reports in /healthz",
                   deployed.logs)
    assert health["status"] == "ok"
    # Swarm starts every service at once: serve and the workers wait for PostgreSQL (`init --wait`)
    # instead of exiting and being started again.
    restarted = [task for task in deployed.tasks().splitlines() if task.strip() and " Running " not in task]
    assert restarted == [], "every task started the first time"
    assert health["sealed"] is True, health
    assert sorted(report["worker"].split(":")[0] for report in health["workers"]) == \
        ["tidegate-worker-1", "tidegate-worker-2"], health
    assert all(report["sealed"] and "bubblewrap, user tidegate-runner" in report["reason"]
               for report in health["workers"]), health


def _with_both_workers(health: dict[str, Any] | None) -> dict[str, Any] | None:
    return health if health is not None and len(health["workers"]) == 2 else None


@pytest.mark.docker
def test_the_cli_talks_to_the_deployed_serve_and_syncs_staging_against_the_sandbox(deployed: Deployed) -> None:
    serve = deployed.containers("serve")[0]
    deployed.docker.run("exec", serve, "tidegate", "user", "add", "ops", "--role", "admin")
    token = deployed.docker.run("exec", serve, "tidegate", "token", "create", "--user", "ops").strip()
    # Registering a repository is an operator's act on the store (no API route), so it runs in serve too.
    deployed.docker.run("exec", serve, "tidegate", "repo", "add", "infra", deployed.git_url, "--interval", "3600")
    deployed.env["TIDEGATE_TOKEN"] = token
    with deployed.docker.phase("status and sync staging"):
        # Adding the repository queues its first poll, which finds the environments; the sync asked
        # for then is the one that applies that revision (staging syncs on its own too: one sync).
        _wait(lambda: "staging" in _status(deployed), 120, "staging listed by the deployed API", deployed.logs)
        deployed.tidegate("sync", "staging", "--wait", "--timeout", "600", timeout=660)
        status = _status(deployed)
    assert (status["staging"]["sync_status"], status["staging"]["health"]) == ("Synced", "Healthy"), status


def _status(deployed: Deployed) -> dict[str, dict[str, Any]]:
    return {view["name"]: view for view in json.loads(deployed.tidegate("status", "-o", "json"))}


@pytest.mark.docker
def test_removing_the_stack_leaves_no_container_network_or_volume(docker: Docker, deployed: Deployed) -> None:
    stack = deployed.stack
    print(f"the stack's tasks before removal:\n{deployed.tasks()}")
    docker.run("stack", "rm", stack)
    _wait(lambda: not docker.lines("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}"), 120,
          "the stack's containers gone")
    volumes = docker.lines("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}")
    assert sorted(volumes) == [f"{stack}_postgres", f"{stack}_redis"], "the data volumes outlive `stack rm`"
    docker.run("volume", "rm", *volumes)
    _wait(lambda: not docker.lines("network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}"),
          60, "the stack's networks gone")
    assert docker.lines("ps", "-aq") == []
    assert docker.lines("volume", "ls", "-q") == []
    assert docker.lines("secret", "ls", "-q") == []
    print("docker phases: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in docker.phases.items()))


def test_the_swarm_seccomp_profile_keeps_the_worker_profile_and_gives_mount_only_to_sys_admin() -> None:
    swarm = json.loads((ROOT / "deploy" / "swarm" / "seccomp.json").read_text())
    worker = json.loads((ROOT / "deploy" / "kubernetes" / "components" / "worker-seccomp" / "worker.json").read_text())
    assert swarm["defaultAction"] == worker["defaultAction"]
    assert all(rule in swarm["syscalls"] for rule in worker["syscalls"]), "every worker denial holds in swarm"
    conditional = [rule for rule in swarm["syscalls"] if rule.get("excludes") == {"caps": ["CAP_SYS_ADMIN"]}]
    assert len(conditional) == 1 and conditional[0]["action"] == "SCMP_ACT_ERRNO"
    assert {"mount", "umount2", "pivot_root", "unshare"} <= set(conditional[0]["names"])


def test_the_swarm_worker_sizes_its_postgresql_pool_as_the_readme_recommends() -> None:
    """deploy/README.md, "Sizing": 2 + 1 per worker process; serve keeps the defaults (5 + 10)."""
    services = yaml.safe_load((ROOT / "deploy" / "swarm" / "stack.yaml").read_text())["services"]
    worker, serve = services["worker"]["environment"], services["serve"]["environment"]
    assert (worker["TIDEGATE_DB_POOL_SIZE"], worker["TIDEGATE_DB_MAX_OVERFLOW"]) == ("2", "1")
    assert "TIDEGATE_DB_POOL_SIZE" not in serve and "TIDEGATE_DB_MAX_OVERFLOW" not in serve
