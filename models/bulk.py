"""Bulk writes: one SQLAlchemy statement executed for many rows, at driver speed.

SQLAlchemy's executemany processes every parameter of every row in Python (measured: half of the
time of a million-row upsert). Here each column's values are converted once, column by column, with
the column type's own bind processor, and the compiled statement goes to the driver with plain tuples.
The SQL is still SQLAlchemy's, so the same call works on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

#: Rows per driver call: bounds the memory of the parameter list on million-row writes.
BATCH_ROWS = 50_000


def execute_many(
    session: Session,
    statement: Any,
    table: Table,
    columns: dict[str, list[Any]],
    *,
    aliases: Mapping[str, str] | None = None,
) -> int:
    """Execute `statement` once per row of `columns` (Python values, by column name); return rows changed.
    `aliases` names the column of each value bound under a name of its own (an update's matched key,
    whose column's name its SET clause takes)."""
    connection = session.connection()
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    sql = str(compiled)
    converted: dict[str, list[Any]] = {}
    for name, values in columns.items():
        column_type = table.c[(aliases or {}).get(name, name)].type
        processor = column_type.dialect_impl(dialect).bind_processor(dialect)
        converted[name] = values if processor is None else [processor(value) for value in values]
    names = list(compiled.positiontup) if compiled.positional else list(converted)
    ordered = [converted[name] for name in names]
    count = len(ordered[0]) if ordered else 0
    changed = 0
    # Parameter tuples are built one batch at a time: a million rows of ten values as tuples cost
    # more memory than the file they came from.
    for start in range(0, count, BATCH_ROWS):
        batch = zip(*(values[start : start + BATCH_ROWS] for values in ordered), strict=True)
        rows: list[Any] = (
            list(batch) if compiled.positional else [dict(zip(names, values, strict=True)) for values in batch]
        )
        result = connection.exec_driver_sql(sql, rows)
        changed += max(result.rowcount, 0)
    return changed
