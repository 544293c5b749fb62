"""`tidegate secret set|list|delete|rotate-key` on a real data directory: values go in from a file, a
variable or stdin, never come out, and resolve for the scopes they were set for, also after rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.secrets import StoredSecrets
from store import Database, SecretBox, sqlite_url
from store.secrets import KEY_FILE_NAME, key_file_box, read_key_file
from tidegate.cli import app as tidegate_app

SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ncli-stored-key\n-----END OPENSSH PRIVATE KEY-----\n"
TOKEN = "cli-token-value-9f8e7d"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIDEGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TIDEGATE_SECRET_KEY", raising=False)
    monkeypatch.delenv("TIDEGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("TIDEGATE_SERVER", raising=False)
    return tmp_path / "data"


@pytest.fixture
def initialised(data_dir: Path) -> Path:
    assert run("init")[0] == 0
    return data_dir


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(tidegate_app, list(args), input=stdin, env=env)
    return result.exit_code, result.stdout, result.stderr


def resolver(data_dir: Path, box: SecretBox | None = None) -> StoredSecrets:
    return StoredSecrets(Database(sqlite_url(data_dir)), box or key_file_box(data_dir))


def test_secrets_set_from_a_file_a_variable_and_stdin_resolve_in_their_scopes(initialised: Path,
                                                                              tmp_path: Path) -> None:
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(SSH_KEY)
    outputs = [
        run("secret", "set", "deploy-key", "--repo", "infra", "--from-file", str(key_file)),
        run("secret", "set", "api-token", "--repo", "infra", "--env", "staging", "--from-env", "MY_TOKEN",
            env={"MY_TOKEN": TOKEN}),
        run("secret", "set", "shared", "--stdin", stdin="global-value"),
    ]
    assert [code for code, _, _ in outputs] == [0, 0, 0], outputs
    assert "secret deploy-key set for repository infra (hmac-sha256:" in outputs[0][1]
    stored = resolver(initialised)
    assert stored.resolve("infra", "staging", "deploy-key") == SSH_KEY, "a file keeps its bytes"
    assert stored.resolve("infra", "staging", "api-token") == TOKEN
    assert stored.resolve("infra", "production", "api-token") is None
    assert stored.resolve("other", "staging", "shared") == "global-value"
    assert all(SSH_KEY not in out + err and TOKEN not in out + err for _, out, err in outputs)


def test_list_shows_names_scopes_and_fingerprints_never_values(initialised: Path) -> None:
    run("secret", "set", "api-token", "--repo", "infra", "--env", "staging", "--stdin", stdin=TOKEN)
    code, out, _ = run("secret", "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "SCOPE", "FINGERPRINT", "UPDATED", "BY"]
    assert row.split()[:2] == ["api-token", "infra/staging"] and "hmac-sha256:" in row
    assert TOKEN not in out
    assert run("secret", "list", "--repo", "other")[1].strip() == "no stored secrets"


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["secret", "set", "x", "--env", "staging", "--stdin"], "v", "an environment scope needs its repository"),
    (["secret", "set", "x"], None, "exactly one of --from-file FILE, --from-env VARIABLE, --stdin"),
    (["secret", "set", "x", "--stdin", "--from-env", "HOME"], "v", "exactly one of"),
    (["secret", "set", "x", "--from-env", "TIDEGATE_NOT_SET_ANYWHERE"], None, "the variable is not set"),
    (["secret", "set", "x", "--from-file", "/nonexistent/key"], None, "--from-file /nonexistent/key"),
    (["secret", "set", "bad name", "--stdin"], "v", "name: 'bad name' is not a secret name"),
    (["secret", "set", "x", "--stdin"], "", "value: a secret cannot be empty"),
    (["secret", "delete", "missing", "--repo", "infra"], None, "no secret 'missing' in repository infra"),
], ids=["env-without-repo", "no-source", "two-sources", "unset-variable", "missing-file", "bad-name",
        "empty-value", "delete-missing"])
def test_bad_input_is_one_clear_line_and_stores_nothing(initialised: Path, args: list[str], stdin: str | None,
                                                        message: str) -> None:
    code, _, err = run(*args, stdin=stdin)
    assert code == 1
    assert message in err, err
    assert run("secret", "list")[1].strip() == "no stored secrets"


def test_without_a_store_nothing_is_created(data_dir: Path) -> None:
    code, _, err = run("secret", "list")
    assert code == 1 and "no Tidegate store in" in err and "tidegate init" in err
    assert not data_dir.exists() or not any(data_dir.iterdir())


def test_rotate_key_re_encrypts_under_a_new_key_file_and_every_reference_still_resolves(initialised: Path) -> None:
    run("secret", "set", "api-token", "--repo", "infra", "--stdin", stdin=TOKEN)
    worker = resolver(initialised)  # a process that opened the store before the rotation
    old_key = read_key_file(initialised / KEY_FILE_NAME)

    code, out, err = run("secret", "rotate-key")

    assert code == 0, err
    assert "re-encrypted 1 values under the new key (stored_secrets 1)" in out
    new_key = read_key_file(initialised / KEY_FILE_NAME)
    assert new_key != old_key and "," not in new_key
    assert worker.resolve("infra", "staging", "api-token") == TOKEN
    assert resolver(initialised, SecretBox(new_key)).resolve("infra", "staging", "api-token") == TOKEN


def test_rotate_key_with_the_setting_needs_the_new_key_listed_first(initialised: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    old_key = read_key_file(initialised / KEY_FILE_NAME)
    monkeypatch.setenv("TIDEGATE_SECRET_KEY", old_key)
    run("secret", "set", "api-token", "--repo", "infra", "--stdin", stdin=TOKEN)

    code, _, err = run("secret", "rotate-key")
    assert code == 1 and "set it to NEW,OLD" in err

    new_key = run("secret", "new-key")[1].strip()
    monkeypatch.setenv("TIDEGATE_SECRET_KEY", f"{new_key},{old_key}")
    code, out, err = run("secret", "rotate-key")
    assert code == 0, err
    assert "remove the old key(s) from TIDEGATE_SECRET_KEY" in out
    assert resolver(initialised, SecretBox(new_key)).resolve("infra", "x", "api-token") == TOKEN


def test_age_key_stores_a_new_identity_and_prints_only_its_recipient(initialised: Path) -> None:
    code, out, err = run("secret", "age-key", "sops-age", "--repo", "infra")
    assert code == 0, err
    recipient = out.strip()
    assert recipient.startswith("age1") and "\n" not in recipient
    identity = resolver(initialised).resolve("infra", "staging", "sops-age")
    assert identity is not None and identity.startswith("AGE-SECRET-KEY-1")
    assert identity.strip() not in out + err
