"""`tidegate plan ENV --repo PATH --stage workloads [--sandbox]`: the workloads stage planned from the CLI."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidegate.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "infra-repo"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIDEGATE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def plugin_dirs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The Terraform provider mirror, found by the same script CI sources (an exported setting wins)."""
    if not os.environ.get("TIDEGATE_TERRAFORM_PLUGIN_DIRS"):
        found = subprocess.run(["bash", "-c", 'source scripts/terraform-env.sh && printf %s '
                                "\"$TIDEGATE_TERRAFORM_PLUGIN_DIRS\""],
                               cwd=ROOT, capture_output=True, text=True, check=True, timeout=300).stdout
        monkeypatch.setenv("TIDEGATE_TERRAFORM_PLUGIN_DIRS", found)
    yield


@pytest.mark.integration  # a Terraform apply into moto (~60 s), then the Kubernetes API emulator
def test_workloads_plan_with_sandbox_uses_the_kubeconfig_terraform_really_outputs(
        data_dir: Path, plugin_dirs: None) -> None:
    result = CliRunner().invoke(app, ["plan", "staging", "--repo", str(EXAMPLE), "--stage", "workloads",
                                      "--sandbox", "--quiet"])

    assert result.exit_code == 0, result.output
    assert "applying staging's infrastructure first, for its `kubeconfig` output" in result.output
    # each substitution is said, the real EKS endpoint named; no credential is printed
    assert "sandbox: kubeconfig cluster staging: server https://" in result.output
    assert ".eks.amazonaws.com" in result.output and "-> https://127.0.0.1:" in result.output
    assert "sandbox: kubeconfig cluster staging: certificate authority -> the emulator's CA" in result.output
    assert "sandbox: kubeconfig user tidegate: credentials -> the emulator's bearer token" in result.output
    assert re.search(r"tidegate-[0-9a-f]{64}", result.output) is None  # the output's placeholder token
    assert "+ create   apps/Deployment/web/web" in result.stdout
    assert "+ create   platform.example.test/BackupPolicy/web/web-nightly" in result.stdout
    assert "# namespace web is created by this sync" in result.stdout  # the readable diff is shown
    assert "staging workloads: changes (+10 ~0 -0, 10 objects)" in result.stdout


def test_workloads_plan_without_sandbox_says_what_it_needs(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["plan", "staging", "--repo", str(EXAMPLE), "--stage", "workloads"])

    assert result.exit_code == 2
    assert "use --sandbox" in result.output
