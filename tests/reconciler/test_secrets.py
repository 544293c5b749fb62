"""Stored secrets: a reference sees its own environment's, its repository's and global secrets, the
most specific first, and never another scope's; values are sealed, listed only by fingerprint."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from reconciler import secrets
from reconciler.runtime import Services
from reconciler.secrets import Scope, SecretError, StoredSecrets
from store import AuditEvent

VALUE = "postgres-password-s3cr3t"


def put(services: Services, name: str, scope: Scope, value: str = VALUE) -> secrets.SecretInfo:
    with services.database.session(write=True) as session:
        return secrets.set_secret(session, services.secrets, name, scope, value, "cli:alice")


@pytest.mark.parametrize(("stored_in", "reader", "visible"), [
    (Scope("infra", "staging"), ("infra", "staging"), True),
    (Scope("infra", "staging"), ("infra", "production"), False),
    (Scope("infra", "staging"), ("other", "staging"), False),
    (Scope("infra"), ("infra", "production"), True),
    (Scope("infra"), ("other", "production"), False),
    (Scope(), ("other", "anything"), True),
], ids=["own-environment", "sibling-environment", "same-environment-name-other-repo", "own-repository",
        "other-repository", "global"])
def test_a_reference_sees_only_its_own_scopes(services: Services, stored_in: Scope, reader: tuple[str, str],
                                              visible: bool) -> None:
    put(services, "db-password", stored_in)
    found = StoredSecrets(services.database, services.secrets).resolve(*reader, "db-password")
    assert found == (VALUE if visible else None)


def test_the_most_specific_scope_wins(services: Services) -> None:
    put(services, "token", Scope(), "global-value")
    put(services, "token", Scope("infra"), "repository-value")
    put(services, "token", Scope("infra", "staging"), "environment-value")
    stored = StoredSecrets(services.database, services.secrets)
    assert stored.resolve("infra", "staging", "token") == "environment-value"
    assert stored.resolve("infra", "production", "token") == "repository-value"
    assert stored.resolve("other", "staging", "token") == "global-value"
    assert stored.visible("infra", "staging") == ["token"]


def test_values_are_stored_sealed_and_listed_by_fingerprint_only(services: Services) -> None:
    first = put(services, "db-password", Scope("infra", "staging"))
    again = put(services, "db-password", Scope("infra", "staging"))
    changed = put(services, "db-password", Scope("infra", "staging"), VALUE + "-rotated")

    assert first.fingerprint == again.fingerprint != changed.fingerprint
    with services.database.session() as session:
        raw = session.execute(text("SELECT value, fingerprint, salt FROM stored_secrets")).one()
        events = session.scalars(select(AuditEvent)).all()
        listed = secrets.list_secrets(session)
    assert VALUE not in " ".join(str(part) for part in raw)
    assert [(info.name, info.scope, info.updated_by) for info in listed] == [("db-password", "infra/staging",
                                                                            "cli:alice")]
    assert [event.action for event in events] == ["secret.set"] * 3
    assert all(VALUE not in str(event.details) for event in events)


def test_deleting_a_secret_makes_its_references_fail(services: Services) -> None:
    put(services, "db-password", Scope("infra"))
    with services.database.session(write=True) as session:
        assert secrets.delete_secret(session, "db-password", Scope("infra"), "cli:alice")
        assert not secrets.delete_secret(session, "db-password", Scope("infra"), "cli:alice")
    assert StoredSecrets(services.database, services.secrets).resolve("infra", "staging", "db-password") is None


@pytest.mark.parametrize(("name", "scope", "value", "field"), [
    ("has space", Scope(), VALUE, "name"),
    ("-leading-dash", Scope(), VALUE, "name"),
    ("ok", Scope(), "", "value"),
    ("ok", Scope(), "x" * (secrets.MAX_VALUE_BYTES + 1), "value"),
], ids=["space-in-name", "leading-dash", "empty-value", "too-large"])
def test_bad_input_is_refused_naming_the_field(services: Services, name: str, scope: Scope, value: str,
                                               field: str) -> None:
    with pytest.raises(SecretError) as caught, services.database.session(write=True) as session:
        secrets.set_secret(session, services.secrets, name, scope, value, "cli:alice")
    assert caught.value.field == field


@pytest.mark.parametrize(("repository", "environment", "field"), [
    (None, "staging", "scope"), ("in/fra", None, "repository"), ("infra", "st aging", "environment"),
], ids=["environment-without-repository", "slash-in-repository", "space-in-environment"])
def test_a_scope_names_a_repository_and_optionally_one_of_its_environments(
        repository: str | None, environment: str | None, field: str) -> None:
    with pytest.raises(SecretError) as caught:
        Scope(repository, environment)
    assert caught.value.field == field


@pytest.mark.parametrize("text_scope", ["*", "infra", "infra/staging"])
def test_a_scope_reads_back_as_it_prints(text_scope: str) -> None:
    assert Scope.parse(text_scope).key == text_scope
