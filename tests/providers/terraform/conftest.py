"""Fixtures for the Terraform stage: the image's provider mirror (found once by searching the
filesystem, then passed as the setting), small `terraform_data` stacks, and stage contexts."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from providers.stage import StageContext, StageResult
from providers.terraform import TerraformBackend, TerraformSpec, TerraformStage
from sandbox.aws import AwsEndpoints, AwsSandbox

PROVIDER_PATH = "registry.terraform.io/hashicorp/aws"

if shutil.which("terraform") is None:  # pragma: no cover - the machine image carries it
    # Never a skip: the Terraform stage is part of what CI checks.
    pytest.fail("the terraform binary is not on PATH; the Terraform stage tests need it", pytrace=False)


def find_mirror_roots() -> list[str]:
    """Mirror roots holding the hashicorp/aws provider binary: the setting if already set, else a
    filesystem search (skipping terraform's per-module caches, which are not mirrors)."""
    configured = os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS", "")
    if configured:
        return [part for part in configured.split(":") if part]
    found = subprocess.run(
        ["find", "/", "-maxdepth", "9", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-name", ".terraform",
         ")", "-prune", "-o", "-type", "f", "-name", "terraform-provider-aws_*", "-path", f"*/{PROVIDER_PATH}/*",
         "-print"],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    # ROOT/registry.terraform.io/hashicorp/aws/VERSION/OS_ARCH/terraform-provider-aws_...
    return sorted({str(Path(path).parents[5]) for path in found})


@pytest.fixture(scope="session")
def plugin_dirs() -> str:
    roots = find_mirror_roots()
    return ":".join(roots)


@pytest.fixture(scope="session", autouse=True)
def _plugin_setting(plugin_dirs: str) -> Any:
    """The CLI reads TIDEGATE_TERRAFORM_PLUGIN_DIRS; set it once for the session."""
    previous = os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS")
    os.environ["TIDEGATE_TERRAFORM_PLUGIN_DIRS"] = plugin_dirs
    yield
    if previous is None:
        os.environ.pop("TIDEGATE_TERRAFORM_PLUGIN_DIRS", None)
    else:
        os.environ["TIDEGATE_TERRAFORM_PLUGIN_DIRS"] = previous


SIMPLE_STACK = {
    "main.tf": """
        variable "name" {
          type = string
        }

        variable "password" {
          type      = string
          default   = "hunter2-not-for-logs"
          sensitive = true
        }

        resource "terraform_data" "app" {
          input = {
            name     = var.name
            password = var.password
          }
        }

        resource "terraform_data" "db" {
          input = "db-${var.name}"
        }

        output "name" {
          value = terraform_data.app.output.name
        }

        output "password" {
          value     = var.password
          sensitive = true
        }
    """,
}


class Stack:
    """A Terraform module written into a fake rendered checkout, and contexts to run it."""

    def __init__(self, checkout: Path, artifacts: Path, plugin_dirs: str) -> None:
        self.checkout = checkout
        self.artifacts = artifacts
        self.plugin_dirs = plugin_dirs
        self.module = checkout / "infra"
        self.module.mkdir(parents=True, exist_ok=True)

    def write(self, files: Mapping[str, str]) -> Stack:
        for name, text in files.items():
            (self.module / name).write_text(textwrap.dedent(text))
        return self

    def context(self, variables: Mapping[str, Any] | None = None, *, environment: str = "dev",
                timeout: float = 120.0, settings: Mapping[str, Any] | None = None,
                credentials: Mapping[str, str] | None = None) -> StageContext[TerraformSpec]:
        return StageContext(
            environment=environment,
            revision="0" * 40,
            workdir=self.checkout,
            artifacts=self.artifacts,
            spec=TerraformSpec(path="infra", vars=dict(variables if variables is not None else {"name": "web"}),
                               backend=TerraformBackend(type="local", lock_timeout=0), timeout=timeout),
            settings={"terraform_plugin_dirs": self.plugin_dirs, **(settings or {})},
            credentials=dict(credentials or {}),
        )

    @property
    def state_file(self) -> Path:
        return self.artifacts / "workspaces" / "dev" / "state" / "terraform.tfstate"


@pytest.fixture
def make_stack(tmp_path: Path, plugin_dirs: str) -> Callable[[Mapping[str, str]], Stack]:
    def make(files: Mapping[str, str]) -> Stack:
        return Stack(tmp_path / "checkout", tmp_path / "artifacts", plugin_dirs).write(files)
    return make


@pytest.fixture
def simple_stack(make_stack: Callable[[Mapping[str, str]], Stack]) -> Stack:
    return make_stack(SIMPLE_STACK)


@pytest.fixture
def lines() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def stage(lines: list[tuple[str, str]]) -> TerraformStage:
    return TerraformStage(on_line=lambda stream, line: lines.append((stream, line)), grace=5.0)


# -- the example stack against the moto sandbox (one lifecycle per session) ----------------

EXAMPLE_REPO = Path(__file__).resolve().parents[3] / "examples" / "infra-repo"
EXAMPLE_MODULE = "infrastructure/terraform/cluster"
EXAMPLE_STATE_KEY = "infra-repo/staging/terraform.tfstate"


@pytest.fixture(scope="session")
def aws() -> Iterator[AwsEndpoints]:
    """A moto server on a free loopback port with the state bucket and DynamoDB lock table."""
    with AwsSandbox() as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
def example_context(aws: AwsEndpoints, plugin_dirs: str,
                    tmp_path_factory: pytest.TempPathFactory) -> StageContext[TerraformSpec]:
    """The example repo's staging stack with S3 state and a DynamoDB lock, pointed at moto.

    Built as the composition root builds it: the repo's backend, then the sandbox's endpoint map as
    plain settings and credentials. The repo checkout is only read; the workspace is elsewhere."""
    artifacts = tmp_path_factory.mktemp("example-artifacts")
    return StageContext(
        environment="staging",
        revision="example",
        workdir=EXAMPLE_REPO,
        artifacts=artifacts,
        spec=TerraformSpec(
            path=EXAMPLE_MODULE,
            vars={"cluster_name": "staging", "environment": "staging", "node_count": 2, "instance_type": "t3.small"},
            backend=TerraformBackend(type="s3", bucket=aws.bucket, key=EXAMPLE_STATE_KEY, region=aws.region,
                                     dynamodb_table=aws.lock_table, lock_timeout=0),
            timeout=600,
        ),
        settings={"terraform_plugin_dirs": plugin_dirs, **aws.stage_settings()},
        credentials=aws.stage_credentials(),
    )


@pytest.fixture(scope="session")
def example_stage() -> TerraformStage:
    return TerraformStage(grace=10.0)


@pytest.fixture(scope="session")
def applied_example(example_stage: TerraformStage, example_context: StageContext[TerraformSpec]) -> StageResult:
    """The example stack planned and applied once for the whole session."""
    result = example_stage.apply(example_context, example_stage.plan(example_context))
    assert result.succeeded, result.error
    return result
