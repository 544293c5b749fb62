"""What a plan's inputs digest covers (apply refuses a plan whose digest differs): no hosts needed."""

from __future__ import annotations

from pathlib import Path

from providers.ansible.stage import ConfigurationInputs, resolve
from providers.stage import StageContext
from tests.providers.ansible.conftest import configuration_inputs


def _checkout(root: Path) -> Path:
    (root / "ansible").mkdir(parents=True)
    (root / "ansible" / "site.yml").write_text("- hosts: all\n  gather_facts: false\n  roles: [common]\n")
    (root / "ansible" / "ansible.cfg").write_text("[defaults]\nroles_path = ../shared/roles\n")
    (root / "shared" / "roles" / "common" / "tasks").mkdir(parents=True)
    (root / "shared" / "roles" / "common" / "tasks" / "main.yml").write_text("- ansible.builtin.ping:\n")
    return root


def _context(workdir: Path, extra_vars: dict[str, str] | None = None) -> StageContext[ConfigurationInputs]:
    return StageContext(
        environment="staging", revision="0" * 40, workdir=workdir, artifacts=workdir / "artifacts",
        spec=configuration_inputs({"playbook": "ansible/site.yml", "inventoryFrom": {"terraformOutput": "nodes"},
                                   "extraVars": extra_vars or {"log_level": "debug"}},
                                  [{"name": "node-1", "address": "198.51.100.10", "groups": ["nodes"]}]),
    )


def test_the_digest_changes_with_a_role_beside_the_playbooks_directory_named_by_its_ansible_cfg(
    tmp_path: Path,
) -> None:
    workdir = _checkout(tmp_path / "checkout")
    before = resolve(_context(workdir)).digest
    assert resolve(_context(workdir)).digest == before

    (workdir / "shared" / "roles" / "common" / "tasks" / "main.yml").write_text("- ansible.builtin.debug:\n")

    assert resolve(_context(workdir)).digest != before


def test_the_digest_changes_with_the_extra_vars_and_the_playbooks_tree(tmp_path: Path) -> None:
    workdir = _checkout(tmp_path / "checkout")
    before = resolve(_context(workdir)).digest

    assert resolve(_context(workdir, {"log_level": "info"})).digest != before
    (workdir / "ansible" / "group_vars").mkdir()
    (workdir / "ansible" / "group_vars" / "all.yml").write_text("log_level: info\n")
    assert resolve(_context(workdir)).digest != before
