"""Repositories: every read and write of the ORM tables, each taking the caller's session.

Writes are idempotent upserts keyed on natural keys, so a flow re-run after a crash writes nothing twice.
Upserts use the dialect's ``ON CONFLICT`` (`models.dialects.insert_statement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from models.base import stored_microseconds, table_of
from models.bulk import BATCH_ROWS, execute_many
from models.dialects import insert_statement
from models.provenance import retract_records
from models.provenance_sources import log_rows
from models.tables import (
    BarRecord,
    MemoryItemRecord,
    ObservationRecord,
    QuarantinedRow,
)
from neuraltrade.market.bars import BAR_COLUMNS, TIMESTAMP_DTYPE, timestamps_to_microseconds
from neuraltrade.timestamps import to_microseconds
from neuraltrade.types import Observation

_BAR_VALUES = ("open", "high", "low", "close", "volume", "spread")


@dataclass(frozen=True)
class QuarantineEntry:
    """A row to quarantine: its line in the source, the checks it failed and its raw fields."""

    line: int
    failed_checks: tuple[str, ...]
    raw_values: tuple[str, ...]


def upsert_bars(session: Session, frame: pd.DataFrame, *, source: str, now: datetime) -> int:
    """Insert the bars of bar frame `frame`, updating stored bars whose values differ; return rows changed.

    A bar identical to the stored one is left untouched, so re-ingesting a file changes nothing.
    """
    if frame.empty:
        return 0
    table = table_of(BarRecord)
    statement = insert_statement(session, table)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["symbol", "timestamp"],
        set_={name: excluded[name] for name in (*_BAR_VALUES, "source", "ingested_at")},
        where=_any_distinct(table, excluded),
    )
    ingested = to_microseconds(now)
    changed = 0
    # Python values for a million rows cost several times the frame; convert one batch at a time.
    for start in range(0, len(frame), BATCH_ROWS):
        part = frame.iloc[start : start + BATCH_ROWS]
        columns: dict[str, list[Any]] = {
            "symbol": part["symbol"].astype(str).tolist(),
            "timestamp": timestamps_to_microseconds(part["timestamp"]).tolist(),
            **{name: part[name].astype(float).tolist() for name in _BAR_VALUES},
        }
        columns["spread"] = [None if value != value else value for value in columns["spread"]]  # NaN is NULL
        columns["source"] = [source] * len(part)
        columns["ingested_at"] = [ingested] * len(part)
        changed += execute_many(session, statement, table, columns)
    return changed


def _any_distinct(table: Any, excluded: Any) -> Any:
    return or_(*(table.c[name].is_distinct_from(excluded[name]) for name in _BAR_VALUES))


def earliest_written(session: Session, *, source: str, ingested_at: datetime) -> dict[str, int]:
    """Return, per symbol, the earliest epoch-microsecond timestamp of the bars one upsert wrote.

    `upsert_bars` stamps every bar it inserts or changes with the call's `ingested_at` and leaves
    unchanged bars alone, so this names exactly the history that changed.
    """
    column = stored_microseconds(BarRecord.timestamp)
    query = (
        select(BarRecord.symbol, func.min(column))
        .where(BarRecord.source == source, BarRecord.ingested_at == ingested_at)
        .group_by(BarRecord.symbol)
    )
    return {symbol: int(first) for symbol, first in session.execute(query).all()}


def delete_observations_from(session: Session, symbol: str, since: int) -> int:
    """Delete `symbol`'s observations at or after epoch microsecond `since`; return how many.

    Their embedding rows go with them (foreign key cascade); vectors must be deleted first
    (`models.vector_store.delete_vectors_from`), since virtual tables have no foreign keys.
    """
    column = stored_microseconds(ObservationRecord.timestamp)
    condition = (ObservationRecord.symbol == symbol) & (column >= since)
    removed = list(session.scalars(select(ObservationRecord.id).where(condition)))
    session.execute(delete(ObservationRecord).where(condition))
    # Deliberately removed: the log says so, or verification would take them for deleted records.
    retract_records(session, Observation.KIND, removed, reason=f"bars of {symbol} corrected from {since}")
    return len(removed)


def quarantine_rows(
    session: Session, *, source: str, source_digest: str, entries: Sequence[QuarantineEntry], now: datetime
) -> int:
    """Store rows that failed; a row already quarantined from the same file content is updated, not doubled."""
    if not entries:
        return 0
    table = table_of(QuarantinedRow)
    statement = insert_statement(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=["source_digest", "line"],
        set_={"failed_checks": statement.excluded.failed_checks, "source": statement.excluded.source},
    )
    count = len(entries)
    columns: dict[str, list[Any]] = {
        "source": [source] * count,
        "source_digest": [source_digest] * count,
        "line": [entry.line for entry in entries],
        "failed_checks": [list(entry.failed_checks) for entry in entries],
        "raw_values": [list(entry.raw_values) for entry in entries],
        "quarantined_at": [to_microseconds(now)] * count,
    }
    execute_many(session, statement, table, columns)
    return count


def list_symbols(session: Session) -> list[str]:
    """Return every symbol that has bars, sorted."""
    return list(session.scalars(select(BarRecord.symbol).distinct().order_by(BarRecord.symbol)))


def bar_timestamps(session: Session, symbol: str) -> np.ndarray:
    """Return the epoch-microsecond timestamps of `symbol`'s bars, ascending."""
    column = stored_microseconds(BarRecord.timestamp)
    values = session.scalars(select(column).where(BarRecord.symbol == symbol).order_by(column)).all()
    return np.asarray(values, dtype=np.int64)


def observation_timestamps(session: Session, symbol: str, *, before: int | None = None) -> np.ndarray:
    """Return the epoch-microsecond timestamps of `symbol`'s stored observations (before `before`), ascending."""
    column = stored_microseconds(ObservationRecord.timestamp)
    query = select(column).where(ObservationRecord.symbol == symbol)
    if before is not None:
        query = query.where(column < before)
    return np.asarray(session.scalars(query.order_by(column)).all(), dtype=np.int64)


def embedded_timestamps(session: Session, collection_id: int, symbol: str) -> np.ndarray:
    """Return the epoch-microsecond timestamps of `symbol` already embedded in a collection."""
    column = stored_microseconds(MemoryItemRecord.timestamp)
    values = session.scalars(
        select(column).where(MemoryItemRecord.collection_id == collection_id, MemoryItemRecord.partition == symbol)
    ).all()
    return np.asarray(values, dtype=np.int64)


def load_bars(session: Session, symbol: str, *, since: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Return `symbol`'s bars from epoch microsecond `since` on as a bar frame, and their ids."""
    column = stored_microseconds(BarRecord.timestamp)
    query = select(BarRecord.id, BarRecord.symbol, column, *(getattr(BarRecord, name) for name in _BAR_VALUES)).where(
        BarRecord.symbol == symbol
    )
    if since is not None:
        query = query.where(column >= since)
    rows = session.execute(query.order_by(column)).all()
    frame = pd.DataFrame.from_records(rows, columns=["id", *BAR_COLUMNS])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"].astype(np.int64), unit="us", utc=True).astype(
        TIMESTAMP_DTYPE
    )
    for name in _BAR_VALUES:
        frame[name] = frame[name].astype("float64")
    return frame.loc[:, list(BAR_COLUMNS)], frame["id"].to_numpy(np.int64)


def upsert_observations(session: Session, columns: dict[str, list[Any]]) -> int:
    """Insert observations given column-wise (names as `ObservationRecord` columns); keep existing ones."""
    table = table_of(ObservationRecord)
    if not next(iter(columns.values()), []):
        return 0
    statement = insert_statement(session, table).on_conflict_do_nothing(index_elements=["id"])
    new = execute_many(session, statement, table, columns)
    log_rows(session, Observation.KIND, columns)
    return new
