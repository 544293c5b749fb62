"""Secrets from files (`TIDEGATE_<NAME>_FILE`), as Docker and Kubernetes secrets arrive."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.sealed import default_hidden
from tidegate.settings import SecretFileError, Settings

URL = "postgresql+psycopg://tidegate:s3cret@198.51.100.7/tidegate"


@pytest.mark.parametrize(("field", "variable"), [
    ("database_url", "TIDEGATE_DATABASE_URL_FILE"),
    ("redis_url", "TIDEGATE_REDIS_URL_FILE"),
    ("secret_key", "TIDEGATE_SECRET_KEY_FILE"),
    ("webhook_secret", "TIDEGATE_WEBHOOK_SECRET_FILE"),
    ("token", "TIDEGATE_TOKEN_FILE"),
], ids=["database-url", "redis-url", "secret-key", "webhook-secret", "token"])
def test_a_secret_setting_is_read_from_the_file_its_variable_names_without_the_trailing_newline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, variable: str) -> None:
    secret = tmp_path / field
    secret.write_text(URL + "\n")
    monkeypatch.setenv(variable, str(secret))
    value = getattr(Settings(), field)
    assert (value if isinstance(value, str) else value.get_secret_value()) == URL


def test_the_variable_itself_wins_over_its_file_which_then_need_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEGATE_DATABASE_URL", URL)
    monkeypatch.setenv("TIDEGATE_DATABASE_URL_FILE", "/nonexistent/database-url")
    assert Settings().database_url == URL


@pytest.mark.parametrize(("content", "message"), [
    (None, "TIDEGATE_SECRET_KEY_FILE: cannot read {path}: No such file or directory"),
    ("\n", "TIDEGATE_SECRET_KEY_FILE: {path} is empty"),
], ids=["missing", "empty"])
def test_an_unreadable_or_empty_secret_file_is_an_error_naming_the_variable_and_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, message: str) -> None:
    path = tmp_path / "secret-key"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("TIDEGATE_SECRET_KEY_FILE", str(path))
    with pytest.raises(SecretFileError) as raised:
        Settings()
    assert str(raised.value) == message.format(path=path)


def test_sealed_repository_code_is_not_shown_the_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "redis-url"
    secret.write_text("redis://:pw@198.51.100.7:6379/0\n")
    monkeypatch.setenv("TIDEGATE_REDIS_URL_FILE", str(secret))
    assert secret in Settings().sealed_paths
    assert secret in default_hidden()
