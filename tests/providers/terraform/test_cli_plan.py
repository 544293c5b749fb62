"""`tidegate plan ENV --repo PATH --stage infrastructure [--sandbox]` and `tidegate sandbox aws`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidegate.cli import app
from tidegate.cli_terraform import repo_key

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "infra-repo"
ENVIRONMENT = """\
apiVersion: tidegate.dev/v1alpha1
kind: Environment
metadata: {{name: {name}}}
spec:
  infrastructure:
    path: infrastructure/terraform/cluster
    vars: {vars}
{backend}"""


def _repo(root: Path, name: str, variables: str, backend: str = "") -> Path:
    (root / "environments").mkdir(parents=True)
    (root / "environments" / f"{name}.yaml").write_text(ENVIRONMENT.format(name=name, vars=variables, backend=backend))
    return root


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIDEGATE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_plan_prints_every_address_with_its_action(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path / "repo", "dev", "{name: web}", "    backend: {type: local}\n")
    module = repo / "infrastructure" / "terraform" / "cluster"
    module.mkdir(parents=True)
    (module / "main.tf").write_text(textwrap.dedent("""
        variable "name" { type = string }
        resource "terraform_data" "app" { input = var.name }
        resource "terraform_data" "db" { input = "db-${var.name}" }
    """))

    result = CliRunner().invoke(app, ["plan", "dev", "--repo", str(repo), "--stage", "infrastructure",
                                                   "--quiet"])

    assert result.exit_code == 0, result.output
    assert "+ create   terraform_data.app" in result.stdout
    assert "+ create   terraform_data.db" in result.stdout
    assert 'input = "db-web"' in result.stdout
    assert "dev infrastructure: changes (+2 ~0 -0, 2 addresses)" in result.stdout
    area = data_dir / "runs" / "terraform" / repo_key(repo)
    assert (area / "workspaces" / "dev" / "module" / "tidegate.auto.tfvars.json").is_file()
    assert not (module / ".terraform").exists()  # the checkout is never written to


def test_plan_of_an_unknown_environment_names_the_known_ones(tmp_path: Path, data_dir: Path) -> None:
    repo = _repo(tmp_path / "repo", "dev", "{}", "    backend: {type: local}\n")
    (repo / "infrastructure" / "terraform" / "cluster").mkdir(parents=True)

    result = CliRunner().invoke(app, ["plan", "prod", "--repo", str(repo)])

    assert result.exit_code == 2
    assert "unknown environment 'prod' (known: dev)" in result.output


@pytest.mark.integration
@pytest.mark.parametrize("configured", [True, False], ids=["configured-mirror", "mirror-found-by-tidegate"])
def test_plan_with_sandbox_plans_the_example_stack_against_moto_with_s3_state(
        tmp_path: Path, data_dir: Path, configured: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without TIDEGATE_TERRAFORM_PLUGIN_DIRS Tidegate searches the machine for the provider mirror
    itself: nobody has to source a script first."""
    if not configured:
        monkeypatch.delenv("TIDEGATE_TERRAFORM_PLUGIN_DIRS", raising=False)
    repo = _repo(tmp_path / "repo", "staging", "{cluster_name: staging, environment: staging, node_count: 2}")
    shutil.copy(EXAMPLE / "tidegate.yaml", repo / "tidegate.yaml")
    module = Path("infrastructure") / "terraform" / "cluster"
    shutil.copytree(EXAMPLE / module, repo / module)

    result = CliRunner().invoke(app, ["plan", "staging", "--repo", str(repo), "--sandbox", "--quiet",
                                                   "--no-diff"])

    assert result.exit_code == 0, result.output
    assert "+ create   aws_eks_cluster.this" in result.stdout
    assert "+ create   aws_instance.node[1]" in result.stdout
    assert "staging infrastructure: changes (+20 ~0 -0, 20 addresses)" in result.stdout
    workspace = data_dir / "runs" / "sandbox" / repo_key(repo) / "workspaces" / "staging"
    backend = (workspace / "backend.tfbackend").read_text()
    assert 'bucket = "tidegate-state"' in backend and 'dynamodb_table = "tidegate-locks"' in backend
    assert "secret" not in backend.lower()  # credentials travel in the environment, not in files


def test_sandbox_aws_serves_until_interrupted_and_prints_its_settings() -> None:
    process = subprocess.Popen([sys.executable, "-m", "tidegate", "sandbox", "aws"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert process.stdout is not None
        text = ""
        for line in process.stdout:
            text += line
            if line.startswith("}"):
                break
        settings = json.loads(text)
        with urllib.request.urlopen(settings["url"] + "/moto-api/", timeout=5) as answer:
            assert answer.status == 200
        assert settings["backend"]["dynamodb_table"] == "tidegate-locks"
        assert settings["provider"]["endpoints"]["eks"] == settings["url"]
        assert settings["credentials"]["AWS_ACCESS_KEY_ID"]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0


@pytest.mark.integration
def test_configuration_plan_with_sandbox_uses_the_nodes_terraform_really_outputs(data_dir: Path,
                                                                                 tmp_path: Path) -> None:
    """Issue 4's interface: a later stage is planned against real outputs, so the sandbox first
    applies the infrastructure into moto, then maps the output `inventoryFrom` names onto SSH nodes
    (here renamed `hosts`: the plan reads the output the environment names, whatever its name)."""
    repo = tmp_path / "renamed"
    shutil.copytree(EXAMPLE, repo)
    outputs = repo / "infrastructure" / "terraform" / "cluster" / "outputs.tf"
    outputs.write_text(outputs.read_text().replace('output "nodes" {', 'output "hosts" {'))
    for name in ("staging", "production"):
        document = repo / "environments" / f"{name}.yaml"
        document.write_text(document.read_text().replace("terraformOutput: nodes}", "terraformOutput: hosts}"))

    result = CliRunner().invoke(app, ["plan", "staging", "--repo", str(repo), "--stage",
                                                   "configuration", "--sandbox", "--quiet"])

    assert result.exit_code == 0, result.output
    assert "applying staging's infrastructure first, for its `hosts` output" in result.output
    assert "create  staging-node-1/common : Write the node identity file" in result.stdout
    assert "create  staging-node-2/common : Write the node identity file" in result.stdout
    assert "staging configuration: +14 ~0 -0" in result.stdout


def test_configuration_plan_without_sandbox_says_what_it_needs(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["plan", "staging", "--repo", str(EXAMPLE), "--stage",
                                                   "configuration"])
    assert result.exit_code == 2
    assert "use --sandbox" in result.output
