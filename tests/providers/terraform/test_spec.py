"""From a loaded config repo to the plain StageContext.spec of the infrastructure stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.stage import StageContext
from providers.terraform import TerraformSpec
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

    assert spec["path"] == "infra"
    assert spec["vars"] == {"cluster_name": "staging", "node_count": 2}
    assert spec["timeout"] == 600
    assert spec["backend"] == {"type": "s3", "bucket": "tidegate-state", "region": "us-east-1",
                               "key": "infra-repo/staging/terraform.tfstate", "dynamodb_table": "tidegate-locks",
                               "use_lockfile": False, "encrypt": True, "lock_timeout": 120}
    assert spec["plugin_mirror"] == {"paths": [str(repo / "mirrors" / "terraform")], "offline": True}


def test_a_context_without_a_module_path_is_refused(tmp_path: Path) -> None:
    context = StageContext(environment="dev", revision="r", workdir=tmp_path, artifacts=tmp_path, spec={})

    with pytest.raises(ValueError, match=r"spec\.path"):
        TerraformSpec.from_context(context)
