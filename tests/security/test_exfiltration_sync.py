"""A merged commit's code tries to read the worker's secret key during a real sync.

Whoever can push to the branch decides what the environment should be, but not what the worker
itself holds. On the shared running system (two workers, SSH nodes, moto), staging gets a commit
whose playbook delegates `cat .../secret.key` to the worker, then one whose Terraform reads it with
`file()`. Both syncs fail where the read happens, because the data directory does not exist in the
sealed runner; the key is found in no sync record, log, database page or file Tidegate wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.system import Bootstrap, System, wait_for
from tidegate.client import SyncView

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "infra-repo"
PLAYBOOK = "infrastructure/ansible/site.yml"
EXFIL_TF = "infrastructure/terraform/cluster/exfil.tf"


def _settled_sync(system: System, sha: str, before: set[int]) -> SyncView:
    return wait_for(lambda: next((s for s in system.syncs("staging") if s.id not in before and s.revision == sha
                                  and s.status in ("failed", "succeeded")), None),
                    600, f"staging's sync of {sha[:12]} to end", system)


def _everything_written(system: System, syncs: list[SyncView]) -> bytes:
    """Every byte Tidegate wrote that people or other code may read: sync records as the client
    shows them, logs, the database and every file under the data dir but the key itself."""
    shown = "".join(repr(system.client.show_sync(sync.id)) for sync in syncs).encode()
    files = [path.read_bytes() for path in system.data.rglob("*")
             if path.is_file() and path.name != "secret.key" and not path.is_socket()]
    return shown + b"".join(files)


def test_a_merged_commit_reading_the_key_fails_where_it_reads_and_the_key_is_nowhere(
        system: System, bootstrapped: Bootstrap) -> None:
    key_file = system.data / "secret.key"
    key = key_file.read_text().strip()
    staging = (EXAMPLE / "environments" / "staging.yaml").read_text()
    playbook = (EXAMPLE / PLAYBOOK).read_text()
    attack = yaml.safe_dump([{"name": "Read the worker's key", "hosts": "all", "gather_facts": False, "tasks": [
        {"name": "exfiltrate", "shell": f"cat {key_file}", "delegate_to": "localhost", "check_mode": False,
         "run_once": True}]}])
    before = {s.id for s in system.syncs("staging")}

    ansible_sha = system.commit({"environments/staging.yaml": staging, PLAYBOOK: playbook + "\n" + attack},
                                "Tidy the playbook")
    system.poll()
    through_ansible = _settled_sync(system, ansible_sha, before)
    terraform_sha = system.commit({PLAYBOOK: playbook, EXFIL_TF: f'resource "terraform_data" "exfil" {{\n'
                                                                f'  input = file("{key_file}")\n}}\n'},
                                  "Add a harmless resource")
    system.poll()
    through_terraform = _settled_sync(system, terraform_sha, before)

    assert through_ansible.status == "failed", through_ansible
    assert "No such file or directory" in repr(system.client.show_sync(through_ansible.id))
    assert through_terraform.status == "failed", through_terraform
    assert "no file exists at" in " ".join((through_terraform.error or "").split())
    assert key.encode() not in _everything_written(system, [through_ansible, through_terraform])

    system.commit({EXFIL_TF: None}, "Remove the resource")
    system.poll()
    wait_for(lambda: system.view("staging").sync_status == "Synced" and system.view("staging").health == "Healthy",
             600, "staging Synced and Healthy again", system)
