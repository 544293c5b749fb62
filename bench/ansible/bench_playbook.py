"""Benchmark: the example playbook's check and apply on 2 and 6 SSH nodes, through Tidegate's
Ansible stage versus `ansible-playbook` run directly with the same inventory, ansible.cfg, extra
vars, key and environment. Goal: at most 5 % overhead.

Runs alternate between the wrapper and the direct command (the order flips every repetition) and
start from bare nodes, so both see the same work and the same machine load; medians are reported.
The wrapper's first plan also pays `--syntax-check` (reported separately; later plans of the same
inputs reuse its result).

Usage (as root, on a machine where SSH sandbox nodes work):
    .venv/bin/python bench/ansible/bench_playbook.py [--nodes 2 6] [--repeat 3]
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
from providers.ansible.stage import AnsibleStage, resolve  # noqa: E402
from providers.stage import StageContext  # noqa: E402
from sandbox.nodes import SshNodes  # noqa: E402

EXAMPLE = ROOT / "examples" / "infra-repo"


def configuration() -> dict[str, Any]:
    document = yaml.safe_load((EXAMPLE / "environments" / "staging.yaml").read_text())
    return dict(document["spec"]["configuration"])


def context_for(nodes: SshNodes, artifacts: Path) -> StageContext:
    names = [f"staging-node-{index + 1}" for index in range(len(nodes.nodes))]
    endpoint = nodes.endpoint_map(names)
    key = Path(endpoint.pop("private_key_path")).read_text()
    terraform_nodes = [{"name": name, "address": f"10.0.{index}.10", "groups": ["nodes"]}
                       for index, name in enumerate(names)]
    return StageContext(
        environment="staging", revision="0" * 40, workdir=EXAMPLE, artifacts=artifacts,
        spec={"configuration": configuration()}, inputs={"nodes": terraform_nodes},
        credentials={"ssh_private_key": key}, settings=endpoint,
    )


def wipe(nodes: SshNodes) -> None:
    for node in nodes.nodes:
        for child in node.root.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def cpu_seconds() -> float:
    """Controller-side CPU (this process and its finished children: ansible-playbook, its forks,
    ssh). The nodes' sshd and modules are not our children, so remote work is not counted."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started




def bench(count: int, repeat: int, work: Path) -> list[dict[str, Any]]:
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

        for mode in ("check", "apply"):
            samples: dict[str, list[float]] = {"wrapper": [], "direct": []}
            cpu: dict[str, list[float]] = {"wrapper": [], "direct": []}
            for index in range(repeat):
                order = ("wrapper", "direct") if index % 2 == 0 else ("direct", "wrapper")
                for which in order:
                    wipe(nodes)
                    run = wrapper if which == "wrapper" else direct
                    cpu_before = cpu_seconds()
                    samples[which].append(run(mode == "check"))
                    cpu[which].append(cpu_seconds() - cpu_before)
            wrapped, plain = statistics.median(samples["wrapper"]), statistics.median(samples["direct"])
            cpu_wrapped, cpu_plain = statistics.median(cpu["wrapper"]), statistics.median(cpu["direct"])
            rows.append({"nodes": count, "mode": mode, "wrapper": wrapped, "direct": plain,
                         "overhead": (wrapped - plain) / plain * 100, "samples": samples,
                         "cpu": (cpu_wrapped, cpu_plain, (cpu_wrapped - cpu_plain) / cpu_plain * 100)})
        rows.append({"nodes": count, "mode": "first plan (+syntax check)", "wrapper": first_plan, "direct": None,
                     "overhead": None, "samples": {}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 6])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tidegate-bench-") as work:
        rows = [row for count in args.nodes for row in bench(count, args.repeat, Path(work))]
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"example playbook (7 tasks, one loop of 4), medians of {args.repeat}; load average {' '.join(load)}")
    print("wall = elapsed seconds; cpu = controller CPU seconds (load-independent; the wrapper's own cost)")
    print(f"{'nodes':>5}  {'mode':<28} {'wrapper s':>9} {'direct s':>9} {'overhead':>9}  "
          f"{'cpu wrap':>8} {'cpu dir':>8} {'cpu ovh':>8}  wall samples (wrapper | direct)")
    for row in rows:
        direct = f"{row['direct']:.2f}" if row["direct"] is not None else "-"
        overhead = f"{row['overhead']:+.1f} %" if row["overhead"] is not None else "-"
        cpu = row.get("cpu")
        cpu_text = f"{cpu[0]:>8.2f} {cpu[1]:>8.2f} {cpu[2]:>+7.1f}%" if cpu else f"{'-':>8} {'-':>8} {'-':>8}"
        samples = row["samples"]
        detail = (" ".join(f"{value:.2f}" for value in samples["wrapper"]) + " | "
                  + " ".join(f"{value:.2f}" for value in samples["direct"])) if samples else ""
        print(f"{row['nodes']:>5}  {row['mode']:<28} {row['wrapper']:>9.2f} {direct:>9} {overhead:>9}  "
              f"{cpu_text}  {detail}")


if __name__ == "__main__":
    main()
