"""Settings that bound the store's PostgreSQL connections: read from the environment, refused clearly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tidegate.settings import Settings
from tidegate.wiring import pool_limits


def test_the_pool_bounds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEGATE_DB_POOL_SIZE", "3")
    monkeypatch.setenv("TIDEGATE_DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("TIDEGATE_DB_POOL_TIMEOUT", "12.5")
    limits = pool_limits(Settings())
    assert (limits.size, limits.overflow, limits.timeout, limits.most) == (3, 0, 12.5, 3)


def test_without_settings_a_process_holds_at_most_fifteen_connections() -> None:
    assert pool_limits(Settings()).most == 15


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("TIDEGATE_DB_POOL_SIZE", "0", "TIDEGATE_DB_POOL_SIZE must be a whole number of at least 1"),
    ("TIDEGATE_DB_POOL_SIZE", "five", "TIDEGATE_DB_POOL_SIZE must be a whole number of at least 1"),
    ("TIDEGATE_DB_MAX_OVERFLOW", "-2", "TIDEGATE_DB_MAX_OVERFLOW must be a whole number of at least 0"),
    ("TIDEGATE_DB_MAX_OVERFLOW", "1.5", "TIDEGATE_DB_MAX_OVERFLOW must be a whole number of at least 0"),
    ("TIDEGATE_DB_POOL_TIMEOUT", "0", "TIDEGATE_DB_POOL_TIMEOUT must be a number of seconds above 0"),
    ("TIDEGATE_DB_POOL_TIMEOUT", "soon", "TIDEGATE_DB_POOL_TIMEOUT must be a number of seconds above 0"),
], ids=["size-zero", "size-word", "overflow-negative", "overflow-fraction", "timeout-zero", "timeout-word"])
def test_a_bad_pool_setting_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                           value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        Settings()
