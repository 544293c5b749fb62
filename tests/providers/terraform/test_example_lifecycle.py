"""One lifecycle of the example stack against moto: S3 state, DynamoDB lock, real terraform and
AWS provider. Applied once per session (the `applied_example` fixture); each test leaves the stack
as it found it, in sync."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from providers.stage import Action, Outcome, StageContext, StageResult
from providers.terraform import StateLocked, TerraformSpec, TerraformStage
from sandbox.aws import AwsEndpoints

pytestmark = pytest.mark.integration

EXAMPLE_LOCK_ID = "tidegate-state/infra-repo/staging/terraform.tfstate"


def _vpc_and_group(result: StageResult) -> tuple[str, str]:
    return str(result.outputs["vpc_id"]), str(result.outputs["security_group_id"])


def test_applying_the_example_creates_the_cluster_and_gives_outputs_for_later_stages(
        applied_example: StageResult) -> None:
    outcomes = applied_example.outcomes
    assert outcomes["aws_eks_cluster.this"] is Outcome.created
    assert outcomes["aws_instance.node[1]"] is Outcome.created
    assert set(outcomes.values()) == {Outcome.created}
    assert [node["name"] for node in applied_example.outputs["nodes"]] == ["staging-node-1", "staging-node-2"]
    assert applied_example.sensitive_outputs == frozenset({"kubeconfig"})
    assert "apiVersion" not in applied_example.log  # the kubeconfig never reaches the log


def test_right_after_the_apply_a_plan_has_nothing_to_do(
        applied_example: StageResult, example_stage: TerraformStage,
        example_context: StageContext[TerraformSpec]) -> None:
    plan = example_stage.plan(example_context)

    assert not plan.has_changes, [(c.address, c.action, c.diff) for c in plan.changes if c.action != Action.no_op]
    assert "aws_eks_node_group.default" in {c.address for c in plan.changes}
    assert plan.summary() == "+0 ~0 -0"


def test_changes_made_in_the_cloud_api_are_drift_and_the_saved_correcting_plan_heals_them(
        applied_example: StageResult, example_stage: TerraformStage,
        example_context: StageContext[TerraformSpec],
        aws: AwsEndpoints) -> None:
    vpc_id, group_id = _vpc_and_group(applied_example)
    ec2 = aws.client("ec2")
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
        "IpRanges": [{"CidrIp": "203.0.113.0/24", "Description": "opened by hand"}]}])
    ec2.create_tags(Resources=[vpc_id], Tags=[{"Key": "owner", "Value": "someone-by-hand"}])

    report = example_stage.check_drift(example_context)

    found = {(item.address, item.field) for item in report.items}
    assert found == {("aws_security_group.cluster", "ingress"), ("aws_vpc.this", "tags.owner")}
    tag = next(item for item in report.items if item.field == "tags.owner")
    assert (tag.desired, tag.live) == (None, "someone-by-hand")
    rule = next(item for item in report.items if item.field == "ingress")
    assert len(rule.live) == len(rule.desired) + 1
    assert "8080" in json.dumps(rule.live) and "8080" not in json.dumps(rule.desired)

    assert report.correction is not None and report.correction.artifact is not None
    assert {c.address: c.action for c in report.correction.changes if c.action != Action.no_op} == {
        "aws_security_group.cluster": Action.update, "aws_vpc.this": Action.update}
    healed = example_stage.apply(example_context, report.correction)
    assert healed.succeeded, healed.error
    assert example_stage.observe(example_context) == []  # the next plan (-detailed-exitcode) is clean


def test_a_concurrent_apply_is_refused_by_the_dynamodb_state_lock_naming_its_holder(
        applied_example: StageResult, example_stage: TerraformStage,
        example_context: StageContext[TerraformSpec],
        aws: AwsEndpoints, tmp_path: Path) -> None:
    vpc_id, _ = _vpc_and_group(applied_example)
    aws.client("ec2").create_tags(Resources=[vpc_id], Tags=[{"Key": "owner", "Value": "for-the-lock-test"}])
    correction = example_stage.check_drift(example_context).correction
    assert correction is not None
    # A second worker: its own workspace (initialised beforehand), the same state in S3.
    other_worker = dataclasses.replace(example_context, settings={
        **example_context.settings, "terraform_workspaces": str(tmp_path / "other-worker")})
    second = TerraformStage()
    second.state_version(other_worker)
    first: dict[str, Any] = {}
    applying = threading.Thread(target=lambda: first.update(result=example_stage.apply(example_context, correction)))
    applying.start()
    holder = _wait_for_lock(aws)

    try:
        with pytest.raises(StateLocked) as refused:
            second.apply(other_worker, correction)
    finally:
        applying.join(timeout=300)

    message = str(refused.value)
    assert "DynamoDB table 'tidegate-locks'" in message
    assert refused.value.lock["ID"] == holder["ID"]
    assert refused.value.lock["Who"] == holder["Who"] and holder["Who"] in message
    assert refused.value.lock["Operation"] == "OperationTypeApply"
    assert first["result"].succeeded, first["result"].error
    assert example_stage.observe(example_context) == []


def _wait_for_lock(aws: AwsEndpoints, timeout: float = 120.0) -> dict[str, Any]:
    """The lock item terraform writes to the DynamoDB table while it holds the state."""
    table = aws.client("dynamodb")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = table.get_item(TableName=aws.lock_table, Key={"LockID": {"S": EXAMPLE_LOCK_ID}}).get("Item")
        if item and "Info" in item:
            info: dict[str, Any] = json.loads(item["Info"]["S"])
            return info
        time.sleep(0.05)
    raise AssertionError("the first apply never took the state lock")
