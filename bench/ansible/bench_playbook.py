"""Benchmark: the example playbook's check and apply on 2 and 6 SSH nodes, through Tidegate's
Ansible stage versus `ansible-playbook` run directly with the same inventory, ansible.cfg, extra
vars, key and environment. Goal: at most 5 % overhead.

Runs alternate between the wrapper and the direct command (the order flips every repetition) and
start from bare nodes, so both see the same work and the same machine load. Reported per row:

* wall and controller CPU, medians of each side, and their overhead (ratio of the medians);
* `paired`: the median of the per-repetition overheads (each wrapper run against the direct run
  next to it), which follows load that drifts during the benchmark better than the medians do;
* `own cpu`: the CPU of the wrapper's own process (ansible-runner's event handling, our parsing,
  artifact writing), the part of the overhead that does not depend on ansible-playbook's noise.

Controller CPU moves with wall time (ansible-playbook polls its workers every millisecond), so
both measures need a quiet machine and several repetitions: the load average is printed at the
start and the end. The wrapper's first plan also pays `--syntax-check` (reported separately;
later plans of the same inputs reuse its result). The direct side's wall time excludes writing
the data dir and closing the SSH masters; its CPU includes them, as the wrapper's does.

Usage (as root, on a machine where SSH sandbox nodes work):
    .venv/bin/python bench/ansible/bench_playbook.py [--nodes 2 6] [--repeat 5] [--modes check apply]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from providers.ansible.runner import RunRequest, prepare  # noqa: E402
from providers.ansible.stage import AnsibleStage, ConfigurationInputs, resolve  # noqa: E402
from providers.stage import StageContext  # noqa: E402
from repo_schema.models import ConfigurationSpec  # noqa: E402
from sandbox.nodes import SshNodes  # noqa: E402

EXAMPLE = ROOT / "examples" / "infra-repo"


def configuration() -> ConfigurationSpec:
    document = yaml.safe_load((EXAMPLE / "environments" / "staging.yaml").read_text())
    return ConfigurationSpec.model_validate(document["spec"]["configuration"])


def context_for(nodes: SshNodes, artifacts: Path) -> StageContext[ConfigurationInputs]:
    names = [f"staging-node-{index + 1}" for index in range(len(nodes.nodes))]
    endpoint = nodes.endpoint_map(names)
    key = Path(endpoint.pop("private_key_path")).read_text()
    terraform_nodes = [{"name": name, "address": f"10.0.{index}.10", "groups": ["nodes"]}
                       for index, name in enumerate(names)]
    return StageContext(
        environment="staging", revision="0" * 40, workdir=EXAMPLE, artifacts=artifacts,
        spec=ConfigurationInputs(configuration(), terraform_nodes),
        credentials={"ssh_private_key": key}, settings=endpoint,
    )


def wipe(nodes: SshNodes) -> None:
    for node in nodes.nodes:
        for child in node.root.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def cpu_seconds() -> tuple[float, float]:
    """Controller-side CPU: (this process, its finished children: ansible-playbook, its forks, ssh).
    The nodes' sshd and modules are not our children, so remote work is not counted."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def load_average() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


def overhead(wrapped: float, plain: float) -> float:
    return (wrapped - plain) / plain * 100


def paired(wrapped: list[float], plain: list[float]) -> float:
    """Median of the per-repetition overheads (run i of the wrapper against run i of the direct)."""
    return statistics.median(overhead(w, p) for w, p in zip(wrapped, plain, strict=True))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def bench(count: int, repeat: int, work: Path, modes: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with SshNodes(count) as nodes:
        context = context_for(nodes, work / f"artifacts-{count}")
        stage = AnsibleStage()
        inputs = resolve(context)
        wipe(nodes)
        first_plan = timed(lambda: stage.plan(context))
        plan = stage.plan(context)

        def direct(check: bool) -> float:
            request = RunRequest(playbook=inputs.playbook, inventory=inputs.inventory, extra_vars=inputs.extra_vars,
                                 check=check, private_key=inputs.private_key, known_hosts=inputs.known_hosts,
                                 settings=inputs.settings)
            prepared = prepare(request, work / f"direct-{count}-{time.monotonic_ns()}", "direct")
            try:
                started = time.perf_counter()
                result = subprocess.run(prepared.direct_command(), env=prepared.env(), cwd=inputs.playbook.parent,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                elapsed = time.perf_counter() - started
            finally:
                prepared.finish()
            if result.returncode != 0:
                raise SystemExit(f"direct ansible-playbook failed: {result.stderr[-2000:]}")
            return elapsed

        def wrapper(check: bool) -> float:
            if check:
                return timed(lambda: stage.plan(context))
            started = time.perf_counter()
            result = stage.apply(context, plan)
            elapsed = time.perf_counter() - started
            if not result.succeeded:
                raise SystemExit(f"wrapper apply failed: {result.error}")
            return elapsed

        for mode in modes:
            samples: dict[str, list[float]] = {"wrapper": [], "direct": []}
            cpu: dict[str, list[float]] = {"wrapper": [], "direct": []}
            own: list[float] = []
            for index in range(repeat):
                order = ("wrapper", "direct") if index % 2 == 0 else ("direct", "wrapper")
                for which in order:
                    wipe(nodes)
                    run = wrapper if which == "wrapper" else direct
                    self_before, children_before = cpu_seconds()
                    samples[which].append(run(mode == "check"))
                    self_after, children_after = cpu_seconds()
                    cpu[which].append(self_after - self_before + children_after - children_before)
                    if which == "wrapper":
                        own.append(self_after - self_before)
            rows.append(summarise(count, mode, samples, cpu, own))
        rows.append({"nodes": count, "mode": "first plan (+syntax check)", "wrapper": first_plan, "direct": None,
                     "overhead": None, "samples": {}})
    return rows


def summarise(count: int, mode: str, samples: dict[str, list[float]], cpu: dict[str, list[float]],
              own: list[float]) -> dict[str, Any]:
    wrapped, plain = statistics.median(samples["wrapper"]), statistics.median(samples["direct"])
    cpu_wrapped, cpu_plain = statistics.median(cpu["wrapper"]), statistics.median(cpu["direct"])
    return {
        "nodes": count, "mode": mode, "wrapper": wrapped, "direct": plain, "overhead": overhead(wrapped, plain),
        "paired": paired(samples["wrapper"], samples["direct"]), "samples": samples,
        "cpu": (cpu_wrapped, cpu_plain, overhead(cpu_wrapped, cpu_plain), paired(cpu["wrapper"], cpu["direct"])),
        "own": (statistics.median(own), statistics.median(own) / cpu_plain * 100),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 6])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--modes", nargs="+", choices=["check", "apply"], default=["check", "apply"])
    args = parser.parse_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="tidegate-bench-") as work:
        rows = [row for count in args.nodes for row in bench(count, args.repeat, Path(work), args.modes)]
    print(f"example playbook (7 tasks, one loop of 4), {args.repeat} repetitions; "
          f"load average {load_before} at the start, {load_average()} at the end")
    print("wall = elapsed s; cpu = controller CPU s; ovh = ratio of medians; paired = median of per-run overheads; "
          "own = the wrapper process's CPU s (% of direct cpu)")
    print(f"{'nodes':>5}  {'mode':<28} {'wrapper':>7} {'direct':>7} {'ovh':>7} {'paired':>7}  "
          f"{'cpu wrap':>8} {'cpu dir':>7} {'ovh':>7} {'paired':>7}  {'own':>13}  wall samples (wrapper | direct)")
    for row in rows:
        print(format_row(row))


def format_row(row: dict[str, Any]) -> str:
    def pct(value: float) -> str:
        return f"{value:+.1f}%"

    if row["direct"] is None:
        return f"{row['nodes']:>5}  {row['mode']:<28} {row['wrapper']:>7.2f}"
    cpu, own, samples = row["cpu"], row["own"], row["samples"]
    detail = (" ".join(f"{value:.2f}" for value in samples["wrapper"]) + " | "
              + " ".join(f"{value:.2f}" for value in samples["direct"]))
    return (f"{row['nodes']:>5}  {row['mode']:<28} {row['wrapper']:>7.2f} {row['direct']:>7.2f} "
            f"{pct(row['overhead']):>7} {pct(row['paired']):>7}  {cpu[0]:>8.2f} {cpu[1]:>7.2f} {pct(cpu[2]):>7} "
            f"{pct(cpu[3]):>7}  {own[0]:>6.3f} ({own[1]:.1f}%)  {detail}")


if __name__ == "__main__":
    main()
