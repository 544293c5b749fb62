"""The subprocess runner on its own: environment, diagnostics, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.stage import MASK
from providers.terraform.runner import Masker, Runner, TerraformError, clean_environment


def test_the_environment_of_a_call_is_built_from_a_clean_base() -> None:
    caller = {"PATH": "/bin", "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "mine", "TF_LOG": "trace",
              "TF_CLI_CONFIG_FILE": "/missing"}

    env = clean_environment({"TF_CLI_CONFIG_FILE": "/ws/terraformrc"}, caller)

    assert env == {"PATH": "/bin", "HOME": "/root", "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
                   "TF_INPUT": "0", "TF_CLI_CONFIG_FILE": "/ws/terraformrc"}


def test_masker_hides_every_registered_secret_longest_first() -> None:
    masker = Masker()
    masker.add("abcd", "abcdefgh", "")

    assert masker("x=abcdefgh y=abcd") == f"x={MASK} y={MASK}"


def test_version_json_is_parsed(tmp_path: Path) -> None:
    runner = Runner(tmp_path, clean_environment())

    result = runner.run(["version", "-json"], stream=False)

    assert result.json()["terraform_version"].startswith("1.")


def test_an_unexpected_exit_code_raises_with_terraforms_message(tmp_path: Path) -> None:
    runner = Runner(tmp_path, clean_environment())

    with pytest.raises(TerraformError, match="show failed") as raised:
        runner.run(["show", "-json", "-no-color", "missing.tfplan"])

    assert raised.value.returncode == 1


def test_exit_code_2_of_detailed_exitcode_is_accepted_when_asked(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text('resource "terraform_data" "x" {}\n')
    runner = Runner(tmp_path, clean_environment())
    runner.run(["init", "-json", "-input=false"])

    result = runner.run(["plan", "-json", "-input=false", "-detailed-exitcode"], ok=(0, 2))

    assert result.returncode == 2
    assert any(m.get("type") == "planned_change" for m in result.messages)
