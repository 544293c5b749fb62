"""The migrations build, from nothing, exactly the schema the models describe, on both databases."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from store import Base, current_revision, downgrade, head_revision, upgrade
from store.engine import create_database_engine
from store.migrate import MIGRATIONS_DIR


def table_names(url: str) -> set[str]:
    engine = create_database_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def schema_differences(url: str) -> list[object]:
    """What autogenerate would still write: empty when migrations and models agree."""
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_every_table(empty_database_url: str) -> None:
    assert current_revision(empty_database_url) is None
    upgrade(empty_database_url)
    assert table_names(empty_database_url) == set(Base.metadata.tables) | {"alembic_version"}
    assert current_revision(empty_database_url) == head_revision()


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    assert schema_differences(database_url) == []


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()


def test_downgrade_to_base_then_upgrade_again(database_url: str) -> None:
    downgrade(database_url, "base")
    assert table_names(database_url) == {"alembic_version"}
    upgrade(database_url)
    assert schema_differences(database_url) == []


def test_concurrent_upgrades_migrate_once(empty_database_url: str) -> None:
    """An API, a worker and a scheduler starting together must not race to create tables."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(upgrade, empty_database_url) for _ in range(3)]:
            future.result()
    assert current_revision(empty_database_url) == head_revision()


def test_upgrade_needs_no_alembic_ini(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    upgrade(empty_database_url)
    assert not (tmp_path / "alembic.ini").exists()
    assert current_revision(empty_database_url) == head_revision()


@pytest.mark.parametrize(
    "migration", sorted((MIGRATIONS_DIR / "versions").glob("*.py")), ids=lambda p: p.name
)
def test_migrations_import_only_sqlalchemy_and_alembic(migration: Path) -> None:
    """A migration that imported `store` would change meaning when the models change later."""
    tree = ast.parse(migration.read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    roots = {name.split(".")[0] for name in imported}
    assert roots <= {"__future__", "collections", "typing", "sqlalchemy", "alembic"}, roots
