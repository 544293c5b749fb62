"""Alembic environment of the store.

Run from code by `store.migrate` (which passes a locked connection in `config.attributes`), or by
the alembic command line for writing new migrations:

    TIDEGATE_DATABASE_URL=sqlite:////tmp/dev.db alembic -c store/alembic.ini revision --autogenerate -m "..."
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlalchemy.types import TypeDecorator

from store.migrate import migration_connection
from store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    """The database for command-line use: TIDEGATE_DATABASE_URL, else the ini's sqlalchemy.url."""
    url = os.environ.get("TIDEGATE_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set TIDEGATE_DATABASE_URL to the database to migrate")
    return url


def _render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the store's column types as their plain database type, so new migrations stay frozen.

    A migration that imported `store.types` would change meaning when those classes change.
    """
    if kind == "type" and isinstance(item, TypeDecorator) and type(item).__module__ == "store.types":
        return f"sa.{item.impl_instance!r}"
    return False


def _configure(connection: Connection) -> None:
    """Batch mode on SQLite, which cannot ALTER most things in place; compare types for autogenerate."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the caller's connection, or over a fresh locked one from the command line."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with migration_connection(_url()) as fresh:
        _run(fresh)


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade head --sql`), for DBAs who review it."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
