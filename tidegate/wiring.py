"""Builds the long-lived objects every entry point needs from Settings (composition only)."""

from __future__ import annotations

from dataclasses import dataclass

from store import Database, SecretBox, load_or_create_key, sqlite_url
from store.files import private_directory
from tidegate.settings import Settings


@dataclass
class Store:
    """The database and the box that seals secrets before they reach it."""

    database: Database
    secrets: SecretBox
    key_source: str


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    """Open the configured database (SQLite in the data dir by default), migrated to the latest
    schema, with the secret key from TIDEGATE_SECRET_KEY or the generated `<data dir>/secret.key`."""
    private_directory(settings.data_dir)
    if settings.secret_key is not None:
        key, source = settings.secret_key.get_secret_value(), "TIDEGATE_SECRET_KEY"
    else:
        key, source = load_or_create_key(settings.data_dir), str(settings.data_dir / "secret.key")
    box = SecretBox(key)
    database = Database(settings.database_url or sqlite_url(settings.data_dir))
    if migrate:
        database.upgrade()
    return Store(database, box, source)
