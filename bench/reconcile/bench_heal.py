"""Benchmark: a Deployment scaled by hand → healed (live `spec.replicas` back at the desired value).

Everything is the real system as the demo runs it (`scripts/demo.sh`): examples/infra-repo copied
into a fresh data directory and committed to a git repository there, its Secret and Terraform
variables file SOPS-encrypted for an age key stored with `tidegate secret age-key`, then
`tidegate up --repo` as a subprocess (Redis, SQLite, worker, beat, and the sandbox: moto for
Terraform, SSH nodes for Ansible, one Kubernetes API emulator per environment). The bench waits until
the environment with all three stages (Terraform, Ansible, Kubernetes) and `selfHeal: true` is
Synced/Healthy at the head (if no such environment has `selfHeal`, the bench's copy turns it on for
the first one with all three stages, and says so), and until the worker's live watch is on it. Then,
`--samples` times:

1. scale one of its Deployments by hand, as `kubectl scale` does: a patch of the `scale`
   subresource with the official kubernetes client and field manager `kubectl-scale`;
2. time until the live `spec.replicas` is back at the desired value, reading the Deployment from the
   API server every 50 ms (nothing else is polled while the clock runs);
3. print what the heal did (`tidegate history` / `tidegate show -o json`: trigger, stages planned
   and applied, seconds per stage, object counts) and the worker log lines of the sample;
4. wait until the environment is Synced/Healthy again with no sync running before the next sample.

Printed: each sample, p50, p99, max, the load average, and the goal (p50 ≤ 2 s, p99 ≤ 5 s).

Usage:
    .venv/bin/python bench/reconcile/bench_heal.py [--samples 10] [--timeout 600] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, AppsV1Api
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from repo_schema.loader import LoadedRepo, load_repo  # noqa: E402

EXAMPLE = ROOT / "examples" / "infra-repo"
SOPS = ROOT / ".venv" / "bin" / "sops"
ENCRYPTED = ("apps/web/base/database-secret.yaml", "infrastructure/terraform/cluster/secrets.sops.tfvars.json")
"""The files scripts/demo.sh SOPS-encrypts (each only if the example still has it)."""
FIELD_MANAGER = "kubectl-scale"
"""The field manager `kubectl scale` writes with: not Tidegate's, so the change is drift."""
POLL = 0.05
GOAL_P50, GOAL_P99 = 2.0, 5.0
BASELINE = "~90 s"
T = TypeVar("T")


class BenchFailed(Exception):
    """The bench cannot go on: the message says what was seen."""


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def log(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", flush=True)


# --- the config repo, as scripts/demo.sh prepares it ----------------------------------------------


@dataclass
class Target:
    environment: str
    turned_on_self_heal: bool


def all_three_stages(loaded: LoadedRepo, name: str) -> bool:
    spec = loaded.environments[name].spec
    return spec.infrastructure is not None and spec.configuration is not None and bool(spec.workloads)


def choose_environment(repo: Path) -> Target:
    """The environment with all three stages and `selfHeal: true`; failing that, the first with all three
    stages, its `selfHeal` turned on in this copy (its YAML rewritten, comments lost)."""
    loaded = load_repo(repo)
    full = [name for name in loaded.order() if all_three_stages(loaded, name)]
    if not full:
        raise BenchFailed(f"no environment of {repo} has all three stages (infrastructure, configuration, workloads)")
    healing = [name for name in full if loaded.sync_policy(name).self_heal]
    if healing:
        return Target(healing[0], False)
    name = full[0]
    for path in sorted((repo / "environments").rglob("*.y*ml")):
        document = yaml.safe_load(path.read_text())
        if isinstance(document, dict) and (document.get("metadata") or {}).get("name") == name:
            document.setdefault("spec", {}).setdefault("sync", {})["selfHeal"] = True
            path.write_text(yaml.safe_dump(document, sort_keys=False))
            return Target(name, True)
    raise BenchFailed(f"environment {name}: its YAML file was not found under {repo / 'environments'}")


def tidegate(data: Path, *argv: str, check: bool = True, timeout: float = 120.0) -> str:
    """One `tidegate` CLI command against the bench's data directory; its stdout."""
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(data)}
    done = subprocess.run([sys.executable, "-m", "tidegate", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise BenchFailed(f"tidegate {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def tidegate_json(data: Path, *argv: str) -> Any:
    return json.loads(tidegate(data, *argv, "-o", "json"))


def prepare_repo(data: Path) -> tuple[Path, Target, str]:
    """The demo's config repo: the example copied to DATA/repos/infra-repo, SOPS-encrypted for a stored age
    key, committed on `main`. Returns the repo, the environment to heal and the head commit."""
    seeded = data / "repos" / EXAMPLE.name
    seeded.parent.mkdir(parents=True)
    shutil.copytree(EXAMPLE, seeded, symlinks=True)
    target = choose_environment(seeded)
    tidegate(data, "init")
    recipient = tidegate(data, "secret", "age-key", "sops-age", "--repo", EXAMPLE.name).strip()
    (seeded / ".sops.yaml").write_text(
        "creation_rules:\n"
        "  - path_regex: database-secret\\.yaml$\n    encrypted_regex: ^(data|stringData)$\n"
        f"    age: {recipient}\n"
        "  - path_regex: \\.sops\\.tfvars\\.json$\n"
        f"    age: {recipient}\n")
    for relative in ENCRYPTED:
        if (seeded / relative).is_file():
            subprocess.run([str(SOPS), "--encrypt", "--in-place", relative], cwd=seeded, check=True,
                           env={**os.environ, "HOME": "/nonexistent"})
    identity = ["-c", "user.name=Tidegate bench", "-c", "user.email=bench@tidegate.invalid"]
    commit = [*identity, "commit", "-q", "-m", "Seed from examples/infra-repo (SOPS-encrypted)"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], commit):
        subprocess.run(["git", "-C", str(seeded), *argv], check=True)
    head = subprocess.run(["git", "-C", str(seeded), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    return seeded, target, head


# --- `tidegate up` ------------------------------------------------------------------------------------


@dataclass
class Up:
    data: Path
    process: subprocess.Popen[bytes]

    @property
    def output(self) -> Path:
        return self.data / "up.log"

    def alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.output.read_text(errors="replace")[-3000:]
            raise BenchFailed(f"tidegate up exited with {self.process.returncode}; the end of {self.output}:\n{tail}")

    def stop(self) -> None:
        """Ctrl-C, as the demo stops it: `up` stops its worker, beat and sandbox itself."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(90)
        except subprocess.TimeoutExpired:
            log("tidegate up did not stop within 90 s after SIGINT; SIGTERM to its process group")
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@contextmanager
def tidegate_up(data: Path, repo: Path) -> Iterator[Up]:
    env = {**os.environ, "TIDEGATE_DATA_DIR": str(data)}  # `up` finds the Terraform provider mirrors itself
    with (data / "up.log").open("ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "tidegate", "up", "--repo", str(repo)], cwd=ROOT, env=env,
                                   stdout=output, stderr=output, stdin=subprocess.DEVNULL, start_new_session=True)
    up = Up(data, process)
    try:
        yield up
    finally:
        up.stop()


def kubeconfig_of(up: Up, environment: str, timeout: float = 300.0) -> Path:
    """The kubeconfig `up` wrote for the environment's emulator (it prints `kubectl --kubeconfig PATH`)."""
    pattern = re.compile(rf"sandbox: {re.escape(environment)} cluster \S+ \(kubectl --kubeconfig (\S+)\)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(up.output.read_text(errors="replace"))
        if found:
            return Path(found.group(1))
        up.alive()
        time.sleep(0.5)
    raise BenchFailed(f"tidegate up printed no kubeconfig for {environment} within {timeout:g} s (see {up.output})")


# --- the environment's state, as a user reads it -------------------------------------------------------


def view(data: Path, environment: str) -> dict[str, Any] | None:
    views = tidegate_json(data, "status")
    return next((v for v in views if v.get("name") == environment), None)


def wait(up: Up, check: Callable[[], T | None], timeout: float, what: str, step: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        up.alive()
        if time.monotonic() > deadline:
            raise BenchFailed(f"{what}: not done after {timeout:g} s")
        time.sleep(step)


def settled(data: Path, environment: str, head: str, after: int = 0) -> dict[str, Any] | None:
    """The environment's status (`tidegate status -o json`) when it is Synced/Healthy at `head` and its latest
    sync (numbered at least `after`) succeeded, so none of it runs; raises when that sync failed."""
    current = view(data, environment)
    if current is None:
        return None
    if current.get("last_sync_status") == "failed" and (current.get("last_sync") or 0) >= after:
        raise BenchFailed(f"{environment}: sync #{current.get('last_sync')} failed: {current.get('message')}")
    if (current.get("sync_status") == "Synced" and current.get("health") == "Healthy"
            and current.get("revision") == head and current.get("last_sync_status") == "succeeded"
            and (current.get("last_sync") or 0) >= after):
        return current
    return None


def history(data: Path, environment: str, limit: int = 20) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = tidegate_json(data, "history", environment, "--limit", str(limit))
    return result


def others_settled(data: Path, environment: str) -> bool:
    """Every other environment Synced or waiting for approval (or failed): no plan of theirs runs during a sample."""
    return all(v.get("name") == environment or v.get("sync_status") in ("Synced", "AwaitingApproval")
               or v.get("last_sync_status") == "failed" for v in tidegate_json(data, "status"))


def watch_started(up: Up, environment: str, since: int) -> bool:
    """The worker's log says its live watch is on the environment (`live watches: watching REPO/ENV`)."""
    text = worker_log(up.data)[since:]
    return bool(re.search(rf"live watches: watching \S+/{re.escape(environment)} ", text))


def worker_log(data: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in sorted((data / "logs").glob("worker*.log")))


# --- the Deployment -----------------------------------------------------------------------------------


@dataclass
class Deployment:
    apps: AppsV1Api
    namespace: str
    name: str

    def replicas(self) -> int | None:
        spec = self.apps.read_namespaced_deployment(self.name, self.namespace).spec
        return spec.replicas if spec is not None else None

    def scale(self, replicas: int) -> None:
        """`kubectl scale deployment/NAME --replicas=N`: a patch of the scale subresource by another field manager."""
        try:
            self.apps.patch_namespaced_deployment_scale(self.name, self.namespace, {"spec": {"replicas": replicas}},
                                                        field_manager=FIELD_MANAGER)
        except ApiException as error:
            raise BenchFailed(f"scaling {self.namespace}/{self.name} to {replicas} failed: {error.status} "
                              f"{error.reason}: {str(error.body)[:300]}") from None


def find_deployment(kubeconfig: Path, environment: str, wanted: str | None) -> Deployment:
    """`wanted` (NAMESPACE/NAME), else the environment's managed Deployment named `web` if any, else the first."""
    client: ApiClient = kube_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    apps = AppsV1Api(client)
    found = apps.list_deployment_for_all_namespaces(
        label_selector=f"app.kubernetes.io/managed-by=tidegate,tidegate.dev/environment={environment}").items
    names = sorted(f"{d.metadata.namespace}/{d.metadata.name}" for d in found if d.metadata is not None)
    if not names:
        raise BenchFailed(f"no Deployment managed by Tidegate in {environment}'s cluster ({kubeconfig})")
    chosen = wanted or next((n for n in names if n.endswith("/web")), names[0])
    if chosen not in names:
        raise BenchFailed(f"--deployment {chosen}: not among {environment}'s managed Deployments {names}")
    namespace, name = chosen.split("/", 1)
    return Deployment(apps, namespace, name)


# --- one sample ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    number: int
    scaled_to: int
    seconds: float | None
    seen: list[int | None] = field(default_factory=list)
    heal: dict[str, Any] | None = None
    started_wall: float = 0.0


def run_sample(up: Up, deployment: Deployment, desired: int, number: int, timeout: float) -> Sample:
    scaled_to = desired + 1 + number % 3
    started_wall = time.time()
    started = time.monotonic()
    deployment.scale(scaled_to)
    seen: list[int | None] = [scaled_to]
    deadline = started + timeout
    while time.monotonic() < deadline:
        try:
            replicas = deployment.replicas()
        except ApiException as error:
            replicas = None
            if seen[-1] is not None:
                log(f"sample {number}: GET deployment failed: {error.status} {error.reason}")
        if replicas != seen[-1]:
            seen.append(replicas)
        if replicas == desired:
            return Sample(number, scaled_to, time.monotonic() - started, seen, started_wall=started_wall)
        up.alive()
        time.sleep(POLL)
    return Sample(number, scaled_to, None, seen, started_wall=started_wall)


def stamp(text: str | None) -> float | None:
    """An ISO time from the CLI (UTC when it names no zone) as epoch seconds."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def heal_sync(data: Path, environment: str, before: int) -> dict[str, Any] | None:
    """The first sync of the environment numbered above `before` (the heal), as `tidegate show -o json` gives it."""
    newer = [s for s in history(data, environment) if s["id"] > before]
    if not newer:
        return None
    shown: dict[str, Any] = tidegate_json(data, "show", str(min(s["id"] for s in newer)))
    shown["later"] = sorted(s["id"] for s in newer)[1:]
    return shown


def describe_heal(sync: dict[str, Any], started_wall: float) -> list[str]:
    """What the heal sync did: trigger, when it was created and finished (seconds after the scale), per stage
    the plan summary, the result, its seconds and object counts."""
    created, finished = stamp(sync.get("created_at")), stamp(sync.get("finished_at"))
    head = (f"heal sync #{sync['id']} trigger {sync.get('trigger')} {sync.get('status')}; created "
            f"{created - started_wall:+.1f} s after the scale" if created is not None else "created ?")
    if finished is not None and created is not None:
        head += f", finished {finished - started_wall:+.1f} s (took {finished - created:.1f} s)"
    if sync.get("later"):
        head += f"; later syncs {sync['later']}"
    lines = [head]
    results = {r.get("stage"): r for r in sync.get("stages") or []}
    for stage in dict.fromkeys([*(sync.get("plan") or {}), *results]):
        plan = (sync.get("plan") or {}).get(stage) or {}
        result = results.get(stage) or {}
        seconds = result.get("seconds")
        counts = (result.get("summary") or {}).get("counts")
        summary = {k: v for k, v in (result.get("summary") or {}).items()
                   if k not in ("counts", "plan") and v not in (None, "", {}, [])}
        lines.append(f"  {stage}: planned {plan.get('summary', '-')!r}, {len(plan.get('changes') or [])} change(s); "
                     f"result {result.get('status', '-')}"
                     + (f" in {seconds:.1f} s" if isinstance(seconds, int | float) else "")
                     + (f", counts {json.dumps(counts)}" if counts else "")
                     + (f", summary {json.dumps(summary, default=str)[:300]}" if summary else ""))
    if sync.get("error"):
        lines.append(f"  error: {sync['error']}")
    return lines


LOG_LINE = re.compile(
    r"live watches: (environment|watching)|Task tidegate\.(?!drift_tick\[|schedule\[|sweep\[)\S+ "
    r"(received|succeeded|retry|raised)|sync \d+: \S+ -> |terraform: (Terraform v?\d|Plan:|Apply complete|No changes)"
    r"|sandbox: \S+ SSH key from|kubeconfig output|ERROR|WARNING")
"""The worker log lines that make a heal's timeline: the live watch's event, tasks (not beat's periodic ticks),
sync transitions, each Terraform run's start and result, the Ansible stage's connection set-up (`SSH key
from`) and the Kubernetes stage's (`kubeconfig output`), errors and warnings."""
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}):")


def log_lines(data: Path, since: int, started_wall: float, limit: int) -> list[str]:
    """The timeline lines of the worker log written since offset `since`, each with its offset from the scale
    (the log's times are local)."""
    lines = []
    for line in worker_log(data)[since:].splitlines():
        if not LOG_LINE.search(line):
            continue
        found = LOG_TIME.match(line)
        if found:
            moment = time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")) + int(found.group(2)) / 1000
            line = f"{moment - started_wall:+7.2f} s {line[found.end():].strip()}"
        lines.append(line[:220])
    return lines[:limit] + ([f"… {len(lines) - limit} more"] if len(lines) > limit else [])


# --- the run ------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (for 10 samples p99 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * q / 100) - 1))] if ordered else math.nan


def report(samples: list[Sample], environment: str, deployment: Deployment, desired: int) -> None:
    timed = [s.seconds for s in samples if s.seconds is not None]
    print(f"\nDeployment scaled by hand → healed (live back at desired), env with all 3 stages: {environment}, "
          f"deployment {deployment.namespace}/{deployment.name}, desired replicas {desired}")
    print("samples (s): " + ", ".join("timeout" if s.seconds is None else f"{s.seconds:.2f}" for s in samples))
    if timed:
        print(f"p50 {statistics.median(timed):.2f} s   p99 {percentile(timed, 99):.2f} s   max {max(timed):.2f} s   "
              f"({len(timed)} of {len(samples)} healed)")
    print(f"goal: p50 ≤ {GOAL_P50:g} s, p99 ≤ {GOAL_P99:g} s (issue 15; before: {BASELINE})")
    print(f"load average at end: {load()}")


def run(args: argparse.Namespace, data: Path) -> int:
    repo, target, head = prepare_repo(data)
    environment = target.environment
    if target.turned_on_self_heal:
        log(f"no environment with all three stages had selfHeal: the bench's copy sets selfHeal: true on {environment}")
    else:
        log(f"environment {environment}: all three stages and selfHeal: true (as examples/infra-repo has it)")
    started = time.monotonic()
    with tidegate_up(data, repo) as up:
        log(f"tidegate up --repo {repo} started (pid {up.process.pid}, output {up.output})")
        kubeconfig = kubeconfig_of(up, environment)
        current = wait(up, lambda: settled(data, environment, head), args.start_timeout,
                       f"{environment} Synced/Healthy at {head[:12]}", step=2.0)
        log(f"{environment} Synced/Healthy at {head[:12]} (sync #{current['last_sync']}) "
            f"{time.monotonic() - started:.0f} s after start; load {load()}")
        wait(up, lambda: others_settled(data, environment), args.start_timeout, "the other environments to settle",
             step=2.0)
        try:
            wait(up, lambda: watch_started(up, environment, 0), 120, f"the live watch on {environment}")
            time.sleep(2.0)  # its list for a baseline
        except BenchFailed as missing:
            log(f"{missing} (no 'live watches: watching …/{environment}' in the worker log); going on")
        deployment = find_deployment(kubeconfig, environment, args.deployment)
        desired = deployment.replicas()
        if desired is None:
            raise BenchFailed(f"{deployment.namespace}/{deployment.name} has no spec.replicas")
        log(f"deployment {deployment.namespace}/{deployment.name}, desired replicas {desired}, kubeconfig "
            f"{kubeconfig}; all settled {time.monotonic() - started:.0f} s after start; load {load()}")
        samples: list[Sample] = []
        last_sync = int(current["last_sync"])
        for number in range(1, args.samples + 1):
            offset = len(worker_log(data))
            sample = run_sample(up, deployment, desired, number, args.timeout)
            samples.append(sample)
            if sample.seconds is None:
                now = view(data, environment) or {}
                print(f"sample {number}: scaled to {sample.scaled_to}; NOT healed within {args.timeout:g} s; "
                      f"replicas seen {sample.seen}; {environment}: {now.get('sync_status')} {now.get('health')}, "
                      f"last sync #{now.get('last_sync')} {now.get('last_sync_status')}, open drift "
                      f"{now.get('open_drift')}, {now.get('message') or ''}", flush=True)
                sync = heal_sync(data, environment, last_sync)
                for line in (describe_heal(sync, sample.started_wall) if sync else ["no sync since the scale"]):
                    print(f"  {line}")
                for line in log_lines(data, offset, sample.started_wall, args.log_lines):
                    print(f"  | {line}")
                break
            print(f"sample {number}: scaled to {sample.scaled_to}, back at {desired} after {sample.seconds:.2f} s "
                  f"(replicas seen {sample.seen}); load {load().split()[0]}", flush=True)
            done = wait(up, partial(settled, data, environment, head, last_sync + 1), args.timeout,
                        f"{environment} Synced again after sample {number}", step=1.0)
            sync = heal_sync(data, environment, last_sync)
            for line in (describe_heal(sync, sample.started_wall) if sync else ["no sync since the scale"]):
                print(f"  {line}")
            for line in log_lines(data, offset, sample.started_wall, args.log_lines):
                print(f"  | {line}")
            last_sync = int(done["last_sync"])
            time.sleep(args.pause)
        report(samples, environment, deployment, desired)
        return 0 if samples and all(s.seconds is not None for s in samples) else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10, help="scale → healed samples")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one heal (and its sync)")
    parser.add_argument("--start-timeout", type=float, default=1800.0,
                        help="seconds to wait for the environments to settle after `tidegate up` starts")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between samples, after the heal's sync")
    parser.add_argument("--deployment", help="NAMESPACE/NAME (default: the managed Deployment `web`, else the first)")
    parser.add_argument("--log-lines", type=int, default=40, help="worker log lines printed per sample")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (store, logs, repo)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    data = Path(tempfile.mkdtemp(prefix="tg-heal-"))
    print(f"# load average at start: {load()}; data directory {data}", flush=True)
    code = 1
    try:
        code = run(args, data)
    except BenchFailed as failure:
        print(f"\nBENCH FAILED: {failure}", flush=True)
        args.keep = True
    finally:
        if args.keep or code:
            print(f"(data directory kept: {data}; `tidegate up` output in {data / 'up.log'}, logs in {data / 'logs'})")
        else:
            shutil.rmtree(data, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
