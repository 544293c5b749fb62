"""Benchmark: git polls per worker when nothing moved (one `ls-remote` each), 200 repos on a git daemon.

Everything is the real system: a real `git daemon` on 127.0.0.1 serving `--repos` bare repositories
(one commit each), an embedded Redis, one `tidegate worker --concurrency 2` process, the SQLite
store. The bench registers every repository as `git://127.0.0.1:PORT/repoN.git`, queues one poll
of each and waits until all are recorded (the first poll fetches and renders: not timed), then
times `--rounds` rounds of one poll per repository while no head moves, so each poll is the
unchanged path: the poll lock in Redis, the repository row (its `last_polled_at` stamped), one
`git ls-remote`, the latency sample in `reconciler.pollstats`.

A queued poll counts as finished when its latency sample is in Redis (`pollstats.counts`): the
sample is recorded after the poll's transaction committed. Latency per poll is Celery's own
runtime of each `tidegate.poll` task, read from the worker's log ("succeeded in …s"). A poll task
that died (its retries spent) is never recorded: the bench stops at once and quotes it. The CPU
line adds up the system's processes during the timed rounds (worker with its git, daemon with its
upload-pack, Redis), which says what the figure would be on idle cores of a shared machine.

Usage:
    .venv/bin/python bench/reconcile/bench_polls.py [--repos 200] [--rounds 5] [--concurrency 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from reconciler import pollstats, repositories  # noqa: E402
from reconciler.runtime import Services  # noqa: E402
from store import Repository  # noqa: E402
from tidegate.redis_server import EmbeddedRedis  # noqa: E402
from tidegate.settings import Settings  # noqa: E402
from tidegate.wiring import open_store  # noqa: E402
from tidegate.worker import build_services, make_app  # noqa: E402

GOAL_PER_MINUTE = 5000
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@tidegate.invalid",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@tidegate.invalid"}
API = "tidegate.dev/v1alpha1"
PARKED = 24 * 3600  # poll interval: no scheduled poll (and no beat runs anyway)
SUCCEEDED = re.compile(r"Task tidegate\.poll\[[^\]]+\] succeeded in ([0-9.]+)s")
RETRIED = re.compile(r"Task tidegate\.poll\[[^\]]+\] retry: ")
DIED = re.compile(r"Task tidegate\.poll\[[^\]]+\] raised unexpected: .*")
# The smallest valid config repo: one environment, nothing to render, automated sync off, so the first
# poll records the revision and the environment's desired revision and plans nothing.
CONFIG = {
    "tidegate.yaml": f"apiVersion: {API}\nkind: RepositoryConfig\nspec:\n  sync: {{automated: false}}\n",
    "environments/bench.yaml": f"apiVersion: {API}\nkind: Environment\nmetadata: {{name: bench}}\n"
                               "spec: {workloads: []}\n",
}


class BenchFailed(RuntimeError):
    """The system did not reach the state the bench waits for; the message says what it saw."""


@dataclass(frozen=True)
class Figures:
    repos: int
    rounds: int
    seconds: float
    runtimes: list[float]  # Celery's runtime of each timed poll task, seconds
    mean_recorded: float  # the pollstats mean of the timed polls (ls-remote and store, inside the task)
    retries: int  # timed poll tasks that raised and were retried (e.g. a busy store)
    cpu: dict[str, float]  # CPU seconds of the timed rounds, by part of the system
    first_seconds: float  # the untimed first polls (fetch + render)
    load: str

    @property
    def polls(self) -> int:
        return self.repos * self.rounds

    @property
    def per_minute(self) -> float:
        return self.polls / self.seconds * 60


# --- the repositories and the daemon ------------------------------------------------------------


def git(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_IDENTITY})
    return done.stdout.strip()


def make_repos(base: Path, count: int) -> dict[str, str]:
    """`count` bare repos `repoN.git` under `base`, one commit each (its own README): {name: sha}."""
    base.mkdir(parents=True)
    work = base.parent / "work"
    for path, text in CONFIG.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    heads = {}
    for index in range(count):
        name = f"repo{index}"
        bare = base / f"{name}.git"
        (work / "README").write_text(f"{name}\n")
        git("init", "-q", "--bare", "-b", "main", str(bare))
        tree = ["--git-dir", str(bare), "--work-tree", str(work)]
        git(*tree, "add", "-A")
        git(*tree, "commit", "-q", "-m", f"bench: {name}")
        heads[name] = git("--git-dir", str(bare), "rev-parse", "HEAD")
    return heads


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class GitDaemon:
    """`git daemon` serving every repo under `base` on 127.0.0.1 (a free port), until `stop()`."""

    def __init__(self, base: Path, log: Path) -> None:
        self.base = base
        self.port = free_port()
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                ["git", "daemon", "--reuseaddr", f"--base-path={base}", "--export-all", f"--port={self.port}",
                 "--listen=127.0.0.1", str(base)],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"

    def wait_ready(self, name: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise BenchFailed(f"git daemon exited with {self.process.returncode}")
            probe = subprocess.run(["git", "ls-remote", self.url(name)], capture_output=True)
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise BenchFailed(f"git daemon not answering on port {self.port}: {probe.stderr.decode()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants, live or reaped (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    own = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own + sum(cpu_seconds(int(child)) for child in children)


# --- the running system -----------------------------------------------------------------------


class System:
    """Redis, the store and one `tidegate worker` process, all under `data` (no beat: only our polls)."""

    def __init__(self, stack: ExitStack, data: Path, concurrency: int) -> None:
        self.data = data
        self.logs = data / "logs"
        self.logs.mkdir(parents=True)
        self.redis = stack.enter_context(EmbeddedRedis(data / "redis"))
        self.env = {**os.environ, "TIDEGATE_DATA_DIR": str(data), "TIDEGATE_REDIS_URL": self.redis.client_url}
        settings = Settings(data_dir=data, redis_url=self.redis.client_url)
        open_store(settings)  # migrates; the worker opens it without migrating
        self.app = make_app(settings)
        self.services: Services = build_services(settings)
        self.worker_log = self.logs / "worker-0.log"
        with self.worker_log.open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "tidegate", "worker", "--concurrency", str(concurrency),
                 "--name", "bench-0@%h"], cwd=ROOT, env=self.env, stdout=log, stderr=log,
                stdin=subprocess.DEVNULL, start_new_session=True)
        stack.callback(self.stop)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.app.control.ping(timeout=1.0):
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchFailed(f"worker not ready after {timeout:g} s; see {self.worker_log}")

    def check_alive(self) -> None:
        if self.worker.poll() is not None:
            raise BenchFailed(f"the worker exited with {self.worker.returncode}; see {self.worker_log}")

    def stop(self) -> None:
        if self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
        try:
            self.worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()

    def register(self, urls: dict[str, str]) -> dict[str, int]:
        with self.services.database.session(write=True) as session:
            return {name: repositories.register(self.services, session, name=name, url=url, branch="main",
                                                interval_seconds=PARKED).id for name, url in urls.items()}

    def poll_all(self, ids: dict[str, int]) -> None:
        for repository_id in ids.values():
            self.services.queue.poll(repository_id)

    def wait_counts(self, names: list[str], at_least: int, timeout: float, what: str) -> float:
        """Until every repository has `at_least` recorded polls; returns time.monotonic() then."""
        deadline = time.monotonic() + timeout
        pending = list(names)
        checked = time.monotonic()
        while True:
            counts = pollstats.counts(self.services.redis, pending)
            pending = [name for name in pending if counts[name] < at_least]
            if not pending:
                return time.monotonic()
            if time.monotonic() - checked > 1.0:  # a poll that died (retries spent) is never recorded
                checked = time.monotonic()
                self.check_alive()
                died = DIED.findall(self.worker_log.read_text(errors="replace"))
                if died:
                    raise BenchFailed(f"{what}: {len(died)} poll task(s) died, so {len(pending)} repositories "
                                      f"will never reach {at_least} polls; first: {died[0][:300]}")
            if time.monotonic() > deadline:
                raise BenchFailed(f"{what}: {len(pending)} repositories still short of {at_least} polls after "
                                  f"{timeout:g} s (e.g. {pending[:3]}); see {self.worker_log}")
            time.sleep(0.02)

    def check_heads(self, heads: dict[str, str]) -> None:
        """Every repository at its head, without a poll error: the first polls fetched and rendered."""
        with self.services.database.session() as session:
            rows = {row.name: row for row in session.scalars(select(Repository))}
        wrong = [f"{name}: head {rows[name].head_sha}, error {rows[name].poll_error}" for name, sha in heads.items()
                 if rows[name].head_sha != sha or rows[name].poll_error is not None]
        if wrong:
            raise BenchFailed(f"{len(wrong)} repositories not at their head after the first poll: {wrong[:3]}")

    def recorded_sum(self) -> float:
        return sum(latency.total_seconds for latency in pollstats.read(self.services.redis))

    def cpu(self, daemon: GitDaemon) -> dict[str, float]:
        """CPU seconds so far: the worker (main and pool processes, and their git), the daemon (and the
        upload-pack it forks per connection), Redis. The bench's own queueing and waiting are not in it."""
        return {"worker + git": cpu_seconds(self.worker.pid),
                "git daemon + upload-pack": cpu_seconds(daemon.process.pid),
                "redis": cpu_seconds(self.redis.pid or 0)}

    def retries(self) -> int:
        return len(RETRIED.findall(self.worker_log.read_text(errors="replace")))

    def wait_logged(self, tasks: int, timeout: float = 10.0) -> int:
        """Until the worker logged `tasks` polls as succeeded (its log line follows the latency sample)."""
        deadline = time.monotonic() + timeout
        while len(self.runtimes()) < tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.runtimes())

    def runtimes(self) -> list[float]:
        """Celery's runtime of every `tidegate.poll` the worker logged so far, in log order."""
        return [float(match.group(1)) for match in SUCCEEDED.finditer(self.worker_log.read_text(errors="replace"))]


# --- the run ----------------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(args: argparse.Namespace, data: Path) -> Figures:
    started = time.perf_counter()
    heads = make_repos(data / "repos", args.repos)
    print(f"# {args.repos} bare repos, one commit each, in {time.perf_counter() - started:.1f} s", flush=True)
    names = list(heads)
    with ExitStack() as stack:
        daemon = GitDaemon(data / "repos", data / "git-daemon.log")
        stack.callback(daemon.stop)
        daemon.wait_ready(names[0])
        system = System(stack, data / "tidegate", args.concurrency)
        ids = system.register({name: daemon.url(name) for name in names})
        system.wait_ready()
        started = time.monotonic()
        system.poll_all(ids)
        system.wait_counts(names, 1, args.timeout, "first polls")
        system.check_heads(heads)
        first = time.monotonic() - started
        print(f"# first poll of each (fetch + render, not timed): {first:.1f} s; load {loadavg()}", flush=True)
        skip, retried = system.wait_logged(args.repos), system.retries()
        before = system.recorded_sum()
        cpu_before = system.cpu(daemon)
        started = time.monotonic()
        for done in range(1, args.rounds + 1):
            system.poll_all(ids)
            finished = system.wait_counts(names, 1 + done, args.timeout, f"round {done}")
        seconds = finished - started
        load = loadavg()
        cpu = {part: spent - cpu_before[part] for part, spent in system.cpu(daemon).items()}
        system.check_heads(heads)
        mean = (system.recorded_sum() - before) / (args.repos * args.rounds)
        system.wait_logged(skip + args.repos * args.rounds)
        runtimes, retries = system.runtimes()[skip:], system.retries() - retried
    return Figures(args.repos, args.rounds, seconds, runtimes, mean, retries, cpu, first, load)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(figures: Figures, concurrency: int) -> None:
    runtimes = figures.runtimes
    latency = (f"p50 {percentile(runtimes, 0.5) * 1000:.1f} ms, p99 {percentile(runtimes, 0.99) * 1000:.1f} ms, "
               f"mean {statistics.fmean(runtimes) * 1000:.1f} ms ({len(runtimes)} tasks)" if runtimes else "n/a")
    row = (f"git polls (ls-remote, head unchanged) per worker, {figures.repos} repos on a local git daemon")
    print(f"\n{'row':<92} {'polls/min':>10} {'goal':>8}")
    print(f"{row:<92} {figures.per_minute:>10,.0f} {GOAL_PER_MINUTE:>8,}")
    print(f"  {figures.polls} polls in {figures.seconds:.2f} s ({figures.rounds} rounds), one worker "
          f"--concurrency {concurrency}; {'meets' if figures.per_minute >= GOAL_PER_MINUTE else 'BELOW'} the goal")
    print(f"  task runtime: {latency}; recorded poll latency (pollstats) mean {figures.mean_recorded * 1000:.1f} ms; "
          f"retried tasks {figures.retries}")
    per_poll = sum(figures.cpu.values()) / figures.polls
    parts = ", ".join(f"{part} {spent / figures.polls * 1000:.1f}" for part, spent in figures.cpu.items())
    print(f"  CPU per poll {per_poll * 1000:.1f} ms ({parts}): {2 * 60 / per_poll:,.0f} polls/min if two idle cores "
          f"ran nothing else (a bound, not a measurement)")
    print(f"  untimed first poll of every repository (fetch + render): {figures.first_seconds:.1f} s")
    print(f"  load average at the end of the timed rounds: {figures.load}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="timed polls of every repository")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes of the worker")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for any one round")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (logs, store, repos)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 repos, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.repos, args.rounds = min(args.repos, 20), min(args.rounds, 2)
    args.repos, args.rounds = max(1, args.repos), max(1, args.rounds)
    return args


def main() -> None:
    args = parse_args()
    data = Path(tempfile.mkdtemp(prefix="tg-bench-polls-"))
    print(f"# load average at start: {loadavg()}; data directory {data}", flush=True)
    try:
        figures = run(args, data)
    except BenchFailed as failure:
        print(f"\nBENCH FAILED: {failure}\n(data directory kept: {data})")
        sys.exit(1)
    report(figures, args.concurrency)
    print(f"# load average at end: {loadavg()}")
    if args.keep:
        print(f"# data directory kept: {data}")
    else:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
