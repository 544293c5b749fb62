"""A worker SIGKILLed during `terraform apply` leaves its DynamoDB state lock behind, naming it.

The lock is broken only once its holder is known dead (the lock's `Who` names the worker and the
worker's heartbeat is gone); a live holder's lock is respected. The holder here is a real process
applying a real plan against moto, killed while a `local-exec` provisioner keeps the apply (and
the lock) going; its sealed terraform dies with it (bwrap `--die-with-parent`).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from providers.stage import StageContext
from providers.terraform import StateLocked, TerraformBackend, TerraformSpec, TerraformStage
from providers.terraform.holders import Holder
from sandbox.aws import AwsEndpoints

ROOT = Path(__file__).resolve().parents[3]
HOLDER = "holder-vm:1001"
SLOW_APPLY = """
resource "terraform_data" "first" {}

resource "terraform_data" "slow" {
  depends_on = [terraform_data.first]
  provisioner "local-exec" {
    command = "sleep ${var.seconds}"
  }
}

variable "seconds" {
  type = number
}
"""


@dataclass
class HeldLock:
    """A worker process mid-apply, holding the state lock; `context` runs the same environment."""

    process: subprocess.Popen[bytes]
    context: StageContext[TerraformSpec]
    item: Callable[[], dict[str, Any] | None]

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def _lock_info(aws: AwsEndpoints, key: str) -> dict[str, Any] | None:
    found = aws.client("dynamodb").get_item(TableName=aws.lock_table, Key={"LockID": {"S": f"{aws.bucket}/{key}"}})
    item = found.get("Item")
    return json.loads(item["Info"]["S"]) if item and "Info" in item else None


@pytest.fixture
def held_lock(stage: TerraformStage, tmp_path: Path, aws: AwsEndpoints, plugin_dirs: str) -> Iterator[HeldLock]:
    if not stage.seal.status().sealed:
        pytest.skip("this machine cannot seal terraform (bubblewrap and the tidegate-runner user: scripts/setup.sh "
                    "installs both); only a sealed run, under its own host name, writes its worker into a lock")
    checkout = tmp_path / "checkout"
    (checkout / "infra").mkdir(parents=True)
    (checkout / "infra" / "main.tf").write_text(SLOW_APPLY)
    key = f"dead-worker/{uuid.uuid4().hex}/terraform.tfstate"
    context = StageContext(
        environment="dev", revision="0" * 40, workdir=checkout, artifacts=tmp_path / "artifacts",
        spec=TerraformSpec(path="infra", timeout=300, vars={"seconds": 120},
                           backend=TerraformBackend(type="s3", bucket=aws.bucket, key=key, region=aws.region,
                                                    dynamodb_table=aws.lock_table, lock_timeout=2)),
        settings={"terraform_plugin_dirs": plugin_dirs, "backend_config": aws.backend_settings()},
        credentials=aws.stage_credentials(), worker=HOLDER)
    call = tmp_path / "call.pickle"
    call.write_bytes(pickle.dumps((context, stage.plan(context))))
    process = subprocess.Popen([sys.executable, "-m", "tests.support.lock_holder", str(call)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    quick = replace(context.spec, vars={"seconds": 0})  # the next run's apply does not wait
    held = HeldLock(process, replace(context, worker="next-vm:1002", spec=quick), lambda: _lock_info(aws, key))
    deadline = time.monotonic() + 120
    while (held.item() or {}).get("Operation") != "OperationTypeApply":
        assert process.poll() is None and time.monotonic() < deadline, "the holder never took the apply lock"
        time.sleep(0.3)
    yield held
    if process.poll() is None:
        held.kill()


def test_a_dead_workers_apply_lock_is_broken_and_the_next_apply_succeeds(
        stage: TerraformStage, held_lock: HeldLock) -> None:
    assert f"@w.{HOLDER}-tf" in held_lock.item()["Who"]  # type: ignore[index]
    held_lock.kill()
    assert held_lock.item() is not None  # the killed apply left its lock

    context = replace(held_lock.context, worker_dead=lambda worker: {HOLDER: True}.get(worker))
    plan = stage.plan(context)
    result = stage.apply(context, plan)

    assert result.succeeded, result.error
    [broken] = plan.details["broken_locks"]
    assert f"held by tidegate-runner@w.{HOLDER}-tf" in broken and "did not record in state" in broken
    assert held_lock.item() is None


def test_a_holder_that_dies_while_the_next_run_waits_has_its_lock_broken_within_a_probe(
        stage: TerraformStage, held_lock: HeldLock) -> None:
    """The lock timeout is long (a minute); the next run judges the holder after every one-second
    probe: alive for the first three, then its heartbeat is gone, and the lock is broken then."""
    verdicts = iter([False, False, False])
    asked: list[str] = []

    def worker_dead(worker: str) -> bool | None:
        asked.append(worker)
        if worker != HOLDER:
            return None
        dead = next(verdicts, True)
        if dead:
            held_lock.kill()  # the heartbeat goes with the worker: judged dead only once it is
        return dead

    backend = held_lock.context.spec.backend
    assert backend is not None
    context = replace(held_lock.context, worker_dead=worker_dead,
                      spec=replace(held_lock.context.spec, backend=replace(backend, lock_timeout=60)),
                      settings={**held_lock.context.settings, "lock_probe": 1})
    started = time.monotonic()
    plan = stage.plan(context)

    assert time.monotonic() - started < 45, "broken at the first probe after the holder died, not after 60 s"
    assert asked == [HOLDER] * 4
    [broken] = plan.details["broken_locks"]
    assert f"held by tidegate-runner@w.{HOLDER}-tf" in broken
    assert held_lock.item() is None


def test_a_live_workers_lock_is_respected_and_named(stage: TerraformStage, held_lock: HeldLock) -> None:
    context = replace(held_lock.context, worker_dead=lambda worker: {HOLDER: False}.get(worker))

    with pytest.raises(StateLocked) as refused:
        stage.plan(context)

    assert refused.value.holder is Holder.alive
    assert f"w.{HOLDER}-tf" in str(refused.value) and "holder alive" in str(refused.value)
    assert held_lock.item() is not None and held_lock.process.poll() is None  # still held, still applying
