"""Attack: make a Tidegate run break a Terraform state lock it must not break.

Terraform's DynamoDB lock is all that stops two applies of one state at once. A Tidegate run that
finds the state locked waits in short probes and judges the holder after each (so a killed
worker's lock is broken soon after its heartbeat is gone); that judgement must never wear down to
breaking a lock whose holder is not known dead *to this installation*: a person's `terraform
apply` from a laptop, or a worker of another Tidegate installation that shares the lock table (its
heartbeats live in another Redis, so this one cannot see them beat). Only a worker this
installation registered, whose heartbeat is gone, has its lock broken — the control case, which
shows the test would see a broken lock.

Real parts: terraform against moto's S3 backend and DynamoDB lock table, a real Redis holding the
heartbeats, and `reconciler.heartbeats.is_dead` as the judge the workers are given.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from providers.stage import StageContext
from providers.terraform import StateLocked, TerraformBackend, TerraformSpec, TerraformStage
from reconciler import heartbeats
from sandbox.aws import AwsEndpoints, AwsSandbox
from tests.support.redis_server import start_redis

pytestmark = pytest.mark.integration
OURS = "our-vm:7"


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsEndpoints]:
    with AwsSandbox() as endpoints:
        yield endpoints


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    directory = tmp_path / "redis"
    directory.mkdir()
    with start_redis(directory) as server:
        client = Redis(unix_socket_path=str(server.socket_path))
        yield client
        client.close()


def _lock(aws: AwsEndpoints, key: str, who: str) -> dict[str, Any]:
    """Write the lock a terraform apply by `who` holds on `key` (Terraform's own item format)."""
    info = {"ID": str(uuid.uuid4()), "Operation": "OperationTypeApply", "Info": "", "Who": who,
            "Version": "1.9.0", "Created": "2026-12-07T10:00:00Z", "Path": f"{aws.bucket}/{key}"}
    aws.client("dynamodb").put_item(TableName=aws.lock_table, Item={
        "LockID": {"S": f"{aws.bucket}/{key}"}, "Info": {"S": json.dumps(info)}})
    return info


def _held(aws: AwsEndpoints, key: str) -> dict[str, Any] | None:
    item = aws.client("dynamodb").get_item(TableName=aws.lock_table, Key={"LockID": {"S": f"{aws.bucket}/{key}"}})
    found = item.get("Item")
    return json.loads(found["Info"]["S"]) if found else None


def _context(aws: AwsEndpoints, tmp_path: Path, key: str, redis: Redis) -> StageContext[TerraformSpec]:
    checkout = tmp_path / "checkout"
    (checkout / "infra").mkdir(parents=True)
    (checkout / "infra" / "main.tf").write_text('resource "terraform_data" "one" {}\n')
    return StageContext(
        environment="dev", revision="0" * 40, workdir=checkout, artifacts=tmp_path / "artifacts",
        spec=TerraformSpec(path="infra", timeout=300, backend=TerraformBackend(
            type="s3", bucket=aws.bucket, key=key, region=aws.region, dynamodb_table=aws.lock_table,
            lock_timeout=4)),
        settings={"terraform_plugin_dirs": os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS", ""),
                  "backend_config": aws.backend_settings(), "lock_probe": 1},
        credentials=aws.stage_credentials(), worker="next-vm:8", worker_dead=partial(heartbeats.is_dead, redis))


@pytest.mark.parametrize("who", [
    "alice@laptop.example",
    f"tidegate-runner@w.other-install-vm:7-tf{'0' * 10}",
    f"tidegate-runner@w.{OURS}-tf{'0' * 10}",
], ids=["a-person-s-apply", "another-installation-s-worker", "our-worker-still-beating"])
def test_a_lock_whose_holder_is_not_known_dead_here_is_never_broken_however_long_the_run_probes(
        aws: AwsEndpoints, tmp_path: Path, redis: Redis, who: str) -> None:
    heartbeats.beat(redis, OURS)  # registered and beating
    key = f"foreign/{uuid.uuid4().hex}/terraform.tfstate"
    lock = _lock(aws, key, who)

    with pytest.raises(StateLocked) as refused:
        TerraformStage().plan(_context(aws, tmp_path, key, redis))

    assert who in str(refused.value), "the refusal names the holder"
    assert _held(aws, key) == lock, "the lock is exactly as its holder left it"


def test_only_a_worker_this_installation_knows_is_dead_has_its_lock_broken(
        aws: AwsEndpoints, tmp_path: Path, redis: Redis) -> None:
    heartbeats.beat(redis, OURS)
    redis.delete(heartbeats.PREFIX + OURS)  # its heartbeat is gone: it died
    key = f"foreign/{uuid.uuid4().hex}/terraform.tfstate"
    _lock(aws, key, f"tidegate-runner@w.{OURS}-tf{'0' * 10}")

    plan = TerraformStage().plan(_context(aws, tmp_path, key, redis))

    [broken] = plan.details["broken_locks"]
    assert f"w.{OURS}-tf" in broken
    assert _held(aws, key) is None
