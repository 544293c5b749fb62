"""The run's files and environment: ansible.cfg, the cleaned environment, syntax error locations."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path
from typing import Any

import pytest

from providers.ansible.runner import (
    LOCAL_GROUP,
    PLAN_STRATEGY,
    PLAN_STRATEGY_DIR,
    RunSettings,
    clean_environment,
    config_directories,
    parse_syntax_error,
    with_controller_python,
    write_config,
)

# What ansible-core 2.18 prints for tests/providers/ansible/playbooks/broken/site.yml.
SYNTAX_ERROR_OUTPUT = """\
ERROR! conflicting action statements: ansible.builtin.debug, ansible.builtin.copy

The error appears to be in '/checkout/broken/site.yml': line 5, column 7, but may
be elsewhere in the file depending on the exact syntax problem.

The offending line appears to be:

  tasks:
    - name: Two actions in one task
      ^ here
"""


def test_a_repos_ansible_cfg_is_carried_over_with_paths_made_absolute_under_the_runs_settings(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "ansible.cfg").write_text(
        "[defaults]\nroles_path = ./roles:/opt/roles\ngathering = explicit\nforks = 1\ninventory = hosts.ini\n"
        "[ssh_connection]\nssh_args = -o ForwardAgent=yes\npipelining = False\n"
    )
    target = tmp_path / "ansible.cfg"

    write_config(target, RunSettings(forks=7), tmp_path / "cp", tmp_path / "known_hosts", tmp_path / "tmp",
                 base=repo / "ansible.cfg")

    config = configparser.ConfigParser(interpolation=None)
    config.read(target)
    assert config["defaults"]["roles_path"] == f"{repo / 'roles'}:/opt/roles"
    assert config["defaults"]["gathering"] == "explicit"
    assert config["defaults"]["forks"] == "7"
    assert "inventory" not in config["defaults"]
    assert config["ssh_connection"]["pipelining"] == "True"
    assert "ForwardAgent" not in config["ssh_connection"]["ssh_args"]
    assert "ControlPersist=60s" in config["ssh_connection"]["ssh_args"]
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in config["ssh_connection"]["ssh_args"]


def test_without_a_repo_config_the_run_still_has_pipelining_and_control_persist(tmp_path: Path) -> None:
    write_config(tmp_path / "ansible.cfg", RunSettings(), tmp_path / "cp", None, tmp_path / "tmp")

    config = configparser.ConfigParser(interpolation=None)
    config.read(tmp_path / "ansible.cfg")
    assert config["ssh_connection"]["pipelining"] == "True"
    assert "ControlMaster=auto" in config["ssh_connection"]["ssh_args"]
    assert "StrictHostKeyChecking" not in config["ssh_connection"]["ssh_args"]


def test_the_child_environment_keeps_only_the_allowlist_of_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "leak")
    monkeypatch.setenv("ANSIBLE_ROLES_PATH", "/somewhere/else")
    monkeypatch.setenv("LANG", "C.UTF-8")

    env = clean_environment({"ANSIBLE_CONFIG": "/run/ansible.cfg"})

    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "ANSIBLE_ROLES_PATH" not in env
    assert env["LANG"] == "C.UTF-8"
    assert env["ANSIBLE_CONFIG"] == "/run/ansible.cfg"
    assert Path(env["PATH"].split(":")[0], "ansible-playbook").exists()


@pytest.mark.parametrize(
    ("workdir", "location"),
    [
        pytest.param(Path("/checkout"), "broken/site.yml:5:7", id="inside-the-checkout"),
        pytest.param(None, "/checkout/broken/site.yml:5:7", id="no-workdir"),
        pytest.param(Path("/elsewhere"), "/checkout/broken/site.yml:5:7", id="outside-the-checkout"),
    ],
)
def test_a_syntax_error_is_located_by_file_line_and_column(workdir: Path | None, location: str) -> None:
    error = parse_syntax_error(SYNTAX_ERROR_OUTPUT, workdir)

    assert error.location == location
    assert error.detail == "conflicting action statements: ansible.builtin.debug, ansible.builtin.copy"
    assert str(error) == f"{location}: {error.detail}"


def test_an_error_without_a_location_keeps_its_message() -> None:
    error = parse_syntax_error("ERROR! the role 'missing' was not found in /checkout/roles\n")

    assert error.location is None
    assert str(error) == "the role 'missing' was not found in /checkout/roles"


def test_the_directories_a_repos_ansible_cfg_points_at_are_found_for_the_plan_digest(tmp_path: Path) -> None:
    playbooks = tmp_path / "checkout" / "ansible"
    shared_roles = tmp_path / "checkout" / "shared" / "roles"
    library = playbooks / "library"
    for directory in (shared_roles, library):
        directory.mkdir(parents=True)
    (playbooks / "ansible.cfg").write_text(
        "[defaults]\nroles_path = ../shared/roles:/nonexistent/roles\nlibrary = ./library\n"
        "log_path = ./ansible.log\n"
    )

    assert config_directories(playbooks / "ansible.cfg") == [shared_roles.resolve(), library.resolve()]
    assert config_directories(tmp_path / "missing.cfg") == []


@pytest.mark.parametrize(
    ("repo_defaults", "strategy", "strategy_plugins"),
    [
        pytest.param("", PLAN_STRATEGY, str(PLAN_STRATEGY_DIR), id="no-strategy-in-the-repo"),
        pytest.param("strategy = linear\nstrategy_plugins = ./plugins\n", PLAN_STRATEGY, "{plan}:{repo}/plugins",
                     id="the-repo-names-linear-and-its-own-plugins"),
        pytest.param("strategy = free\n", "free", None, id="the-repo-chose-another-strategy"),
    ],
)
def test_a_plan_run_uses_the_plan_strategy_unless_the_repo_chose_another_than_linear(
    tmp_path: Path, repo_defaults: str, strategy: str, strategy_plugins: str | None,
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "ansible.cfg").write_text(f"[defaults]\n{repo_defaults}")

    write_config(tmp_path / "plan.cfg", RunSettings(), tmp_path / "cp", None, tmp_path / "tmp",
                 base=repo / "ansible.cfg", plan_run=True)
    write_config(tmp_path / "apply.cfg", RunSettings(), tmp_path / "cp", None, tmp_path / "tmp",
                 base=repo / "ansible.cfg")

    plan, apply = configparser.ConfigParser(interpolation=None), configparser.ConfigParser(interpolation=None)
    plan.read(tmp_path / "plan.cfg")
    apply.read(tmp_path / "apply.cfg")
    assert plan["defaults"].get("strategy") == strategy
    expected = strategy_plugins.format(plan=PLAN_STRATEGY_DIR, repo=repo) if strategy_plugins else None
    assert plan["defaults"].get("strategy_plugins") == expected
    assert apply["defaults"].get("strategy") != PLAN_STRATEGY
    assert (PLAN_STRATEGY_DIR / f"{PLAN_STRATEGY}.py").is_file()


def test_local_hosts_without_an_interpreter_get_the_controllers_python_as_a_group_var() -> None:
    inventory: dict[str, Any] = {"all": {"hosts": {
        "local-1": {"ansible_connection": "local"},
        "local-2": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"},
        "remote": {"ansible_connection": "ssh", "ansible_host": "10.0.0.1"},
    }, "children": {"nodes": {"hosts": {"remote": None}}}}}

    with_controller_python(inventory)

    assert inventory["all"]["children"][LOCAL_GROUP] == {
        "hosts": {"local-1": None}, "vars": {"ansible_python_interpreter": sys.executable},
    }
    assert inventory["all"]["children"]["nodes"] == {"hosts": {"remote": None}}
    assert "ansible_python_interpreter" not in inventory["all"]["hosts"]["local-1"]


def test_an_inventory_without_local_hosts_is_left_as_it_is() -> None:
    inventory: dict[str, Any] = {"all": {"hosts": {"remote": {"ansible_connection": "ssh"}}}}

    with_controller_python(inventory)

    assert inventory == {"all": {"hosts": {"remote": {"ansible_connection": "ssh"}}}}
