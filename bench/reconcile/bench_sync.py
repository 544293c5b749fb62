"""Benchmark: Tidegate reconciling a generated Kubernetes-only config repo, end to end.

Everything is the real system: an embedded Redis, `tidegate worker` (Celery) processes, the
Kubernetes API emulator over HTTPS, the SQLite store, a git repository on disk. The bench process
only generates the repo, registers it, queues polls or syncs and watches `LocalClient.status()`.
It times, in one run:

- **cold sync** — from the first poll of a fresh repo (N apps x M objects, a Namespace per
  workload) to every environment `Synced`/`Healthy` at that revision;
- **no-op resync** — a manual `sync` of the same revision: the plan finds nothing to change and the
  emulator's request log must show 0 writes (dry runs are not writes);
- **commit → applied** — from `git commit` (one ConfigMap changed) to `Synced` at the new revision,
  once with `tidegate beat` polling every second and once with the local ref watch
  (`LocalRefWatcher`, as `tidegate up` runs it) queueing the poll;
- **reference** — Flux's published 4m13s for 1,000 Kustomizations on a 16-core runner, printed
  beside the figures of this run (not re-measured here: no Flux on this machine).

Usage:
    .venv/bin/python bench/reconcile/bench_sync.py [--apps 1000] [--objects-per-app 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from providers.stage import Stage  # noqa: E402
from reconciler import repositories  # noqa: E402
from reconciler.plans import decode  # noqa: E402
from reconciler.runtime import Services  # noqa: E402
from reconciler.schedule import NEXT_POLL  # noqa: E402
from reconciler.sources.watch import LocalRefWatcher  # noqa: E402
from sandbox.kube.runner import KubeSandbox  # noqa: E402
from store import Environment, Plan, Repository, StoreBusy  # noqa: E402
from tidegate.client import EnvironmentView, LocalClient  # noqa: E402
from tidegate.redis_server import EmbeddedRedis  # noqa: E402
from tidegate.settings import Settings  # noqa: E402
from tidegate.wiring import open_store  # noqa: E402
from tidegate.worker import build_services, make_app  # noqa: E402

FLUX_SECONDS = 4 * 60 + 13
FLUX_KUSTOMIZATIONS = 1000
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@tidegate.invalid",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@tidegate.invalid"}
API = "tidegate.dev/v1alpha1"
PARKED = 24 * 3600  # poll interval outside the polling phase: no scheduled poll competes with the phase


class BenchFailed(RuntimeError):
    """The system did not reach the state a phase waits for; the message says what it saw."""


@dataclass(frozen=True)
class Shape:
    """What the generated repo holds: apps spread evenly over workloads, workloads over environments."""

    apps: int
    objects_per_app: int
    workloads: int
    environments: int

    @property
    def objects(self) -> int:
        return self.apps * self.objects_per_app + self.workloads  # + one Namespace per workload

    def env_names(self) -> list[str]:
        return [f"bench-{e:02d}" for e in range(self.environments)]

    def workloads_of(self, env: int) -> list[int]:
        return [w for w in range(self.workloads) if w % self.environments == env]

    def apps_of(self, workload: int) -> list[int]:
        return [a for a in range(self.apps) if a % self.workloads == workload]


@dataclass
class Row:
    phase: str
    seconds: float
    objects: int | None = None
    apps: int | None = None
    writes: int | None = None
    requests: int | None = None
    note: str = ""
    mix: str = ""
    emulator_cpu: float = 0.0
    """CPU seconds the emulator spent in the phase (it shares the two cores with what is measured)."""


# --- the config repo --------------------------------------------------------------------------


def app_objects(app: int, count: int, generation: int = 0) -> list[dict[str, Any]]:
    """An app's objects, namespace-less (the workload sets it): the kinds of bench/render, then ConfigMaps."""
    name = f"app-{app:04d}"
    labels = {"app": name}
    kinds: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
         "data": {"app": name, "generation": str(generation)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": name,
                                        "containers": [{"name": "app", "image": "nginx:1.27"}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "labels": labels}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "labels": labels},
         "spec": {"rules": [{"host": f"{name}.bench.invalid", "http": {"paths": [
             {"path": "/", "pathType": "Prefix",
              "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}},
    ]
    extra = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-extra-{i}", "labels": labels},
              "data": {"index": str(i)}} for i in range(max(0, count - len(kinds)))]
    return (kinds + extra)[:count]


def write_app(root: Path, shape: Shape, app: int, generation: int = 0) -> Path:
    path = root / "apps" / f"w-{app % shape.workloads:03d}" / f"app-{app:04d}.yaml"
    path.write_text(yaml.safe_dump_all(app_objects(app, shape.objects_per_app, generation), sort_keys=False))
    return path


def write_repo(root: Path, shape: Shape) -> None:
    """`tidegate.yaml`, one Environment per name (its workloads only), a directory per workload."""
    (root / "environments").mkdir(parents=True)
    (root / "tidegate.yaml").write_text(yaml.safe_dump({
        "apiVersion": API, "kind": "RepositoryConfig",
        # drift runs every hour: a scheduled observe of every object must not land inside a timed phase
        "spec": {"sync": {"automated": True, "prune": True, "interval": "1s", "driftInterval": "1h"}}}))
    for index, env in enumerate(shape.env_names()):
        workloads = [{"name": f"w-{w:03d}", "path": f"apps/w-{w:03d}", "namespace": f"w-{w:03d}"}
                     for w in shape.workloads_of(index)]
        (root / "environments" / f"{env}.yaml").write_text(yaml.safe_dump({
            "apiVersion": API, "kind": "Environment", "metadata": {"name": env},
            "spec": {"workloads": workloads}}, sort_keys=False))
    for workload in range(shape.workloads):
        directory = root / "apps" / f"w-{workload:03d}"
        directory.mkdir(parents=True)
        (directory / "namespace.yaml").write_text(yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"w-{workload:03d}"}}))
    for app in range(shape.apps):
        write_app(root, shape, app)


def git(root: Path, *argv: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_IDENTITY})
    return done.stdout.strip()


def make_repo(root: Path, shape: Shape) -> str:
    """Generate, validate with the CLI (as a user would before pushing), commit; returns the SHA."""
    write_repo(root, shape)
    started = time.perf_counter()
    check = subprocess.run([str(ROOT / ".venv" / "bin" / "tidegate"), "validate", str(root)],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise BenchFailed(f"the generated repo does not validate:\n{check.stdout}{check.stderr}")
    print(f"# generated {shape.apps} apps x {shape.objects_per_app} objects in {shape.workloads} workloads, "
          f"{shape.environments} environment(s); `tidegate validate` {time.perf_counter() - started:.1f} s")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "bench: generated")
    return git(root, "rev-parse", "HEAD")


def commit_change(root: Path, shape: Shape, generation: int) -> tuple[str, float]:
    """Change one ConfigMap of one app and commit; returns (sha, time.monotonic() just before commit)."""
    app = generation % shape.apps
    path = write_app(root, shape, app, generation)
    git(root, "add", str(path))
    started = time.monotonic()
    git(root, "commit", "-q", "-m", f"bench: app {app} generation {generation}")
    return git(root, "rev-parse", "HEAD"), started


# --- the running system -----------------------------------------------------------------------


class System:
    """Redis, one emulator, the store, worker processes and beat, all under `data`."""

    def __init__(self, stack: ExitStack, data: Path, workers: int, concurrency: int) -> None:
        self.data = data
        self.logs = data / "logs"
        self.logs.mkdir(parents=True)
        self.redis = stack.enter_context(EmbeddedRedis(data / "redis"))
        self.kube = stack.enter_context(KubeSandbox())
        self.workers = workers
        self.concurrency = concurrency
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        stack.callback(self.stop_all)

    def start(self, envs: list[str]) -> None:
        """Every environment's cluster is the one emulator (the workers' SandboxTargets read this map)."""
        ca = self.kube.certs.ca_pem.decode() if self.kube.certs is not None else ""
        cluster = {"server": self.kube.url, "token": self.kube.token, "ca_pem": ca}
        sandbox_map = self.data / "endpoints.json"
        sandbox_map.write_text(json.dumps({"clusters": {env: cluster for env in envs}, "nodes": {}}))
        self.env = {**os.environ, "TIDEGATE_DATA_DIR": str(self.data), "TIDEGATE_REDIS_URL": self.redis.client_url,
                    "TIDEGATE_SANDBOX_MAP": str(sandbox_map), "TIDEGATE_SCHEDULER_TICK": "1"}
        settings = Settings(data_dir=self.data, redis_url=self.redis.client_url, sandbox_map=sandbox_map)
        open_store(settings)  # migrates; workers open it without migrating
        self.app = make_app(settings)
        self.services: Services = build_services(settings)
        self.client = LocalClient(self.services)
        for index in range(self.workers):
            self.spawn(f"worker-{index}", ["worker", "--concurrency", str(self.concurrency),
                                           "--name", f"bench-{index}@%h"])

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Start-up of the worker processes is not part of any phase: wait until each answers a ping."""
        deadline = time.monotonic() + timeout
        while len(self.app.control.ping(timeout=1.0)) < self.workers:
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchFailed(f"workers not ready after {timeout:g} s; see {self.logs}")

    def spawn(self, name: str, argv: list[str]) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "tidegate", *argv], cwd=ROOT, env=self.env, stdout=log, stderr=log,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, name: str, grace: float = 20.0) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise BenchFailed(f"{name} exited with {process.returncode}; see {self.logs / name}.log")

    def register(self, url: Path) -> int:
        """Register the repo with scheduled polls parked, then start beat: its sweeper and drift ticks run
        in every phase, as in any installation; its poll tick only in the polling phase (`poll_every`)."""
        with self.services.database.session() as session:
            repository = repositories.register(self.services, session, name="bench", url=str(url), branch="main",
                                               interval_seconds=PARKED)
            repository_id = repository.id
        self.services.redis.hset(NEXT_POLL, str(repository_id), time.time() + PARKED)
        self.spawn("beat", ["beat"])
        return repository_id

    def poll_every(self, repository_id: int, seconds: int, first: float) -> None:
        """The repository's poll interval, and its next scheduled poll at `first` (epoch seconds)."""
        with self.services.database.session() as session:
            session.get_one(Repository, repository_id).poll_interval_seconds = seconds
        self.services.redis.hset(NEXT_POLL, str(repository_id), first)

    def requests(self) -> int:
        """Every request the emulator logged (reads, dry runs, writes; discovery included)."""
        return len(self.kube.requests())

    def mix(self, top: int = 8) -> str:
        """What the requests were, most frequent first: `verb resource` (dry runs marked)."""
        counts = Counter(f"{r['verb'] or r['method'].lower()}{' (dry run)' if r['dry_run'] else ''} "
                         f"{r['resource'] or 'discovery'}" for r in self.kube.requests())
        return ", ".join(f"{what} {count}" for what, count in counts.most_common(top))

    def kubectl_diff(self, envs: list[str], phase: str) -> None:
        """`kubectl diff --server-side` (field manager tidegate) of every environment's desired set,
        as its latest workloads plan holds it (namespaces and tracking labels in): must be empty."""
        kubeconfig = self.kube.write_kubeconfig(self.data / "bench-kubeconfig")
        objects = 0
        started = time.monotonic()
        for env in envs:
            bodies = self.desired_bodies(env)
            objects += len(bodies)
            manifest = self.data / f"desired-{env}.yaml"
            manifest.write_text("---\n".join(yaml.safe_dump(body) for body in bodies))
            diff = subprocess.run([str(ROOT / ".venv" / "bin" / "kubectl"), "--kubeconfig", str(kubeconfig),
                                   "--cache-dir", str(self.data / "kubectl-cache"), "diff", "--server-side",
                                   "--field-manager", "tidegate", "-f", str(manifest)],
                                  capture_output=True, text=True, timeout=1800)
            if diff.returncode != 0:
                raise BenchFailed(f"kubectl diff --server-side of {env} after {phase} is not empty "
                                  f"(exit {diff.returncode}):\n{(diff.stdout + diff.stderr)[:2000]}")
        print(f"# kubectl diff --server-side after {phase.split(' (')[0]}: empty for {len(envs)} environment(s), "
              f"{objects} objects ({time.monotonic() - started:.0f} s, not timed)", flush=True)

    def desired_bodies(self, env: str) -> list[dict[str, Any]]:
        """The bodies the environment's latest workloads plan applies (as Tidegate sends them)."""
        with self.services.database.session() as session:
            rows = session.scalars(select(Plan).join(Environment).where(Environment.name == env)
                                   .order_by(Plan.id.desc())).all()
            for row in rows:
                if row.payload is None:
                    continue
                plan = decode(self.services.secrets.unseal(row.payload)).stages.get(Stage.WORKLOADS)
                if plan is not None:
                    return [dict(item["body"]) for item in plan.details.get("objects") or []]
        raise BenchFailed(f"{env}: no workloads plan in the store")

    def emulator_cpu(self) -> float:
        """CPU seconds the emulator's thread (its event loop: every request and controller) has used."""
        thread = self.kube._thread
        if thread is None or thread.native_id is None:
            return 0.0
        fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def writes(self) -> int:
        """Requests to the emulator that changed state: dry runs excluded, discovery and reads are not writes."""
        return sum(1 for w in self.kube.writes() if not w["dry_run"])


class RssSampler:
    """The largest resident set of any worker process (Celery's parent and its pool children),
    sampled every 100 ms from /proc while a phase runs."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _processes(self) -> dict[int, str]:
        roots = {p.pid: name for name, p in self.system.processes.items() if name.startswith("worker")}
        found = dict(roots)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) in roots:
                found[int(stat.parent.name)] = f"{roots[int(fields[1])]} pool process"
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for pid, role in self._processes().items():
                try:
                    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                                if x.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    continue
                kib = int(line.split()[1])
                self.peak[role] = max(self.peak.get(role, 0), kib)

    def summary(self) -> str:
        if not self.peak:
            return "not sampled"
        role, kib = max(self.peak.items(), key=lambda item: item[1])
        return f"{kib / 1024:.0f} MiB max ({role}); " + ", ".join(
            f"{name} {value / 1024:.0f} MiB" for name, value in sorted(self.peak.items()))


# --- waiting ----------------------------------------------------------------------------------


def settled(views: list[EnvironmentView], envs: list[str], sha: str) -> bool:
    """Every environment Synced and Healthy at `sha`; a failed latest sync ends the bench."""
    by_name = {view.name: view for view in views}
    for env in envs:
        view = by_name.get(env)
        if view is not None and view.last_sync_status == "failed":
            raise BenchFailed(f"{env}: sync {view.last_sync} failed: {view.message}")
        if view is None or not (view.revision == sha and view.sync_status == "Synced" and view.health == "Healthy"
                                and view.last_sync_status == "succeeded"):
            return False
    return True


def wait(system: System, done: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> float:
    """Seconds (monotonic) when `done()` first held; raises with the last status after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return time.monotonic()
        system.check_alive()
        time.sleep(step)
    status = "\n".join(f"  {v.name}: {v.revision and v.revision[:12]} {v.sync_status} {v.health} "
                       f"{v.last_sync_status} {v.message}" for v in system.client.status())
    raise BenchFailed(f"{what}: not done after {timeout:g} s; status:\n{status}")


def wait_synced(system: System, envs: list[str], sha: str, timeout: float, what: str) -> float:
    return wait(system, lambda: settled(system.client.status(), envs, sha), timeout, what)


# --- phases -----------------------------------------------------------------------------------


def cold_sync(system: System, shape: Shape, repository_id: int, sha: str, timeout: float) -> Row:
    system.kube.clear_requests()
    cpu = system.emulator_cpu()
    started = time.monotonic()
    system.services.queue.poll(repository_id)
    finished = wait_synced(system, shape.env_names(), sha, timeout, "cold sync")
    return Row("cold sync (poll → all Synced/Healthy)", finished - started, shape.objects, shape.apps,
               system.writes(), system.requests(), mix=system.mix(), emulator_cpu=system.emulator_cpu() - cpu)


def request_sync(system: System, env: str, attempts: int = 20) -> int:
    """`LocalClient.sync`; it retries a busy SQLite store itself (40 times), so a `StoreBusy` reaching
    here means the store stayed locked for seconds: printed, never hidden, and tried again."""
    for attempt in range(1, attempts + 1):
        try:
            return system.client.sync(env)
        except StoreBusy as error:
            print(f"# LocalClient.sync({env!r}) attempt {attempt}: {str(error).splitlines()[0]}; retrying")
            time.sleep(0.2)
    raise BenchFailed(f"LocalClient.sync({env!r}) failed {attempts} times")


def noop_resync(system: System, shape: Shape, timeout: float) -> Row:
    """A manual sync of the synced revision per environment: planned, applied, nothing written."""
    system.kube.clear_requests()
    cpu = system.emulator_cpu()
    started = time.monotonic()
    ids = dict(zip(shape.env_names(), (request_sync(system, env) for env in shape.env_names()), strict=True))

    def finished() -> bool:
        """Each environment's latest sync (ours, or the one the sweeper planned in its place) succeeded."""
        views = {view.name: view for view in system.client.status()}
        return all((views[env].last_sync or 0) >= ids[env] and views[env].last_sync_status == "succeeded"
                   for env in ids)

    end = wait(system, finished, timeout, "no-op resync")
    last = {view.name: view.last_sync for view in system.client.status()}
    replaced = sorted(env for env in ids if last[env] != ids[env])
    ids = {env: last[env] or ids[env] for env in ids}
    stages = [stage for i in ids.values() for stage in system.client.show_sync(i).stages]
    plans = sorted({str(stage.summary.get("plan")) for stage in stages})
    counts: dict[str, int] = {}
    for stage in stages:
        for outcome, count in (stage.summary.get("counts") or {}).items():
            counts[outcome] = counts.get(outcome, 0) + count
    return Row("no-op resync (manual sync, same revision)", end - started, shape.objects, shape.apps,
               system.writes(), system.requests(), note=f"plans {plans}, apply outcomes {json.dumps(counts)}; "
               f"replaced by the sweeper: {replaced or 'none'}", mix=system.mix(),
               emulator_cpu=system.emulator_cpu() - cpu)


def commit_to_applied(system: System, shape: Shape, root: Path, generations: Iterator[int], samples: int,
                      timeout: float, label: str) -> Row:
    """`samples` commits, each waited for; the row holds the median, the note every sample."""
    seconds, writes, requests = [], [], []
    cpu, mix = 0.0, ""
    for _ in range(samples):
        system.kube.clear_requests()
        before = system.emulator_cpu()
        sha, started = commit_change(root, shape, next(generations))
        seconds.append(wait_synced(system, shape.env_names(), sha, timeout, label) - started)
        cpu += system.emulator_cpu() - before
        writes.append(system.writes())
        requests.append(system.requests())
        if requests[-1] == max(requests):
            mix = system.mix()
    return Row(label, statistics.median(seconds), None, None, max(writes), max(requests),
               note="samples " + ", ".join(f"{s:.2f}" for s in seconds) + " s; writes per commit " + str(writes)
               + "; requests per commit " + str(requests), mix=mix, emulator_cpu=cpu / max(1, samples))


def with_beat(system: System, repository_id: int) -> Iterator[None]:
    """Beat (1 s tick) polls the repository every second, waited for until it has polled once."""
    system.poll_every(repository_id, 1, first=0.0)
    wait(system, lambda: float(system.services.redis.hget(NEXT_POLL, str(repository_id)) or 0) > time.time(), 60,
         "beat's first scheduled poll")
    time.sleep(2.0)  # let the first (no-op) polls drain
    try:
        yield
    finally:
        system.poll_every(repository_id, PARKED, first=time.time() + PARKED)


def with_watch(system: System, repository_id: int, root: Path) -> Iterator[None]:
    """The local ref watch `tidegate up` runs: a moved ref queues a poll at once."""
    watcher = LocalRefWatcher(lambda key: system.services.queue.poll(repository_id))
    watcher.add(str(repository_id), root)
    watcher.start()
    try:
        yield
    finally:
        watcher.stop()


# --- output -----------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    print(f"\n{'phase':<58} {'seconds':>9} {'objects/s':>10} {'apps/s':>8} {'writes':>7} {'requests':>9}")
    for row in rows:
        rate = f"{row.objects / row.seconds:,.0f}" if row.objects and row.seconds else "-"
        apps = f"{row.apps / row.seconds:,.1f}" if row.apps and row.seconds else "-"
        writes = "-" if row.writes is None else str(row.writes)
        requests = "-" if row.requests is None else str(row.requests)
        print(f"{row.phase:<58} {row.seconds:>9.2f} {rate:>10} {apps:>8} {writes:>7} {requests:>9}")
    print(f"{'reference: Flux, 1,000 Kustomizations, 16-core runner':<58} {FLUX_SECONDS:>9.2f} {'-':>10} "
          f"{FLUX_KUSTOMIZATIONS / FLUX_SECONDS:>8.1f} {'-':>7} {'-':>9}  (published 4m13s, not measured here)")
    for row in rows:
        if row.note:
            print(f"  {row.phase}: {row.note}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--objects-per-app", type=int, default=5)
    parser.add_argument("--workloads", type=int, default=10, help="workload directories (apps spread evenly)")
    parser.add_argument("--environments", type=int, default=1, help="environments (workloads spread evenly; "
                        "each is locked, planned and applied on its own, all on the one emulator)")
    parser.add_argument("--workers", type=int, default=1, help="`tidegate worker` processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    parser.add_argument("--commits", type=int, default=3, help="commit → applied samples per trigger")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for any one phase")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (logs, store, repo)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 apps, 1 commit per trigger")
    args = parser.parse_args()
    if args.quick:
        args.apps, args.commits = min(args.apps, 50), 1
    args.workloads = max(1, min(args.workloads, args.apps))
    args.environments = max(1, min(args.environments, args.workloads))
    return args


def run(args: argparse.Namespace, data: Path) -> list[Row]:
    shape = Shape(args.apps, args.objects_per_app, args.workloads, args.environments)
    root = data / "repo"
    sha = make_repo(root, shape)
    generations = iter(range(1, 1_000_000))
    with ExitStack() as stack:
        system = System(stack, data / "tidegate", args.workers, args.concurrency)
        system.start(shape.env_names())
        repository_id = system.register(root)
        system.wait_ready()
        with RssSampler(system) as rss:
            rows = [shown(cold_sync(system, shape, repository_id, sha, args.timeout))]
        rows[0].note = f"worker RSS during the cold sync: {rss.summary()}"
        print(f"# worker RSS during the cold sync: {rss.summary()} (goal ≤ 300 MiB)", flush=True)
        system.kubectl_diff(shape.env_names(), rows[-1].phase)
        rows.append(shown(noop_resync(system, shape, args.timeout)))
        system.kubectl_diff(shape.env_names(), rows[-1].phase)
        with contextmanager(with_beat)(system, repository_id):
            rows.append(shown(commit_to_applied(system, shape, root, generations, args.commits, args.timeout,
                                                "commit → applied, beat polling at 1 s")))
        system.kubectl_diff(shape.env_names(), rows[-1].phase)
        with contextmanager(with_watch)(system, repository_id, root):
            rows.append(shown(commit_to_applied(system, shape, root, generations, args.commits, args.timeout,
                                                "commit → applied, local ref watch")))
        system.kubectl_diff(shape.env_names(), rows[-1].phase)
    return rows


def shown(row: Row) -> Row:
    """Each phase's figure as soon as it is measured, so a later failure does not lose it."""
    print(f"# {row.phase}: {row.seconds:.2f} s, writes {row.writes}, requests {row.requests}, "
          f"load {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    print(f"# emulator: {1000 * row.emulator_cpu / max(1, row.requests or 0):.2f} ms CPU per request "
          f"({row.emulator_cpu:.2f} s CPU in {row.phase.split(' (')[0]}); requests: {row.mix}", flush=True)
    return row


def log_errors(logs: Path, limit: int = 12) -> list[str]:
    """The last error lines of the workers' and beat's logs, to quote when a phase fails."""
    lines: list[str] = []
    for path in sorted(logs.glob("*.log")):
        lines += [f"{path.name}: {line}" for line in path.read_text(errors="replace").splitlines()
                  if "ERROR" in line or "WARNING" in line or "Error" in line]
    return lines[-limit:]


def task_errors(logs: Path) -> list[str]:
    """Tasks that died with an exception during the run: figures of a run with these need reading."""
    lines = [line for path in sorted(logs.glob("*.log"))
             for line in path.read_text(errors="replace").splitlines() if "raised unexpected" in line]
    return [f"{len(lines)} task(s) raised unexpected errors; first: {lines[0][:300]}"] if lines else []


def main() -> None:
    args = parse_args()
    data = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    print(f"# load average at start: {Path('/proc/loadavg').read_text().strip()}; data directory {data}")
    try:
        rows = run(args, data)
    except BenchFailed as failure:
        print(f"\nBENCH FAILED: {failure}", *log_errors(data / "tidegate" / "logs"), sep="\n")
        print(f"(data directory kept: {data})")
        sys.exit(1)
    print_table(rows)
    for line in task_errors(data / "tidegate" / "logs"):
        print(f"# worker log: {line}")
    print(f"# load average at end: {Path('/proc/loadavg').read_text().strip()}")
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
