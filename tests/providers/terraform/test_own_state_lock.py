"""A state lock that a run's own terraform command left behind is released by that run.

Two ways a `terraform plan` leaves its own DynamoDB lock, both seen through a proxy in front of moto
that fails chosen DynamoDB calls (`like_aws`: every retry is carried out again, as real AWS does;
the sandbox itself answers a retry from its record):

* it cannot release the lock (every attempt of the DeleteItem fails): terraform reports "Error
  releasing the state lock" and exits, the lock stays;
* the AWS SDK retries the conditional PutItem that took the lock after its answer was lost: the
  retry finds the lock the first attempt wrote, and terraform waits `-lock-timeout` on its own lock.

Left there, the lock blocks every later run of the environment ("state is locked … held by
tidegate-runner@… for OperationTypePlan"), though nobody holds it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from providers.stage import StageContext
from providers.terraform import TerraformBackend, TerraformSpec, TerraformStage
from sandbox.aws import AwsEndpoints
from tests.support.faulty_proxy import FaultyProxy


@pytest.fixture
def state_key() -> str:
    return f"own-lock/{uuid.uuid4().hex}/terraform.tfstate"


@pytest.fixture
def lock_items(aws: AwsEndpoints, state_key: str) -> Iterator[Any]:
    def items() -> list[dict[str, Any]]:
        table = aws.client("dynamodb")
        found = table.get_item(TableName=aws.lock_table, Key={"LockID": {"S": f"{aws.bucket}/{state_key}"}})
        return [found["Item"]] if "Item" in found else []
    yield items


def _context(simple_stack: Any, aws: AwsEndpoints, proxy: FaultyProxy, state_key: str) -> StageContext[TerraformSpec]:
    proxied = dataclasses.replace(aws, url=proxy.url)
    return StageContext(
        environment="dev", revision="0" * 40, workdir=simple_stack.checkout, artifacts=simple_stack.artifacts,
        spec=TerraformSpec(path="infra", vars={"name": "web"}, timeout=180,
                           backend=TerraformBackend(type="s3", bucket=aws.bucket, key=state_key, region=aws.region,
                                                    dynamodb_table=aws.lock_table, lock_timeout=2)),
        settings={"terraform_plugin_dirs": simple_stack.plugin_dirs, "backend_config": proxied.backend_settings(),
                  "backend_retry_delay": 0.5},
        credentials=proxied.stage_credentials(),
    )


def test_a_plan_that_could_not_release_its_lock_releases_it_and_plans(
        stage: TerraformStage, simple_stack: Any, aws: AwsEndpoints, state_key: str, lock_items: Any) -> None:
    # terraform's S3 backend makes 5 attempts at each call: all of the release's fail
    faults = {("DeleteItem", n): "refuse" for n in range(1, 6)}
    with FaultyProxy(aws.url, faults, like_aws=True) as proxy:
        plan = stage.plan(_context(simple_stack, aws, proxy, state_key))

    assert proxy.calls["DeleteItem"] > 5  # the release failed, then the lock was released by its ID
    assert {change.address for change in plan.changes} == {"terraform_data.app", "terraform_data.db"}
    assert lock_items() == []


def test_a_plan_that_waited_on_its_own_lock_releases_it_and_plans(
        stage: TerraformStage, simple_stack: Any, aws: AwsEndpoints, state_key: str, lock_items: Any) -> None:
    if not stage.seal.status().sealed:
        pytest.skip("a lock names its own run only when terraform runs sealed, under the run's host name")
    # moto takes the lock, its answer is lost; the SDK's retry of the conditional write then fails
    # on that lock, and terraform waits -lock-timeout on its own lock
    with FaultyProxy(aws.url, {("PutItem", 1): "lose"}, like_aws=True) as proxy:
        plan = stage.plan(_context(simple_stack, aws, proxy, state_key))

    assert proxy.calls["PutItem"] > 2  # the lost write, its retry, and the plan's second run
    assert {change.address for change in plan.changes} == {"terraform_data.app", "terraform_data.db"}
    assert lock_items() == []


def test_an_apply_that_waited_on_its_own_lock_applied_nothing_so_it_releases_it_and_applies(
        stage: TerraformStage, simple_stack: Any, aws: AwsEndpoints, state_key: str, lock_items: Any) -> None:
    if not stage.seal.status().sealed:
        pytest.skip("a lock names its own run only when terraform runs sealed, under the run's host name")
    # the plan takes and releases the lock (PutItem 1); the apply's lock write (PutItem 2) is taken,
    # its answer lost: terraform waits on its own lock and stops before applying anything, so
    # running it again is safe (an apply that ran is never repeated)
    with FaultyProxy(aws.url, {("PutItem", 2): "lose"}, like_aws=True) as proxy:
        context = _context(simple_stack, aws, proxy, state_key)
        result = stage.apply(context, stage.plan(context))

    assert result.succeeded, result.error
    assert proxy.calls["PutItem"] > 3
    assert lock_items() == []
