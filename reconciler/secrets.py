"""Stored secrets: values a config repo names but never holds (SSH keys, kubeconfigs, variables).

A secret lives in one scope: global (`*`, set by admins only), one repository, or one
`repository/environment`. A reference from an environment resolves to the most specific scope that
holds the name (environment, then repository, then global) and can never reach another repository's
or environment's secret, as a Flux Kustomization's `decryption.secretRef` only reads its own
namespace. Values are sealed with the store's key, listed by fingerprint only, and registered for
redaction the moment they are read, so they are masked in everything Tidegate writes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import Database, SecretBox, StoredSecret, utcnow
from store.queries import record_audit
from store.redaction import remember

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
SCOPE_PART = re.compile(r"^[A-Za-z0-9._-]{1,253}$")
GLOBAL = "*"
MAX_VALUE_BYTES = 1 << 20


class SecretError(ValueError):
    """A secret that cannot be stored or found; `field` names the culprit (name, scope, value)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Scope:
    """Where a secret is visible: everywhere, one repository, or one repository's environment."""

    repository: str | None = None
    environment: str | None = None

    def __post_init__(self) -> None:
        if self.environment is not None and self.repository is None:
            raise SecretError("scope", "an environment scope needs its repository (--repo R --env E)")
        for field, value in (("repository", self.repository), ("environment", self.environment)):
            if value is not None and not SCOPE_PART.match(value):
                raise SecretError(field, f"{field}: {value!r} is not a repository or environment name")

    @classmethod
    def parse(cls, text: str) -> Scope:
        """`*`, `repository` or `repository/environment`, as `secret list` prints them."""
        if text == GLOBAL:
            return cls()
        repository, _, environment = text.partition("/")
        return cls(repository, environment or None)

    @property
    def key(self) -> str:
        if self.repository is None:
            return GLOBAL
        return self.repository if self.environment is None else f"{self.repository}/{self.environment}"

    @property
    def is_global(self) -> bool:
        return self.repository is None


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a stored secret: never its value."""

    name: str
    scope: str
    fingerprint: str
    updated_at: datetime
    updated_by: str


def search_order(repository: str, environment: str) -> tuple[Scope, ...]:
    """The scopes a reference from `repository/environment` may read, most specific first."""
    return Scope(repository, environment), Scope(repository), Scope()


def fingerprint(salt: str, value: str) -> str:
    """A short keyed digest: equal for the same value in the same row, useless for guessing it."""
    return "hmac-sha256:" + hmac.new(bytes.fromhex(salt), value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise SecretError("name", f"name: {name!r} is not a secret name (letters, digits, '.', '_', '-'; "
                                  "at most 253)")


def check_value(value: str) -> None:
    if not value:
        raise SecretError("value", "value: a secret cannot be empty")
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise SecretError("value", f"value: larger than {MAX_VALUE_BYTES} bytes")


def _row(session: Session, name: str, scope: Scope) -> StoredSecret | None:
    return session.scalars(select(StoredSecret).where(StoredSecret.name == name,
                                                      StoredSecret.scope == scope.key)).one_or_none()


def info_of(row: StoredSecret) -> SecretInfo:
    return SecretInfo(row.name, row.scope, row.fingerprint, row.updated_at, row.updated_by)


def set_secret(session: Session, box: SecretBox, name: str, scope: Scope, value: str, actor: str) -> SecretInfo:
    """Store (or replace) a secret, audited without its value."""
    check_name(name)
    check_value(value)
    remember(value)
    row = _row(session, name, scope)
    if row is None:
        row = StoredSecret(name=name, scope=scope.key, salt=os.urandom(16).hex(), created_at=utcnow())
        session.add(row)
    row.value = box.seal(value)
    row.fingerprint = fingerprint(row.salt, value)
    row.updated_at, row.updated_by = utcnow(), actor
    session.flush()
    record_audit(session, actor=actor, action="secret.set", target=f"{scope.key}:{name}",
                 details={"fingerprint": row.fingerprint})
    return info_of(row)


def delete_secret(session: Session, name: str, scope: Scope, actor: str) -> bool:
    row = _row(session, name, scope)
    if row is None:
        return False
    session.delete(row)
    record_audit(session, actor=actor, action="secret.deleted", target=f"{scope.key}:{name}")
    return True


def list_secrets(session: Session, scope: Scope | None = None) -> list[SecretInfo]:
    """Every stored secret (or those of one scope), by scope then name."""
    query = select(StoredSecret).order_by(StoredSecret.scope, StoredSecret.name)
    if scope is not None:
        query = query.where(StoredSecret.scope == scope.key)
    return [info_of(row) for row in session.scalars(query)]


def resolve(session: Session, box: SecretBox, repository: str, environment: str, name: str) -> str | None:
    """The value `repository/environment` sees under `name` (None when no visible scope holds it)."""
    for scope in search_order(repository, environment):
        row = _row(session, name, scope)
        if row is not None:
            return box.unseal_secret(row.value)
    return None


class StoredSecrets:
    """Resolves references for stage targets, one short read per reference."""

    def __init__(self, database: Database, box: SecretBox) -> None:
        self.database = database
        self.box = box

    def resolve(self, repository: str, environment: str, name: str) -> str | None:
        with self.database.session() as session:
            return resolve(session, self.box, repository, environment, name)

    def visible(self, repository: str, environment: str) -> Sequence[str]:
        """The names `repository/environment` can see (for error messages and `validate`)."""
        keys = [scope.key for scope in search_order(repository, environment)]
        with self.database.session() as session:
            return sorted(set(session.scalars(select(StoredSecret.name).where(StoredSecret.scope.in_(keys)))))
