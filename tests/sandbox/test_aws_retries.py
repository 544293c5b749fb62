"""A call whose answer is lost on the way is carried out once: the SDK's retry gets the first answer.

Under load the e2e bootstrap's first apply failed on `RevokeSecurityGroupEgress … InvalidPermission.
NotFound`, and once on its own state lock: moto had carried the call out, the answer never reached
the AWS SDK, and the SDK's retry of a call that is not idempotent failed on what the first attempt
did. A proxy that resets the connection after moto answered reproduces it with boto3, whose
retries send the same `amz-sdk-invocation-id` as the Go SDK under Terraform does.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from sandbox.aws import AwsEndpoints, AwsSandbox
from sandbox.aws_server import REPLAYS_PATH
from tests.support.faulty_proxy import FaultyProxy

EVERYTHING = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsEndpoints]:
    with AwsSandbox() as endpoints:
        yield endpoints


def _client(aws: AwsEndpoints, service: str, url: str, read_timeout: float = 60) -> Any:
    return boto3.client(service, endpoint_url=url, region_name=aws.region, aws_access_key_id=aws.access_key,
                        aws_secret_access_key=aws.secret_key,
                        config=Config(retries={"mode": "standard", "max_attempts": 5}, read_timeout=read_timeout))


@dataclass(frozen=True)
class Call:
    """A call that is not idempotent: `make` prepares what it needs on moto and returns the call
    (given a client through the proxy); `check` reads the outcome from moto directly."""

    service: str
    operation: str
    make: Callable[[AwsEndpoints], Callable[[Any], Any]]
    check: Callable[[AwsEndpoints, Any], None]


def _revoke_default_egress(aws: AwsEndpoints) -> Callable[[Any], Any]:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="198.51.100.0/24")["Vpc"]["VpcId"]
    group: str = ec2.create_security_group(GroupName=f"web-{vpc}", Description="web", VpcId=vpc)["GroupId"]

    def revoke(client: Any) -> str:
        client.revoke_security_group_egress(GroupId=group, IpPermissions=EVERYTHING)
        return group
    return revoke


def _no_egress_left(aws: AwsEndpoints, group: str) -> None:
    found = aws.client("ec2").describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    assert found["IpPermissionsEgress"] == []


def _take_state_lock(aws: AwsEndpoints) -> Callable[[Any], Any]:
    lock_id = f"{aws.bucket}/{uuid.uuid4().hex}/terraform.tfstate"

    def take(client: Any) -> str:
        client.put_item(TableName=aws.lock_table, Item={"LockID": {"S": lock_id}},
                        ConditionExpression="attribute_not_exists(LockID)")
        return lock_id
    return take


def _lock_held(aws: AwsEndpoints, lock_id: str) -> None:
    found = aws.client("dynamodb").get_item(TableName=aws.lock_table, Key={"LockID": {"S": lock_id}})
    assert found["Item"]["LockID"] == {"S": lock_id}


CALLS = [
    pytest.param(Call("ec2", "RevokeSecurityGroupEgress", _revoke_default_egress, _no_egress_left),
                 id="revoking-a-new-security-group's-default-egress-rule"),
    pytest.param(Call("dynamodb", "PutItem", _take_state_lock, _lock_held), id="taking-the-state-lock"),
]


def _replays(aws: AwsEndpoints) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{aws.url}{REPLAYS_PATH}", timeout=10) as answer:
        return list(json.load(answer)["replays"])


# "lose": the connection is reset after moto answered; "late": the answer comes after the client
# gave up waiting (its read timeout is 2 s); either way the SDK retries a call already carried out
@pytest.mark.parametrize("fault", ["lose", "late"])
@pytest.mark.parametrize("call", CALLS)
def test_a_retried_call_whose_answer_was_lost_gets_the_first_answer_not_a_second_execution(
        aws: AwsEndpoints, call: Call, fault: str) -> None:
    make = call.make(aws)
    with FaultyProxy(aws.url, {(call.operation, 1): fault}, late_seconds=4.0) as proxy:
        outcome = make(_client(aws, call.service, proxy.url, read_timeout=2))

    assert proxy.calls[call.operation] >= 2  # the lost attempt and the SDK's retry (more if moto is slow)
    call.check(aws, outcome)
    replayed = [replay for replay in _replays(aws) if replay["invocation"] in proxy.invocations[call.operation]]
    assert replayed[0]["attempt"].startswith("attempt=2")
    assert {replay["status"] for replay in replayed} == {"200 OK"}


def test_a_call_made_anew_is_carried_out_again(aws: AwsEndpoints) -> None:
    revoke = _revoke_default_egress(aws)
    client = _client(aws, "ec2", aws.url)
    revoke(client)

    with pytest.raises(ClientError, match=r"InvalidPermission\.NotFound"):
        revoke(client)  # a new invocation, not a retry: moto answers as AWS would
