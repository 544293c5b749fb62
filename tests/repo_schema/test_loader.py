"""Loading the config repo: the example is valid; each kind of mistake is reported precisely."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from repo_schema.issues import InvalidRepo
from repo_schema.loader import check_repo, load_repo


def messages(root: Path) -> list[str]:
    repo, issues = check_repo(root)
    assert repo is None, "a repo with issues must not load"
    return [str(issue) for issue in issues]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_the_example_repo_loads_in_dependency_order(example_repo: Path) -> None:
    repo = load_repo(example_repo)
    assert repo.order() == ["staging", "production"]
    production = repo.environments["production"]
    assert production.spec.depends_on == ["staging"]
    assert production.spec.approval.required


def test_sync_policy_layers_environment_over_repo_over_defaults(example_repo: Path) -> None:
    repo = load_repo(example_repo)
    staging, production = repo.sync_policy("staging"), repo.sync_policy("production")
    assert staging.self_heal and not production.self_heal
    assert production.drift_interval == timedelta(minutes=5)
    assert staging.drift_interval == timedelta(minutes=10)  # from tidegate.yaml


def test_backend_key_defaults_per_environment(example_repo: Path) -> None:
    backend = load_repo(example_repo).backend("production")
    assert backend is not None
    assert backend.key == "infra-repo/production/terraform.tfstate"
    assert backend.dynamodb_table == "tidegate-locks"


def test_template_variables_layer_repo_environment_workload(example_repo: Path) -> None:
    variables = load_repo(example_repo).variables("staging", "settings")
    assert variables["region"] == "us-east-1" and variables["environment"] == "staging"


def test_an_unknown_field_is_named_with_a_suggestion(repo_copy: Path) -> None:
    env = repo_copy / "environments" / "staging.yaml"
    edit(env, "    selfHeal: true\n", "    selfHeal: true\n    selfHael: true\n")
    line = line_of(env, "selfHael")
    assert messages(repo_copy) == [
        f"environments/staging.yaml:{line}:5: spec.sync.selfHael: unknown field 'selfHael'; "
        "did you mean 'selfHeal'?"
    ]


def test_a_value_of_the_wrong_type_is_not_coerced(repo_copy: Path) -> None:
    env = repo_copy / "environments" / "production.yaml"
    edit(env, "minApprovals: 1", 'minApprovals: "1"')
    line = line_of(env, "minApprovals")
    assert messages(repo_copy) == [
        f"environments/production.yaml:{line}:19: spec.approval.minApprovals: "
        "Input should be a valid integer (got '1')"
    ]


def test_a_missing_path_names_the_field_and_the_path(repo_copy: Path) -> None:
    env = repo_copy / "environments" / "staging.yaml"
    edit(env, "apps/worker/overlays/staging", "apps/worker/overlays/stagign")
    line = line_of(env, "stagign")
    assert messages(repo_copy) == [
        f"environments/staging.yaml:{line}:28: spec.workloads[2].path: "
        "directory 'apps/worker/overlays/stagign' does not exist in the repo"
    ]


def test_a_dependson_cycle_is_reported_once(repo_copy: Path) -> None:
    env = repo_copy / "environments" / "staging.yaml"
    edit(env, "spec:\n", "spec:\n  dependsOn: [production]\n")
    (found,) = messages(repo_copy)
    assert "dependsOn cycle" in found and "production -> staging -> production" in found


def test_dependson_an_unknown_environment(repo_copy: Path) -> None:
    edit(repo_copy / "environments" / "production.yaml", "dependsOn: [staging]", "dependsOn: [stageing]")
    (found,) = messages(repo_copy)
    assert found.startswith("environments/production.yaml:7:15: spec.dependsOn[0]: ")
    assert "unknown environment 'stageing'" in found


def test_an_unparseable_environment_is_reported_once_not_again_by_its_dependents(repo_copy: Path) -> None:
    (repo_copy / "environments" / "staging.yaml").write_text(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Environment\nmetadata: {name: staging}\nspec:\n  workloads: [oops\n")
    (found,) = messages(repo_copy)
    assert found.startswith("environments/staging.yaml:5:14: <yaml>: invalid YAML"), found


def test_a_duplicate_yaml_key_is_reported_at_the_repeat(repo_copy: Path) -> None:
    env = repo_copy / "environments" / "staging.yaml"
    edit(env, "  approval:\n", "  approval:\n    required: false\n")
    first = line_of(env, "required: false")
    assert messages(repo_copy) == [
        f"environments/staging.yaml:{first + 1}:5: spec.approval.required: "
        f"duplicate key 'required' (first defined at line {first})"
    ]


def test_a_symlink_that_escapes_the_repo_is_refused(repo_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, repo_copy / "apps" / "escape")
    edit(repo_copy / "environments" / "staging.yaml", "path: apps/settings", "path: apps/escape")
    (found,) = messages(repo_copy)
    assert "spec.workloads[3].path: 'apps/escape' is or goes through a symlink that resolves outside" in found


def test_an_alias_bomb_fails_fast_with_a_location(repo_copy: Path) -> None:
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        bomb += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
    (repo_copy / "environments" / "bomb.yaml").write_text(bomb)
    (found,) = messages(repo_copy)
    assert found.startswith("environments/bomb.yaml:1:1: <document>: alias expansion")


def test_one_file_with_several_errors_reports_all_of_them(repo_copy: Path) -> None:
    env = repo_copy / "environments" / "production.yaml"
    text = env.read_text()
    text = text.replace("minApprovals: 1", "minApprovals: 0")
    text = text.replace("driftInterval: 5m", "driftInterval: 5 minutes")
    text = text.replace("name: production\n", "name: Production\n")
    text = text.replace("approvers: [group:platform-leads]", "approvers: [platform-leads]")
    env.write_text(text)
    found = messages(repo_copy)
    assert [f.split(": ")[1] for f in found] == [
        "metadata.name", "spec.sync.driftInterval", "spec.approval.minApprovals", "spec.approval.approvers[0]",
    ]
    for message, needle in zip(found, ["Production", "5 minutes", "0", "platform-leads"], strict=True):
        file, line, column = message.split(": ")[0].split(":")
        assert file == "environments/production.yaml"
        assert needle in env.read_text().splitlines()[int(line) - 1][int(column) - 1:]


def test_yaml11_boolean_in_a_name_is_reported(repo_copy: Path) -> None:
    edit(repo_copy / "environments" / "staging.yaml", "- {name: platform,", "- {name: on,")
    (found,) = messages(repo_copy)
    assert "spec.workloads[0].name: unquoted 'on' is a boolean in YAML 1.1" in found


def test_terraform_output_references_must_be_declared(repo_copy: Path) -> None:
    edit(repo_copy / "environments" / "staging.yaml", "terraformOutput: nodes", "terraformOutput: hosts")
    (found,) = messages(repo_copy)
    assert "spec.configuration.inventoryFrom.terraformOutput: output 'hosts' is not declared" in found


def test_load_repo_raises_with_every_issue(repo_copy: Path) -> None:
    (repo_copy / "environments" / "staging.yaml").write_text("kind: Environment\n")
    with pytest.raises(InvalidRepo) as raised:
        load_repo(repo_copy)
    assert {issue.field for issue in raised.value.issues} >= {"apiVersion", "metadata", "spec"}
