"""Column types that make SQLite and PostgreSQL behave the same for timestamps, enums, JSON, secrets.

Each type's database side is a plain portable type (what the migrations spell out), so the
migrations never import these classes and stay valid when the classes change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import JSON, DateTime, Dialect, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

from store.redaction import REDACTOR
from store.secrets import Sealed

E = TypeVar("E", bound=StrEnum)

ENUM_LENGTH = 32
"""Width of every enum column; the longest word today is `awaiting_approval` (17)."""


def utcnow() -> datetime:
    """Default for timestamp columns: the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases.

    SQLite has no time zone type and hands back naive values; PostgreSQL hands back values in the
    session's zone. Both are normalised to UTC here, and naive input is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware UTC timestamps only")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class WordEnum(TypeDecorator[E]):
    """A `StrEnum` stored as its word (the value) in a VARCHAR, without a database enum type.

    Plain VARCHAR keeps adding a status word a code-only change on both databases (no
    `ALTER TYPE`, no SQLite table rebuild for a CHECK constraint); unknown words are refused here.
    """

    impl = String(ENUM_LENGTH)
    cache_ok = True

    def __init__(self, enum_class: type[E]) -> None:
        super().__init__()
        self.enum_class = enum_class

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return self.enum_class(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum_class(value)

    def __repr__(self) -> str:
        return f"WordEnum({self.enum_class.__name__})"


class SealedText(TypeDecorator[Sealed]):
    """A secret column: accepts only `Sealed` ciphertext, so plain text can never be written to it."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Sealed | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Sealed):
            kind = type(value).__name__
            raise TypeError(f"secret columns take Sealed values (use SecretBox.seal), not {kind}")
        return value.token.decode("ascii")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Sealed | None:
        return None if value is None else Sealed(value.encode("ascii"))


def json_type(*, none_as_null: bool = False) -> TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL (indexable, compared by value, no duplicate keys)."""
    return JSON(none_as_null=none_as_null).with_variant(JSONB(none_as_null=none_as_null), "postgresql")


class RedactedText(TypeDecorator[str]):
    """Text people read (logs, errors, comments): every registered secret is masked on write."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else REDACTOR(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return value


class RedactedJSON(TypeDecorator[Any]):
    """`json_type()` whose strings are redacted on write (plan summaries, drift values, previews)."""

    impl = JSON
    cache_ok = True

    def __init__(self, *, none_as_null: bool = False) -> None:
        super().__init__(none_as_null=none_as_null)
        self.none_as_null = none_as_null

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=self.none_as_null))
        return dialect.type_descriptor(JSON(none_as_null=self.none_as_null))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return REDACTOR.value(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return value
