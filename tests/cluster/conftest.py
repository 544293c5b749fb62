"""One multi-machine Tidegate for the fault suite, bootstrapped once and shared by every scenario.

The shape the README describes for several machines, with every part real: PostgreSQL (the server
the store's tests start, tests/store/conftest.py), Debian's `redis-server` with its append-only
file in its own directory, `tidegate serve`, two `tidegate worker`s that share nothing but the
database and the broker (each has its own data dir and working directory, as two machines would)
and one `tidegate beat`, syncing the example repo (served by `git daemon`) against the sandbox
session the end-to-end suite uses (moto, SSH nodes, one Kubernetes API emulator per environment).
The Tidegate processes reach moto through a proxy that can hold one AWS call in mid-air
(tests/support/aws_hold.py): the moment a scenario kills a worker during `terraform apply`.

The test process is an operator with access to every part: it reads the store and Redis, pushes
commits, stops and starts the servers, and kills processes by their own pid or process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from dashboard.identity import Grant, bind, create_user, issue_token
from reconciler import heartbeats, pollstats, repositories
from reconciler.locks import EnvironmentLock
from reconciler.pipeline import lock_name
from reconciler.runtime import Services
from reconciler.syncs import ACTIVE
from repo_schema.loader import LoadedRepo, load_repo
from sandbox.aws import AwsEndpoints
from sandbox.kube.runner import KubeSandbox
from store import Role, SecretBox, Sync
from tests.reconciler.conftest import add_people
from tests.store.conftest import PostgresServer, _Runner, find_postgres_bin_dir, postgres_server
from tests.support.aws_hold import AwsHoldProxy
from tests.support.git_server import commit_and_push, files_of, free_port, git_daemon, make_bare_repo
from tests.support.polling import wait_until
from tidegate.client import EnvironmentView, LocalClient, SyncView
from tidegate.http_client import HttpClient
from tidegate.redis_server import EmbeddedRedis, redis_binary
from tidegate.sandbox_session import SandboxSession
from tidegate.settings import Settings
from tidegate.wiring import open_store
from tidegate.worker import build_services, make_app

__all__ = ["Cluster", "postgres_server", "until"]

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "infra-repo"
REPOSITORY = "infra"
POLL_INTERVAL = 5
"""Seconds between the beat's polls of the repository (the example's own `interval: 2m` is for
people; the suite registers the repository with this one, so a git outage of two polls lasts ~10 s)."""
GREETING_FILE = "apps/web/overlays/staging/configmap-patch.yaml"
STAGING_CONFIG = ("configmaps", "web", "web-config")
"""The one object a greeting commit changes: only staging reads the file, only the workloads
stage renders it, so the infrastructure and configuration stages are left out unplanned."""
SETTINGS = {"TIDEGATE_LOCK_TTL": "15", "TIDEGATE_LEADER_TTL": "5", "TIDEGATE_SCHEDULER_TICK": "1",
            "TIDEGATE_SWEEP_INTERVAL": "3", "TIDEGATE_HEALTH_TIMEOUT": "120", "TIDEGATE_POLL_JITTER": "0"}
"""Short lock and sweep periods so that a takeover costs seconds, not the production minutes."""


@dataclass
class Postgres:
    """The session's PostgreSQL server, and the restart a fault scenario needs (same port, same data)."""

    server: PostgresServer
    url: str

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, the server comes back with the options
        (port, socket directory) it was started with."""
        bin_dir = find_postgres_bin_dir()
        assert bin_dir is not None
        result = _Runner().run(str(bin_dir / "pg_ctl"), "-D", str(self.server.socket_dir / "data"), "-m", "fast",
                               "-w", "-t", "60", "-l", str(self.server.socket_dir / "postgres.log"), "restart")
        assert result.returncode == 0, f"pg_ctl restart failed: {result.stdout}\n{result.stderr}"


@dataclass
class Machine:
    """One machine's worth of Tidegate: its own working directory and data dir, its own processes."""

    name: str
    home: Path

    @property
    def data(self) -> Path:
        return self.home / "data"


@dataclass
class Cluster:
    """The running installation and the ways a scenario drives, breaks and observes it."""

    base: Path
    bare: Path
    url: str
    git_port: int
    loaded: LoadedRepo
    services: Services
    client: LocalClient
    sandbox: SandboxSession
    redis: EmbeddedRedis
    postgres: Postgres
    aws: AwsHoldProxy
    env: dict[str, str]
    machines: dict[str, Machine] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api: HttpClient | None = None
    api_url: str = ""
    api_token: str = ""
    repository_id: int = 0
    git_stack: ExitStack = field(default_factory=ExitStack)

    # --- processes -------------------------------------------------------------------------------
    def start(self, role: str, machine: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start `tidegate <role>` on `machine` (its data dir, its working directory), logging to
        logs/<role>-<machine>.log; the process leads its own group, so a kill takes its children."""
        where = self.machines[machine]
        where.data.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "logs" / f"{role}-{machine}.log", "ab")  # noqa: SIM115 - lives as long as the child
        process = subprocess.Popen([sys.executable, "-m", "tidegate", role, *argv], cwd=where.home,
                                   env={**self.env, "TIDEGATE_DATA_DIR": str(where.data)}, stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes[f"{role}@{machine}"] = process
        return process

    def start_worker(self, machine: str) -> subprocess.Popen[bytes]:
        return self.start("worker", machine, "--concurrency", "1", "--name", f"{machine}@%h")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal one process group (a worker and its pool children), and reap it."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def holder_of(self, environment: str) -> str:
        """Which started process holds the environment's lock (its owner names a pool child's pid)."""
        holder = self.lock(environment)
        assert holder is not None, f"nobody holds {environment}'s lock"
        pid = int(holder[1].rsplit(":", 1)[1])
        group = os.getpgid(pid)
        return next(name for name, process in self.processes.items() if process.pid == group)

    def restart_git(self, *, down: bool) -> None:
        """Take the git server away (nothing listens on its port), or bring it back on the same port."""
        if down:
            self.git_stack.close()
            self.git_stack = ExitStack()
        else:
            self.git_stack.enter_context(git_daemon(self.bare.parent, port=self.git_port))

    # --- reading the world -----------------------------------------------------------------------
    def view(self, environment: str) -> EnvironmentView:
        """The environment's status line through serve's API (Unknown before a poll has recorded it)."""
        assert self.api is not None
        found = [v for v in self.api.status() if v.name == environment]
        return found[0] if found else EnvironmentView(REPOSITORY, environment, None, "Unknown", "Unknown", False, 0,
                                                      None, None)

    def syncs(self, environment: str) -> list[SyncView]:
        if self.view(environment).sync_status == "Unknown" and self.view(environment).last_sync is None:
            return []
        return self.client.history(environment, limit=100)

    def repository(self) -> dict[str, Any]:
        """The repository as `GET /api/v1/repositories` shows it (head, last poll, why it failed)."""
        answer = httpx.get(f"{self.api_url}/api/v1/repositories", headers={"Authorization": f"Bearer {self.api_token}"},
                           timeout=30)
        answer.raise_for_status()
        found: dict[str, Any] = next(r for r in answer.json() if r["name"] == REPOSITORY)
        return found

    def audit(self) -> list[dict[str, Any]]:
        """The audit log as `GET /api/v1/audit` shows it, newest first."""
        answer = httpx.get(f"{self.api_url}/api/v1/audit", headers={"Authorization": f"Bearer {self.api_token}"},
                           timeout=30)
        answer.raise_for_status()
        events: list[dict[str, Any]] = answer.json()
        return events

    def lock(self, environment: str) -> tuple[int, str] | None:
        return EnvironmentLock(self.services.redis, lock_name(REPOSITORY, environment)).current()

    def kube(self, environment: str = "staging") -> KubeSandbox:
        return self.sandbox.kube[environment]

    def written(self, environment: str = "staging") -> Counter[tuple[str, str, str]]:
        """Objects the emulator changed (real writes it answered 2xx, not dry runs), with how often."""
        return Counter((r["resource"], r["namespace"], r["name"]) for r in self.kube(environment).writes()
                       if not r["dry_run"] and 200 <= r["code"] < 300)

    def write_in_flight(self, environment: str = "staging") -> bool:
        """A real write of the staging config is with the emulator (held there by an injected latency)."""
        return any(not r["dry_run"] and (r["resource"], r["namespace"], r["name"]) == STAGING_CONFIG
                   for r in self.kube(environment).writes())

    def serial(self, environment: str) -> int:
        """The Terraform state's serial: it moves by one per apply that changed the state."""
        backend = self.loaded.backend(environment)
        assert backend is not None and backend.key
        s3 = AwsEndpoints(**self.sandbox.map["aws"]).client("s3")
        body = s3.get_object(Bucket=self.sandbox.map["aws"]["bucket"], Key=backend.key)["Body"]
        return int(json.loads(body.read())["serial"])

    def state_lock(self, environment: str) -> dict[str, Any] | None:
        """The Info of the DynamoDB lock on the environment's Terraform state (None: not locked)."""
        backend = self.loaded.backend(environment)
        assert backend is not None and backend.key
        aws = AwsEndpoints(**self.sandbox.map["aws"])
        found = aws.client("dynamodb").get_item(TableName=aws.lock_table,
                                                Key={"LockID": {"S": f"{aws.bucket}/{backend.key}"}})
        item = found.get("Item")
        return json.loads(item["Info"]["S"]) if item else None

    def beating(self, owner: str) -> bool:
        """The worker process `owner` (`host:pid`) still has its heartbeat (reconciler/heartbeats.py)."""
        return bool(self.services.redis.exists(heartbeats.PREFIX + owner))

    def unfinished(self) -> list[str]:
        """Every sync of the installation not in a terminal state."""
        with self.services.database.session() as session:
            rows = session.scalars(select(Sync).where(Sync.status.in_(ACTIVE))).all()
            return [f"#{s.id} {s.environment.name} {s.status.value}" for s in rows]

    def polls(self) -> int:
        return pollstats.counts(self.services.redis, [REPOSITORY])[REPOSITORY]

    # --- acting as a user ------------------------------------------------------------------------
    def commit_greeting(self, greeting: str) -> str:
        """Change staging's greeting (one ConfigMap key) and push it; returns the commit."""
        return commit_and_push(self.bare, {GREETING_FILE: greeting_file(greeting)}, f"staging greets: {greeting}")

    def poll(self) -> None:
        self.services.queue.poll(self.repository_id)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-5000:]}"
                         for p in sorted((self.base / "logs").glob("*.log")))

    def synced_at(self, environment: str, sha: str, timeout: float = 300) -> EnvironmentView:
        """Wait until the environment is Synced and Healthy at `sha`, nothing unfinished, no lock held."""
        return until(lambda: self._synced(environment, sha), timeout,
                     f"{environment} Synced and Healthy at {sha[:12]}, no sync unfinished, no lock held", self)

    def _synced(self, environment: str, sha: str) -> EnvironmentView | None:
        view = self.view(environment)
        done = (view.revision or "").startswith(sha[:12]) and (view.sync_status, view.health) == ("Synced", "Healthy")
        return view if done and not self.unfinished() and self.lock(environment) is None else None


def greeting_file(greeting: str) -> str:
    """Staging's config patch with another greeting."""
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  LOG_LEVEL: debug\n"
            f"  GREETING: {json.dumps(greeting)}\n")


def until(check: Callable[[], T | None], timeout: float, what: str, cluster: Cluster | None = None,
          interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` (and the logs) at the timeout."""
    def state() -> str:
        return f"unfinished: {cluster.unfinished()}\n{cluster.logs()}" if cluster is not None else ""
    return wait_until(check, timeout, what, state, interval)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "tidegate serve exited"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"tidegate serve did not answer /healthz at {url} within {timeout:g}s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Iterator[Cluster]:
    """The installation, running: every part started here and stopped (by pid) at the end."""
    base = tmp_path_factory.mktemp("cluster")
    (base / "logs").mkdir()
    bare = base / "git" / "infra.git"
    bare.parent.mkdir()
    make_bare_repo(bare, files_of(EXAMPLE), message="Add the example environments")
    loaded = load_repo(EXAMPLE)
    database = f"cluster_{secrets.token_hex(4)}"
    postgres = Postgres(postgres_server, postgres_server.create_database(database))
    plugin_dirs = os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS", "")
    git_port = free_port()
    with ExitStack() as stack:
        redis = stack.enter_context(EmbeddedRedis(base / "redis", binary=redis_binary()))
        sandbox = stack.enter_context(SandboxSession(loaded, base / "sandbox", ssh=True))
        assert sandbox.nodes is not None, "the cluster suite needs SSH nodes (root, iproute2, openssh-server)"
        aws = stack.enter_context(AwsHoldProxy(sandbox.map["aws"]["url"]))
        proxied = base / "endpoints-via-proxy.json"
        proxied.touch(mode=0o600)
        proxied.write_text(json.dumps({**sandbox.map, "aws": {**sandbox.map["aws"], "url": aws.url}}))
        box_key = SecretBox.generate_key()
        settings = Settings(data_dir=base / "operator", database_url=postgres.url, secret_key=SecretStr(box_key),
                            redis_url=redis.client_url, sandbox_map=sandbox.path, terraform_plugin_dirs=plugin_dirs)
        open_store(settings)  # migrates the database once, before any worker starts (as `tidegate migrate`)
        make_app(settings)
        services = build_services(settings)
        env = {**os.environ, **SETTINGS, "TIDEGATE_DATABASE_URL": postgres.url, "TIDEGATE_SECRET_KEY": box_key,
               "TIDEGATE_REDIS_URL": redis.client_url, "TIDEGATE_SANDBOX_MAP": str(proxied),
               "TIDEGATE_TERRAFORM_PLUGIN_DIRS": plugin_dirs}
        cluster = Cluster(base, bare, f"git://127.0.0.1:{git_port}/infra.git", git_port, loaded, services,
                          LocalClient(services, login="platform-lead"), sandbox, redis, postgres, aws, env)
        cluster.restart_git(down=False)
        stack.callback(cluster.git_stack.close)
        for name in ("machine-a", "machine-b", "scheduler", "web"):
            cluster.machines[name] = Machine(name, base / name)
        with services.database.session() as session:
            cluster.repository_id = repositories.register(services, session, name=REPOSITORY, url=cluster.url,
                                                          interval_seconds=POLL_INTERVAL).id
            add_people(session, "platform-leads", "platform-lead")
            operator = create_user(session, "cluster-operator")
            bind(session, "user:cluster-operator", Grant(Role.ADMIN, "*"))
            cluster.api_token = issue_token(session, operator, "cluster suite")[1]
        port = free_port()
        cluster.api_url = f"http://127.0.0.1:{port}"
        try:
            serve = cluster.start("serve", "web", "--port", str(port))
            _wait_healthy(cluster.api_url, serve)
            cluster.api = HttpClient(cluster.api_url, cluster.api_token)
            cluster.start_worker("machine-a")
            cluster.start_worker("machine-b")
            cluster.start("beat", "scheduler")
            yield cluster
        finally:
            for name in list(cluster.processes):
                cluster.kill(name, signal.SIGTERM)
            services.database.dispose()
            postgres_server.drop_database(database)


@pytest.fixture(scope="module")
def bootstrapped(cluster: Cluster) -> Cluster:
    """Both example environments applied once: staging by itself; production after its approval."""
    head = cluster.repository().get("head") or ""
    cluster.poll()
    until(lambda: cluster.view("staging").sync_status == "Synced" or _failed(cluster, "staging"), 900,
          "staging Synced", cluster)
    waiting = until(lambda: _awaiting(cluster, "production"), 600, "production awaiting approval", cluster)
    cluster.client.approve(waiting.id, "bootstrap")
    sha = cluster.view("staging").revision or head
    cluster.synced_at("production", sha, 900)
    cluster.synced_at("staging", sha, 300)
    return cluster


def _awaiting(cluster: Cluster, environment: str) -> SyncView | None:
    """The environment's sync that waits for an approval (a failed one fails the bootstrap)."""
    _failed(cluster, environment)
    return next((s for s in cluster.syncs(environment) if s.status == "awaiting_approval"), None)


def _failed(cluster: Cluster, environment: str) -> bool:
    """Fails the bootstrap at once, with the reason, when the environment's latest sync failed."""
    latest = cluster.syncs(environment)
    if latest and latest[0].status == "failed":
        raise AssertionError(f"{environment} sync #{latest[0].id} failed: {latest[0].error}\n{cluster.logs()}")
    return False
