"""Key rotation: every sealed column of every table re-encrypted under the newest key.

The columns are found from the models' metadata (any `SealedText` column), so a secret column added
later is rotated without anyone remembering to list it here. Rotation is safe under running
processes: they hold the old and the new key (TIDEGATE_SECRET_KEY=new,old, or the key file that
`rotate_key_file` rewrites and boxes re-read), so every token decrypts before, during and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Column, Table, or_, select, update

from store.database import Database
from store.models import Base
from store.secrets import KEY_FILE_NAME, Sealed, SecretBox, SecretKeyError, read_key_file, replace_key_file
from store.types import SealedText

MAX_PASSES = 3


@dataclass
class RotationReport:
    """How many values each table had re-encrypted, and whether the first key now opens them all."""

    rotated: dict[str, int] = field(default_factory=dict)
    complete: bool = False

    @property
    def total(self) -> int:
        return sum(self.rotated.values())


def sealed_columns() -> list[tuple[Table, list[Column[Sealed]]]]:
    """Every table with secret columns, and those columns."""
    found = []
    for table in Base.metadata.sorted_tables:
        columns = [column for column in table.columns if isinstance(column.type, SealedText)]
        if columns:
            found.append((table, columns))
    return found


def rotate(database: Database, box: SecretBox) -> RotationReport:
    """Re-encrypt every stored secret under `box`'s first key, until the first key alone opens all
    (a value a process sealed with an older key during a pass is caught by the next)."""
    report = RotationReport()
    for _ in range(MAX_PASSES):
        for table, columns in sealed_columns():
            count = _rotate_table(database, box, table, columns)
            report.rotated[table.name] = report.rotated.get(table.name, 0) + count
        if all_open(database, box):
            report.complete = True
            break
    return report


def _rotate_table(database: Database, box: SecretBox, table: Table, columns: list[Column[Sealed]]) -> int:
    primary = next(iter(table.primary_key.columns))
    count = 0
    with database.session(write=True) as session:
        rows = session.execute(select(primary, *columns).where(or_(*(column.is_not(None) for column in columns))))
        for row in rows.all():
            values = {column.name: box.rotate(row[index + 1]) for index, column in enumerate(columns)
                      if row[index + 1] is not None and not box.opens(row[index + 1])}
            if values:
                session.execute(update(table).where(primary == row[0]).values(**values))
                count += len(values)
    return count


def all_open(database: Database, box: SecretBox) -> bool:
    """Whether the first key alone decrypts every stored secret."""
    with database.session() as session:
        for _table, columns in sealed_columns():
            for row in session.execute(select(*columns)).all():
                if any(value is not None and not box.opens(value) for value in row):
                    return False
    return True


def rotate_key_file(data_dir: Path, database: Database) -> RotationReport:
    """Rotate the embedded default's `secret.key`: a new key goes first in the file (every process
    re-reads it, seals with it, still opens old tokens), every value is re-encrypted, then the old
    key is dropped from the file."""
    path = data_dir / KEY_FILE_NAME
    old = read_key_file(path)
    new = SecretBox.generate_key()
    replace_key_file(path, f"{new},{old}")
    report = rotate(database, SecretBox(f"{new},{old}"))
    if not report.complete:
        raise SecretKeyError(f"rotation did not finish: some values still need the old key; {path} keeps both keys")
    replace_key_file(path, new)
    return report
