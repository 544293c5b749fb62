"""Redaction by value: a secret the process holds is masked in whatever it writes, in every common form."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from pathlib import Path

import pytest
from sqlalchemy import text

from store import Database, Environment, Repository, SecretBox, Sync, SyncTrigger
from store.redaction import MASK, Redactor, forms_of, install_log_redaction, remember


def _secret() -> str:
    return "tok-" + secrets.token_urlsafe(24)


@pytest.mark.parametrize(
    "shape",
    [lambda s: s, lambda s: json.dumps({"k": s}), lambda s: base64.b64encode(s.encode()).decode(),
     lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")],
    ids=["plain", "inside-json", "base64", "urlsafe-base64-unpadded"],
)
def test_a_registered_secret_is_masked_in_each_form_it_is_copied_in(shape) -> None:  # type: ignore[no-untyped-def]
    redactor, secret = Redactor(), _secret()
    redactor.add(secret)

    written = f"value = {shape(secret)} end"

    assert secret not in redactor(written) and MASK in redactor(written)


def test_a_json_escaped_multi_line_secret_and_its_key_material_are_masked() -> None:
    key_body = secrets.token_urlsafe(48)
    private_key = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{key_body}\n-----END OPENSSH PRIVATE KEY-----\n"
    redactor = Redactor()
    redactor.add(private_key)

    assert key_body not in redactor(json.dumps({"key": private_key}))
    assert key_body not in redactor(f"the second line was {key_body}")
    assert "BEGIN OPENSSH" in redactor("-----BEGIN OPENSSH PRIVATE KEY-----")  # the frame is not a secret


def test_short_values_are_not_registered_so_ordinary_words_survive() -> None:
    assert forms_of("test") == set()
    redactor = Redactor()
    redactor.add("test", "", None)

    assert redactor("a test of nothing") == "a test of nothing"


def test_nested_values_are_redacted_keys_included() -> None:
    redactor, secret = Redactor(), _secret()
    redactor.add(secret)

    assert redactor.value({secret: [1, {"x": f"a {secret}"}]}) == {MASK: [1, {"x": f"a {MASK}"}]}


def test_columns_people_read_are_redacted_on_write_whatever_code_wrote_them(tmp_path: Path) -> None:
    secret = _secret()
    remember(secret)
    database = Database.embedded(tmp_path)
    database.upgrade()
    with database.session() as session:
        repository = Repository(name="infra", url="/r.git")
        session.add(repository)
        session.flush()
        env = Environment(repository_id=repository.id, name="staging")
        session.add(env)
        session.flush()
        session.add(Sync(environment_id=env.id, trigger=SyncTrigger.MANUAL, error=f"terraform said {secret}"))

    with database.engine.connect() as connection:
        stored = connection.execute(text("SELECT error FROM syncs")).scalar_one()
    database.dispose()
    assert stored == f"terraform said {MASK}"


def test_the_secret_key_and_unsealed_credentials_are_masked_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    key = SecretBox.generate_key()
    box = SecretBox(key)
    token = _secret()
    sealed = box.seal(token)
    log = logging.getLogger("tests.redaction")

    with caplog.at_level(logging.INFO, logger="tests.redaction"):
        box.unseal_secret(sealed)
        log.info("key %s token %s", key, token)
        try:
            raise RuntimeError(f"failed with {token}")
        except RuntimeError:
            log.exception("boom")

    text_out = caplog.text
    assert key not in text_out and token not in text_out
    assert text_out.count(MASK) >= 3
