"""A Terraform module ships a symlink to the worker's secret key: the copy never follows it.

The module is copied into the environment's workspace by the worker itself, before anything is
sealed; following `key.tf -> /…/data/secret.key` would have carried the key into the workspace
that Terraform reads. `validate` reports such links at the environment's `spec.infrastructure.path`
line, and the stage refuses the module.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from providers.terraform.workspace import ModuleLinkError, Workspace
from reconciler.desired import check_checkout
from tests.security.conftest import WorkerData

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"
MODULE = "infrastructure/terraform/cluster"


@pytest.fixture
def repo(tmp_path: Path, worker_data: WorkerData) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    (repo / MODULE / "stolen.auto.tfvars").symlink_to(worker_data.key_file)
    return repo


def test_validate_names_the_link_at_the_environment_line(repo: Path, tmp_path: Path) -> None:
    result = check_checkout(repo, cache_dir=tmp_path / "cache")

    messages = [str(issue) for issue in result.issues]
    assert any(text.startswith("environments/staging.yaml:") and "spec.infrastructure.path" in text
               and f"'{MODULE}/stolen.auto.tfvars' is a symlink that leaves the module" in text
               for text in messages), messages


def test_the_workspace_copy_refuses_the_module_and_copies_nothing_of_the_key(
        repo: Path, tmp_path: Path, worker_data: WorkerData) -> None:
    workspace = Workspace(tmp_path / "workspace")

    with pytest.raises(ModuleLinkError, match=r"stolen\.auto\.tfvars"):
        workspace.sync_module(repo / MODULE)

    copied = [path for path in (tmp_path / "workspace").rglob("*") if path.is_file()]
    assert all(worker_data.key not in path.read_text(errors="replace") for path in copied)
