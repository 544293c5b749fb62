"""Key rotation: every sealed value is re-encrypted under a new key, and nothing stops opening on
the way — not in the process that rotates, not in a worker that started before the rotation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from store import Database, Repository, SecretBox, StoredSecret, Sync, SyncStageResult, SyncTrigger
from store.enums import Stage
from store.models import Environment
from store.rotation import all_open, rotate, rotate_key_file, sealed_columns
from store.secrets import KEY_FILE_NAME, key_file_box, read_key_file, replace_key_file

TOKEN = "ghp_RotatedPersonalAccessToken"
KUBECONFIG = "apiVersion: v1\nkind: Config\n# token: cluster-token-before-rotation\n"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nrotation-test-key\n-----END OPENSSH PRIVATE KEY-----\n"


def seed(database: Database, box: SecretBox) -> None:
    """One value in each kind of secret column: repository credentials, stage outputs, stored secrets."""
    with database.session(write=True) as session:
        repository = Repository(name="infra", url="https://git.example/infra.git", credentials=box.seal(TOKEN))
        sync = Sync(environment=Environment(repository=repository, name="staging"), trigger=SyncTrigger.MANUAL,
                    started_at=datetime.now(UTC))
        sync.stage_results.append(SyncStageResult(stage=Stage.INFRASTRUCTURE,
                                                  outputs=box.seal_json({"kubeconfig": KUBECONFIG})))
        session.add(sync)
        session.add(StoredSecret(name="ssh-key", scope="infra/staging", value=box.seal(SSH_KEY), salt="00",
                                 fingerprint="x"))


def read_all(database: Database, box: SecretBox) -> tuple[str, str, str]:
    """Every seeded value, decrypted with `box` (a SecretKeyError if it cannot)."""
    with database.session() as session:
        repository = session.scalars(select(Repository)).one()
        result = session.scalars(select(SyncStageResult)).one()
        secret = session.scalars(select(StoredSecret)).one()
        assert repository.credentials is not None and result.outputs is not None
        return (box.unseal(repository.credentials), box.unseal_json(result.outputs)["kubeconfig"],
                box.unseal(secret.value))


def test_every_secret_column_of_the_models_is_rotated() -> None:
    columns = {f"{table.name}.{column.name}" for table, found in sealed_columns() for column in found}
    assert {"repositories.credentials", "repositories.host_token", "repositories.webhook_secret",
            "plans.payload", "sync_stage_results.outputs", "stored_secrets.value"} <= columns


def test_rotating_the_key_file_re_encrypts_everything_and_drops_the_old_key(database: Database,
                                                                             tmp_path: Path) -> None:
    rotator = key_file_box(tmp_path)
    worker = key_file_box(tmp_path)  # a process that started before the rotation
    old_key = read_key_file(tmp_path / KEY_FILE_NAME)
    seed(database, rotator)

    report = rotate_key_file(tmp_path, database)

    new_key = read_key_file(tmp_path / KEY_FILE_NAME)
    assert report.complete and report.total == 3
    assert "," not in new_key and new_key != old_key
    assert all_open(database, SecretBox(new_key))
    assert not all_open(database, SecretBox(old_key))
    assert read_all(database, SecretBox(new_key)) == (TOKEN, KUBECONFIG, SSH_KEY)
    assert read_all(database, worker) == (TOKEN, KUBECONFIG, SSH_KEY), "the running worker re-reads the key file"


def test_during_a_rotation_both_keys_open_everything_and_new_values_use_the_new_key(database: Database,
                                                                                    tmp_path: Path) -> None:
    worker = key_file_box(tmp_path)
    old_key = read_key_file(tmp_path / KEY_FILE_NAME)
    seed(database, worker)
    new_key = SecretBox.generate_key()

    replace_key_file(tmp_path / KEY_FILE_NAME, f"{new_key},{old_key}")  # the first step of rotate_key_file
    assert read_all(database, worker) == (TOKEN, KUBECONFIG, SSH_KEY), "before re-encryption"
    sealed_during = worker.seal("written while rotating")
    assert SecretBox(new_key).unseal(sealed_during) == "written while rotating"

    rotate(database, SecretBox(f"{new_key},{old_key}"))  # the second step
    assert read_all(database, worker) == (TOKEN, KUBECONFIG, SSH_KEY), "after re-encryption, both keys listed"
    replace_key_file(tmp_path / KEY_FILE_NAME, new_key)  # the last step
    assert read_all(database, worker) == (TOKEN, KUBECONFIG, SSH_KEY), "after the old key is gone"


def test_rotating_with_the_setting_needs_the_new_key_first_and_reports_what_it_did(database: Database) -> None:
    old_key, new_key = SecretBox.generate_key(), SecretBox.generate_key()
    seed(database, SecretBox(old_key))
    both = SecretBox(f"{new_key},{old_key}")

    report = rotate(database, both)

    assert report.complete
    assert report.rotated["stored_secrets"] == 1 and report.rotated["repositories"] == 1
    assert read_all(database, SecretBox(new_key)) == (TOKEN, KUBECONFIG, SSH_KEY)
    assert rotate(database, both).total == 0, "a second run finds nothing left to do"


def test_a_key_file_others_can_read_is_refused_when_it_is_replaced(tmp_path: Path) -> None:
    key_file_box(tmp_path)
    replace_key_file(tmp_path / KEY_FILE_NAME, SecretBox.generate_key())
    assert (tmp_path / KEY_FILE_NAME).stat().st_mode & 0o077 == 0
    with pytest.raises(Exception, match="valid"):
        replace_key_file(tmp_path / KEY_FILE_NAME, "not-a-key")
