"""A local AWS endpoint: a moto server on a loopback port, with the state bucket and lock table.

The server (`sandbox.aws_server`) carries each AWS SDK call out once and answers the SDK's retry of
a call whose answer was lost with the first answer, so a retried non-idempotent call does not fail.

`AwsSandbox` is a context manager (a pytest fixture wraps it; `tidegate sandbox aws` serves it
until stopped). It yields an `AwsEndpoints`: the endpoint per service, fake credentials and the
backend settings that point at it. The composition root turns those into a stage's plain
connection settings with `stage_settings()` / `stage_credentials()`; providers never import this
module.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

# Services the example stack and the S3 backend use; each gets the same moto URL.
SERVICES = ("autoscaling", "dynamodb", "ec2", "eks", "elb", "elbv2", "iam", "kms", "s3", "sts")
FAKE_ACCESS_KEY = "AKIAIOSFODNN7SANDBOX"
FAKE_SECRET_KEY = "sandbox-secret-key-not-a-real-one"  # a fake credential: moto accepts any
DEFAULT_BUCKET = "tidegate-state"
DEFAULT_LOCK_TABLE = "tidegate-locks"
DEFAULT_REGION = "us-east-1"


class SandboxError(RuntimeError):
    """The moto server did not start or did not accept the bucket and table."""


@dataclass(frozen=True)
class AwsEndpoints:
    """Where the sandbox AWS lives and how to reach it; the one explicit endpoint map."""

    url: str
    region: str = DEFAULT_REGION
    access_key: str = FAKE_ACCESS_KEY
    secret_key: str = FAKE_SECRET_KEY
    bucket: str = DEFAULT_BUCKET
    lock_table: str = DEFAULT_LOCK_TABLE
    services: tuple[str, ...] = SERVICES
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def endpoints(self) -> dict[str, str]:
        return {service: self.url for service in self.services}

    def credentials(self) -> dict[str, str]:
        """Environment variables for any AWS client (terraform, its provider, boto3)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def provider_settings(self) -> dict[str, Any]:
        """Attributes for the Terraform AWS provider block (`endpoints {}` and skip flags)."""
        return {
            "endpoints": self.endpoints,
            "skip_credentials_validation": True,
            "skip_metadata_api_check": True,
            "skip_requesting_account_id": True,
            "skip_region_validation": True,
            "s3_use_path_style": True,
        }

    def backend_settings(self) -> dict[str, Any]:
        """`-backend-config` values for the S3 backend with a DynamoDB lock on the sandbox."""
        return {
            "bucket": self.bucket,
            "dynamodb_table": self.lock_table,
            "region": self.region,
            "endpoints": {"s3": self.url, "dynamodb": self.url, "sts": self.url, "iam": self.url},
            "skip_credentials_validation": True,
            "skip_metadata_api_check": True,
            "skip_requesting_account_id": True,
            "skip_region_validation": True,
            "use_path_style": True,
        }

    def stage_settings(self) -> dict[str, Any]:
        """The infrastructure stage's `StageContext.settings` entries for this sandbox."""
        return {"aws_provider": self.provider_settings(), "backend_config": self.backend_settings()}

    def stage_credentials(self) -> dict[str, str]:
        return self.credentials()

    def describe(self) -> dict[str, Any]:
        """Everything a person needs to point a tool at the sandbox (printed by the CLI)."""
        return {
            "url": self.url,
            "region": self.region,
            "credentials": self.credentials(),
            "provider": self.provider_settings(),
            "backend": self.backend_settings(),
        }

    def client(self, service: str) -> Any:
        """A boto3 client for one service of the sandbox."""
        import boto3  # type: ignore[import-untyped]

        return boto3.client(service, endpoint_url=self.url, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when the starting thread dies, so that a
    test run killed outright does not leave moto servers behind. A no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class AwsSandbox:
    """Starts moto on loopback, creates the state bucket and the lock table; stops it on exit."""

    def __init__(self, *, port: int | None = None, host: str = "127.0.0.1", region: str = DEFAULT_REGION,
                 bucket: str = DEFAULT_BUCKET, lock_table: str = DEFAULT_LOCK_TABLE,
                 start_timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.region = region
        self.bucket = bucket
        self.lock_table = lock_table
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoints: AwsEndpoints | None = None

    def start(self) -> AwsEndpoints:
        port = self.port or free_port(self.host)
        env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
        env.update({"MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "PYTHONUNBUFFERED": "1"})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox.aws_server", "-H", self.host, "-p", str(port)],
            # its stderr is ours: the server writes there only when something is wrong (see aws_server)
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        url = f"http://{self.host}:{port}"
        self._wait_ready(url)
        endpoints = AwsEndpoints(url=url, region=self.region, bucket=self.bucket, lock_table=self.lock_table)
        self._create_backend(endpoints)
        self.endpoints = endpoints
        log.info("sandbox AWS (moto) listening on %s; state bucket %s, lock table %s", url, self.bucket,
                 self.lock_table)
        return endpoints

    def _wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise SandboxError(f"moto server exited with code {self.process.returncode} "
                                   f"(is port {url.rsplit(':', 1)[1]} free?)")
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise SandboxError(f"moto server did not answer on {url} within {self.start_timeout:g}s")

    def _create_backend(self, endpoints: AwsEndpoints) -> None:
        endpoints.client("s3").create_bucket(Bucket=endpoints.bucket)
        endpoints.client("dynamodb").create_table(
            TableName=endpoints.lock_table,
            KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> AwsEndpoints:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
