"""From a loaded config repo to the infrastructure stage's typed input (`TerraformSpec`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from providers.terraform import TerraformBackend
from reconciler.contexts import infrastructure_spec
from repo_schema.loader import load_repo

CONFIG = """\
apiVersion: tidegate.dev/v1alpha1
kind: RepositoryConfig
spec:
  terraform:
    backend: {type: s3, bucket: tidegate-state, region: us-east-1, dynamodbTable: tidegate-locks,
              keyPrefix: infra-repo/, lockTimeout: 2m}
    pluginMirror: {paths: [mirrors/terraform]}
"""
ENVIRONMENT = """\
apiVersion: tidegate.dev/v1alpha1
kind: Environment
metadata: {name: staging}
spec:
  infrastructure:
    path: infra
    vars: {cluster_name: staging, node_count: 2}
    timeout: 10m
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "environments").mkdir()
    (tmp_path / "infra").mkdir()
    (tmp_path / "tidegate.yaml").write_text(CONFIG)
    (tmp_path / "environments" / "staging.yaml").write_text(ENVIRONMENT)
    return tmp_path


def test_the_repo_default_backend_gets_the_environment_state_key_and_plain_seconds(repo: Path) -> None:
    spec = infrastructure_spec(load_repo(repo), "staging")

    assert spec.path == "infra"
    assert spec.vars == {"cluster_name": "staging", "node_count": 2}
    assert spec.tfvars is not None and json.loads(spec.tfvars) == {"cluster_name": "staging", "node_count": 2}
    assert spec.timeout == 600
    assert spec.backend == TerraformBackend(
        type="s3", bucket="tidegate-state", region="us-east-1", key="infra-repo/staging/terraform.tfstate",
        dynamodb_table="tidegate-locks", use_lockfile=False, encrypt=True, lock_timeout=120)
    assert (list(spec.mirror_paths), spec.offline) == ([str(repo / "mirrors" / "terraform")], True)
