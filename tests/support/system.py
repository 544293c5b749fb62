"""One bootstrapped example for the whole test run (CI budget: the Terraform lifecycle runs once).

The `system` and `bootstrapped` fixtures are registered in tests/conftest.py, so the end-to-end
suite and the security suite share one running system (session scope, one instance).

The real parts: a Redis server, two `tidegate worker` processes and a `tidegate beat`, the example
repo in a bare git repository served by `git daemon`, moto, SSH nodes in network namespaces and one
Kubernetes API emulator per environment (the sandbox session `tidegate up` uses), SQLite. The
test process talks to the system only as a user would: through the client interface, git pushes,
and the stand-ins' own APIs (boto3, SSH node files, kubectl).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from reconciler import repositories
from reconciler.runtime import Services
from repo_schema.loader import LoadedRepo, load_repo
from tests.reconciler.conftest import add_people
from tests.support.git_server import commit_and_push, files_of, git_daemon, make_bare_repo
from tests.support.polling import wait_until
from tidegate.client import EnvironmentView, LocalClient, SyncView
from tidegate.redis_server import EmbeddedRedis
from tidegate.sandbox_session import SandboxSession
from tidegate.settings import Settings
from tidegate.wiring import open_store
from tidegate.worker import build_services, make_app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "infra-repo"
T = TypeVar("T")


@dataclass
class System:
    """The running system and the ways a test drives and observes it."""

    data: Path
    bare: Path
    url: str
    loaded: LoadedRepo
    services: Services
    client: LocalClient
    sandbox: SandboxSession
    child_env: dict[str, str]
    repository_id: int = 0
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)
    app: Any = None
    """The Celery app on this system's Redis; other tests make their own the process default, so
    tests/conftest.py makes this one the default again for every test that uses the system."""

    def spawn(self, *argv: str, log: str) -> subprocess.Popen[bytes]:
        handle = open(self.data / "logs" / f"{log}.log", "ab")  # noqa: SIM115 - lives as long as the child
        return subprocess.Popen([sys.executable, "-m", "tidegate", *argv], env=self.child_env, stdout=handle,
                                stderr=handle, stdin=subprocess.DEVNULL, start_new_session=True)

    def spawn_worker(self) -> subprocess.Popen[bytes]:
        name = f"w{len(self.workers) + 1}"
        worker = self.spawn("worker", "--concurrency", "1", "--name", f"{name}@%h", log=f"worker-{name}")
        self.workers.append(worker)
        return worker

    def view(self, environment: str) -> EnvironmentView:
        """The environment's status line (Unknown before the first poll has recorded it)."""
        found = [v for v in self.client.status() if v.name == environment]
        return found[0] if found else EnvironmentView("infra", environment, None, "Unknown", "Unknown", False, 0,
                                                      None, None)

    def syncs(self, environment: str) -> list[SyncView]:
        """The environment's syncs, newest first, each in detail (stages and plan: the history's
        lines leave them out, as the API's history does)."""
        if not any(v.name == environment for v in self.client.status()):
            return []
        return [self.client.show_sync(line.id) for line in self.client.history(environment, limit=100)]


    def commit(self, files: dict[str, str | bytes | None], message: str) -> str:
        return commit_and_push(self.bare, files, message)

    def poll(self) -> None:
        self.services.queue.poll(self.repository_id)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}"
                         for p in sorted((self.data / "logs").glob("*.log")))


def wait_for(check: Callable[[], T | None], timeout: float, what: str, system: System | None = None,
             interval: float = 0.5) -> T:
    """Poll `check` until it returns something truthy; fail with `what` (and the logs) at the timeout."""
    return wait_until(check, timeout, what, system.logs if system is not None else str, interval)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    base = tmp_path_factory.mktemp("e2e")
    data = base / "data"
    (data / "logs").mkdir(parents=True)
    plugin_dirs = os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS", "")
    git_root = base / "git"
    git_root.mkdir()
    bare = git_root / "infra.git"
    make_bare_repo(bare, files_of(EXAMPLE), message="Add the example environments")
    loaded = load_repo(EXAMPLE)
    with EmbeddedRedis(data / "redis") as redis, git_daemon(git_root) as daemon_url, \
            SandboxSession(loaded, data / "sandbox", ssh=True) as sandbox:
        assert sandbox.nodes is not None, "the end-to-end tests need SSH nodes (root, iproute2, openssh-server)"
        settings = Settings(data_dir=data, redis_url=redis.client_url, sandbox_map=sandbox.path,
                            terraform_plugin_dirs=plugin_dirs)
        open_store(settings)
        app = make_app(settings)
        services = build_services(settings)
        child_env = {**os.environ, "TIDEGATE_DATA_DIR": str(data), "TIDEGATE_REDIS_URL": redis.client_url,
                     "TIDEGATE_SANDBOX_MAP": str(sandbox.path), "TIDEGATE_TERRAFORM_PLUGIN_DIRS": plugin_dirs,
                     "TIDEGATE_LOCK_TTL": "15", "TIDEGATE_LEADER_TTL": "5", "TIDEGATE_SCHEDULER_TICK": "1",
                     "TIDEGATE_SWEEP_INTERVAL": "3", "TIDEGATE_HEALTH_TIMEOUT": "120"}
        url = f"{daemon_url}infra.git"
        system = System(data, bare, url, loaded, services, LocalClient(services, login="platform-lead"), sandbox,
                        child_env)
        system.app = app
        with services.database.session() as session:
            system.repository_id = repositories.register(services, session, name="infra", url=url,
                                                         interval_seconds=3600).id
            add_people(session, "platform-leads", "platform-lead")
        try:
            system.spawn_worker()
            system.spawn_worker()
            system.others.append(system.spawn("beat", log="beat"))
            yield system
        finally:
            _stop(system.workers + system.others)


@dataclass
class Bootstrap:
    staging: list[SyncView]
    production_waiting: SyncView
    production: list[SyncView]
    seconds: float


@pytest.fixture(scope="session")
def bootstrapped(system: System) -> Bootstrap:
    """Bootstrap both example environments once: staging applies; production waits, is approved, applies."""
    started = time.monotonic()
    system.poll()
    wait_for(lambda: (system.view("staging").sync_status == "Synced" and system.view("staging").health == "Healthy")
             or _failed(system, "staging"), 900, "staging Synced and Healthy", system)
    waiting = wait_for(lambda: _awaiting(system, "production") or _failed(system, "production"), 600,
                       "production awaiting approval", system)
    staging = system.syncs("staging")
    system.client.approve(waiting.id, "bootstrap")  # the client acts as the platform lead
    wait_for(lambda: (system.view("production").sync_status == "Synced"
                      and system.view("production").health == "Healthy") or _failed(system, "production"),
             900, "production Synced and Healthy", system)
    return Bootstrap(staging, waiting, system.syncs("production"), time.monotonic() - started)


def _awaiting(system: System, environment: str) -> SyncView | None:
    return next((s for s in system.syncs(environment) if s.status == "awaiting_approval"), None)


def _failed(system: System, environment: str) -> Any:
    latest = system.syncs(environment)
    if latest and latest[0].status == "failed":
        raise AssertionError(f"{environment} sync #{latest[0].id} failed: {latest[0].error}\n{system.logs()}")
    return None
