"""Builds the long-lived objects every entry point needs from Settings (composition only)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from providers import sealed
from providers.terraform import mirror
from store import Database, PoolLimits, SecretBox, current_revision, sqlite_url
from store.engine import DATABASE_FILE_NAME
from store.files import private_directory
from store.redaction import install_log_redaction, remember
from store.secrets import KEY_FILE_NAME, key_file_box
from tidegate.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Store:
    """The database and the box that seals secrets before they reach it."""

    database: Database
    secrets: SecretBox
    key_source: str


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    """Open the configured database (SQLite in the data dir by default), migrated to the latest
    schema, with the secret key from TIDEGATE_SECRET_KEY or the generated `<data dir>/secret.key`.

    Every process opens its store here, so this is also where the secrets the settings hold are
    registered for redaction and log records start being redacted (store/redaction.py)."""
    install_log_redaction()
    remember_settings(settings)
    private_directory(settings.data_dir)
    if settings.secret_key is not None:
        box, source = SecretBox(settings.secret_key.get_secret_value()), "TIDEGATE_SECRET_KEY"
    else:
        box, source = key_file_box(settings.data_dir), str(settings.data_dir / KEY_FILE_NAME)
    database = Database(settings.database_url or sqlite_url(settings.data_dir), pool=pool_limits(settings))
    if migrate:
        database.upgrade()
    return Store(database, box, source)


def pool_limits(settings: Settings) -> PoolLimits:
    """The bounds of this process's PostgreSQL connections (TIDEGATE_DB_POOL_SIZE and friends)."""
    return PoolLimits(settings.db_pool_size, settings.db_max_overflow, settings.db_pool_timeout)


def missing_store(settings: Settings) -> str | None:
    """Why there is no store to read, or None when there is one. Checked before a command reads
    it, so that a wrong data directory is named instead of failing on the first query, and an absent
    SQLite file or key is never created by a read."""
    if settings.database_url is None:
        if not (settings.data_dir / DATABASE_FILE_NAME).is_file():
            return f"no Tidegate store in {settings.data_dir}"
        url = sqlite_url(settings.data_dir)
    else:
        url = settings.database_url
    try:
        revision = current_revision(url)
    except SQLAlchemyError as error:
        return f"the database cannot be read: {str(error).splitlines()[0]}"
    if revision is None:
        return f"the database {make_url(url).render_as_string(hide_password=True)} has no Tidegate tables"
    return None


def terraform_plugin_dirs(settings: Settings) -> str:
    """The provider mirror roots Terraform runs get: `TIDEGATE_TERRAFORM_PLUGIN_DIRS` when set; none
    when terraform's own places hold providers; else the mirrors found on this machine (searched once
    per process), so `tidegate up`, `worker` and `plan` need no script to find them."""
    if settings.terraform_plugin_dirs:
        return settings.terraform_plugin_dirs
    if mirror.discover(mirror.standard_plugin_dirs()):
        return ""
    return _found_mirrors()


@cache
def _found_mirrors() -> str:
    roots = mirror.find_mirror_roots()
    log.info("terraform provider mirrors found on this machine: %s", ", ".join(map(str, roots)) or "none")
    return ":".join(str(root) for root in roots)


def install_seal(settings: Settings) -> sealed.Seal:
    """This process's seal for repository code (see providers/sealed.py), built from the settings."""
    seal = sealed.Seal(hidden=settings.sealed_paths, user=settings.runner_user)
    sealed.configure(seal)
    return seal


def install_local_seal(settings: Settings) -> sealed.SealStatus:
    """The seal for the local CLI's `validate`, `render` and `plan` of the caller's own checkout:
    sealed when this machine can; otherwise the caller's own code runs as the caller, and the
    returned status says so (workers never fall back: they refuse)."""
    status = install_seal(settings).status()
    if not status.sealed:
        sealed.configure(sealed.Seal.trusting_caller())
    return status


def remember_settings(settings: Settings) -> None:
    """The secrets in this process's settings: masked in everything it writes."""
    for secret in (settings.webhook_secret, settings.token, settings.secret_key):
        if secret is not None:
            remember(secret.get_secret_value())
    if settings.database_url:
        try:
            remember(make_url(settings.database_url).password)
        except ArgumentError:
            return
