"""The sandbox AWS endpoint: a real moto server on loopback with the state bucket and lock table."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from sandbox.aws import AwsSandbox, SandboxError, free_port


def test_the_sandbox_serves_aws_with_the_state_bucket_and_lock_table_then_stops() -> None:
    sandbox = AwsSandbox(bucket="state-for-test", lock_table="locks-for-test")
    with sandbox as aws:
        assert aws.url.startswith("http://127.0.0.1:")
        buckets = [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]]
        table = aws.client("dynamodb").describe_table(TableName="locks-for-test")["Table"]
        policy = aws.client("iam").get_policy(PolicyArn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy")

    assert buckets == ["state-for-test"]
    assert table["KeySchema"] == [{"AttributeName": "LockID", "KeyType": "HASH"}]
    assert policy["Policy"]["PolicyName"] == "AmazonEKSClusterPolicy"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{aws.url}/moto-api/", timeout=2)


def test_the_endpoint_map_points_provider_and_backend_at_the_sandbox() -> None:
    with AwsSandbox() as aws:
        settings = aws.stage_settings()
        credentials = aws.stage_credentials()

    assert set(settings["aws_provider"]["endpoints"].values()) == {aws.url}
    assert settings["aws_provider"]["skip_credentials_validation"] is True
    assert settings["backend_config"]["endpoints"]["dynamodb"] == aws.url
    assert settings["backend_config"]["dynamodb_table"] == "tidegate-locks"
    assert settings["backend_config"]["bucket"] == "tidegate-state"
    assert credentials["AWS_ACCESS_KEY_ID"] == aws.access_key


def test_a_port_already_taken_is_reported_not_waited_on() -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(SandboxError, match=str(port)), AwsSandbox(port=port, start_timeout=30):
            pass
