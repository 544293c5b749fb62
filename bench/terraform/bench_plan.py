"""Our plan of the example stack against what a careful user runs by hand, same stack, same run.

    .venv/bin/python bench/terraform/bench_plan.py [--rounds 3] [--no-apply]

Starts the moto sandbox, applies the example stack once (unless --no-apply, then both sides plan
20 creates), then alternates per round:

* ours:  `TerraformStage.plan(context)`: sync the workspace, cached init check, `plan -json -out`,
         `show -json`, parse into a StagePlan;
* hand:  `terraform plan -out=F` then `terraform show -json F` in an already initialised copy of
         the very same workspace (same module, variables, provider override, backend, mirror).

Prints wall and child-CPU seconds per side (medians) and the ratio ours / hand (goal <= 1.05).
Needs TIDEGATE_TERRAFORM_PLUGIN_DIRS (or a provider mirror in a standard place).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from providers.stage import StageContext  # noqa: E402
from providers.terraform import TerraformBackend, TerraformSpec, TerraformStage  # noqa: E402
from providers.terraform.runner import clean_environment  # noqa: E402
from sandbox.aws import AwsSandbox  # noqa: E402

MODULE = "infrastructure/terraform/cluster"
VARIABLES = {"cluster_name": "bench", "environment": "staging", "node_count": 2, "instance_type": "t3.small"}


def measure(action: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of child processes (terraform and its provider)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    action()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-apply", action="store_true", help="plan an empty state (20 creates)")
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="tidegate-bench-"))
    try:
        with AwsSandbox() as aws:
            context = StageContext(
                environment="bench", revision="bench", workdir=ROOT / "examples" / "infra-repo",
                artifacts=scratch / "artifacts",
                spec=TerraformSpec(path=MODULE, vars=VARIABLES, timeout=900, backend=TerraformBackend(
                    type="s3", bucket=aws.bucket, key="bench/terraform.tfstate", region=aws.region,
                    dynamodb_table=aws.lock_table, lock_timeout=60)),
                settings={"terraform_plugin_dirs": os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS", ""),
                          **aws.stage_settings()},
                credentials=aws.stage_credentials(),
            )
            stage = TerraformStage()
            print("warming up: init + first plan" + ("" if options.no_apply else " + apply"), flush=True)
            first = stage.plan(context)
            if not options.no_apply:
                result = stage.apply(context, first)
                if not result.succeeded:
                    print(f"apply failed: {result.error}", file=sys.stderr)
                    return 1

            workspace = scratch / "artifacts" / "workspaces" / "bench"
            hand = scratch / "hand"
            shutil.copytree(workspace / "module", hand / "module", ignore=shutil.ignore_patterns(".terraform"))
            shutil.copy(workspace / "backend.tfbackend", hand / "backend.tfbackend")
            shutil.copy(workspace / "terraformrc", hand / "terraformrc")
            env = clean_environment({**aws.stage_credentials(), "TF_CLI_CONFIG_FILE": str(hand / "terraformrc")})

            def terraform(*args: str) -> None:
                subprocess.run(["terraform", *args], cwd=hand / "module", env=env, check=True,
                               capture_output=True)

            terraform("init", "-input=false", f"-backend-config={hand / 'backend.tfbackend'}")

            def by_hand() -> None:
                terraform("plan", "-input=false", "-out=F")
                terraform("show", "-json", "F")

            def ours() -> None:
                stage.plan(context)

            results: dict[str, list[tuple[float, float]]] = {"ours": [], "hand": []}
            for index in range(options.rounds):
                order = [("ours", ours), ("hand", by_hand)]
                if index % 2:
                    order.reverse()
                for name, action in order:
                    results[name].append(measure(action))
                    wall, cpu = results[name][-1]
                    print(f"round {index + 1} {name:>4}: {wall:6.2f}s wall {cpu:6.2f}s cpu", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    ours_wall = statistics.median(w for w, _ in results["ours"])
    hand_wall = statistics.median(w for w, _ in results["hand"])
    ours_cpu = statistics.median(c for _, c in results["ours"])
    hand_cpu = statistics.median(c for _, c in results["hand"])
    print(f"median ours {ours_wall:.2f}s wall / {ours_cpu:.2f}s cpu; by hand {hand_wall:.2f}s wall / "
          f"{hand_cpu:.2f}s cpu")
    print(f"ratio ours/hand: wall {ours_wall / hand_wall:.3f}, cpu {ours_cpu / hand_cpu:.3f} (goal <= 1.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
