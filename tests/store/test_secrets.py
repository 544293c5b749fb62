"""Secrets reach the database only as ciphertext, and key mistakes are explained, not dumped."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from store import (
    Database,
    Repository,
    Sealed,
    SecretBox,
    SecretKeyError,
    Sync,
    SyncStageResult,
    load_or_create_key,
)
from store.enums import Stage, SyncTrigger
from store.models import Environment

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user: {token: s3cr3t-cluster-token}\n"
CREDENTIALS = "ghp_Sup3rS3cretPersonalAccessToken"


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 000: the key file must be 0600 because the code says so, not because umask helped."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def shows_no_internals(error: BaseException) -> bool:
    """True when a traceback of `error` would not go on to print a chained cryptography error."""
    return error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def store_secrets(database: Database, box: SecretBox) -> None:
    with database.session() as session:
        repository = Repository(
            name="infra", url="https://git.example/infra.git", credentials=box.seal(CREDENTIALS)
        )
        environment = Environment(repository=repository, name="staging")
        sync = Sync(environment=environment, trigger=SyncTrigger.MANUAL, started_at=datetime.now(UTC))
        sync.stage_results.append(
            SyncStageResult(stage=Stage.INFRASTRUCTURE, outputs=box.seal_json({"kubeconfig": KUBECONFIG}))
        )
        session.add(sync)


def test_secrets_are_stored_only_as_ciphertext(database: Database, box: SecretBox) -> None:
    store_secrets(database, box)
    with database.session() as session:
        credentials = session.execute(text("SELECT credentials FROM repositories")).scalar_one()
        outputs = session.execute(text("SELECT outputs FROM sync_stage_results")).scalar_one()
    for raw, secret in ((credentials, CREDENTIALS), (outputs, "s3cr3t-cluster-token")):
        assert isinstance(raw, str) and raw.startswith("gAAAAA"), "a Fernet token"
        assert secret not in raw and "kubeconfig" not in raw
    with database.session() as session:
        result = session.scalars(select(SyncStageResult)).one()
        assert box.unseal_json(result.outputs or pytest.fail("no outputs")) == {"kubeconfig": KUBECONFIG}


def test_plain_text_is_refused_by_secret_columns(database: Database) -> None:
    with pytest.raises(StatementError, match="take Sealed values"), database.session() as session:
        session.add(Repository(name="leak", url="u", credentials=CREDENTIALS))


def test_wrong_key_is_a_clear_error(database: Database, box: SecretBox) -> None:
    store_secrets(database, box)
    other = SecretBox(SecretBox.generate_key())
    with database.session() as session:
        sealed = session.scalars(select(Repository.credentials)).one()
    assert sealed is not None
    with pytest.raises(
        SecretKeyError, match="TIDEGATE_SECRET_KEY is not the key it was encrypted with"
    ) as caught:
        other.unseal(sealed)
    assert shows_no_internals(caught.value)


def test_rotation_decrypts_with_old_keys_and_encrypts_with_the_first(box: SecretBox) -> None:
    old_key, new_key = SecretBox.generate_key(), SecretBox.generate_key()
    sealed_before = SecretBox(old_key).seal("value")
    rotated = SecretBox(f"{new_key}, {old_key}")
    assert rotated.unseal(sealed_before) == "value"
    assert SecretBox(new_key).unseal(rotated.seal("again")) == "again"


@pytest.mark.parametrize(
    "key", ["", " , ", "not-a-key", "é" * 44], ids=["empty", "commas", "short", "non-ascii"]
)
def test_malformed_key_is_a_clear_error(key: str) -> None:
    with pytest.raises(SecretKeyError, match="TIDEGATE_SECRET_KEY") as caught:
        SecretBox(key)
    assert shows_no_internals(caught.value)


def test_sealed_repr_hides_the_token(box: SecretBox) -> None:
    sealed = box.seal(CREDENTIALS)
    assert repr(sealed).startswith("Sealed(<") and sealed.token.decode() not in repr(sealed)
    assert isinstance(sealed, Sealed)


def test_key_file_is_created_0600(tmp_path: Path, open_umask: None) -> None:
    data_dir = tmp_path / "data"
    key = load_or_create_key(data_dir)
    key_file = data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert key_file.read_text().strip() == key
    assert SecretBox(key).unseal(SecretBox(key).seal("x")) == "x"
    assert [p.name for p in data_dir.iterdir()] == ["secret.key"], "no temporary file left behind"


def test_key_file_is_reused(tmp_path: Path) -> None:
    assert load_or_create_key(tmp_path) == load_or_create_key(tmp_path)


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(lambda _: load_or_create_key(tmp_path), range(32)))
    assert len(keys) == 1


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_key(tmp_path)
    (tmp_path / "secret.key").chmod(0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        load_or_create_key(tmp_path)


def test_damaged_key_file_is_reported_by_path(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text("garbage\n")
    key_file.chmod(0o600)
    with pytest.raises(SecretKeyError, match=r"secret\.key does not hold a valid TIDEGATE_SECRET_KEY"):
        load_or_create_key(tmp_path)
