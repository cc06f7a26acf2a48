"""Compaction of the vector memory: dense rebuilds of sqlite-vec tables, VACUUM and ``PRAGMA optimize``.

sqlite-vec frees a chunk once it is wholly empty, but never compacts partly empty ones; a rebuild copies
the vectors out to a plain table and back, grouped by partition. VACUUM runs when it is due (weekly by
default, or when free pages pass a ratio), outside any transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from models import vector_sql
from models.collections import get_collection, spec_of
from models.engine import get_engine, is_sqlite, session_scope
from models.vector_maintenance import PRUNE_BATCH, MaintenanceConfig
from models.vector_statistics import recent_details
from neuraltrade.canonical import format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class VacuumPlan:
    """Whether VACUUM is due, and why."""

    due: bool
    reason: str
    last_vacuum: str | None
    free_page_ratio: float | None


@dataclass(frozen=True, kw_only=True)
class TableRebuild:
    """A vector table rewritten densely: its size before and after (None without ``dbstat``)."""

    collection: str
    vectors: int
    bytes_before: int | None
    bytes_after: int | None
    seconds: float


@dataclass(frozen=True, kw_only=True)
class DatabaseCompaction:
    """A database-wide statement (VACUUM, ``PRAGMA optimize``): file size before and after, or why skipped."""

    action: str
    bytes_before: int | None
    bytes_after: int | None
    seconds: float
    note: str = ""


def plan_vacuum(database_url: str, config: MaintenanceConfig, now: datetime) -> VacuumPlan:
    """Decide whether VACUUM (and a rebuild of every vector table) is due.

    Due when no maintenance run recorded a vacuum, when the last one is `vacuum_every_days` old or more,
    or when free pages exceed `max_free_page_ratio` of the file. Never due on a database that is not
    SQLite.
    """
    if not is_sqlite(database_url):
        return VacuumPlan(due=False, reason="not SQLite", last_vacuum=None, free_page_ratio=None)
    with session_scope(database_url) as session:
        last = last_vacuum(session)
        connection = session.connection()
        pages = int(connection.exec_driver_sql("PRAGMA page_count").scalar_one())
        free = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar_one())
    ratio = free / pages if pages else 0.0
    shown = None if last is None else format_timestamp(last)
    if ratio > config.max_free_page_ratio:
        reason = f"free pages are {ratio:.1%} of the file (over {config.max_free_page_ratio:.1%})"
        return VacuumPlan(due=True, reason=reason, last_vacuum=shown, free_page_ratio=ratio)
    if last is None:
        return VacuumPlan(due=True, reason="never vacuumed", last_vacuum=None, free_page_ratio=ratio)
    if now - last >= timedelta(days=config.vacuum_every_days):
        reason = f"last vacuum {shown} is {config.vacuum_every_days} days old or more"
        return VacuumPlan(due=True, reason=reason, last_vacuum=shown, free_page_ratio=ratio)
    return VacuumPlan(due=False, reason=f"last vacuum {shown} is recent", last_vacuum=shown, free_page_ratio=ratio)


def last_vacuum(session: Session) -> datetime | None:
    """Return when the last maintenance run vacuumed the database, or None."""
    for details in recent_details(session):
        stamp = (details.get("vacuum") or {}).get("vacuumed_at")
        if isinstance(stamp, str):
            return parse_timestamp(stamp)
    return None


def rebuild_vector_table(database_url: str, collection: str) -> TableRebuild:
    """Rewrite the collection's vector table densely, grouped by partition, in one transaction.

    sqlite-vec never reclaims a partly empty chunk, so a table that lost most of its vectors keeps its
    size until it is rebuilt: the vectors are copied to a temporary table, the table is dropped and
    created again, and the vectors go back partition by partition. Ids and vectors are unchanged, so
    the collection's version (and its HNSW index) stay as they are.
    """
    started = time.perf_counter()
    if not is_sqlite(database_url):
        logger.info("vector table of %r not rebuilt: the database is not SQLite", collection)
        return TableRebuild(collection=collection, vectors=0, bytes_before=None, bytes_after=None, seconds=0.0)
    copy = f"temp._rebuild_{collection}"  # the name is a validated collection name
    with session_scope(database_url, write=True) as session:
        spec = spec_of(get_collection(session, collection))
        connection = session.connection()
        before = vector_sql.size_bytes(connection, collection)
        partition = "partition_value" if spec.partition_key is not None else "NULL"
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {copy}")
        connection.exec_driver_sql(
            f"CREATE TABLE {copy} AS SELECT item_id AS id, {partition} AS part, embedding AS v "
            f"FROM {vector_sql.table_name(collection)}"
        )
        vector_sql.drop_table(connection, collection)
        vector_sql.create_table(
            connection,
            collection,
            dimension=spec.dimension,
            metric=spec.metric,
            quantization=spec.quantization,
            partitioned=spec.partition_key is not None,
        )
        copied = 0
        rows = connection.exec_driver_sql(f"SELECT id, part, v FROM {copy} ORDER BY part, id")
        for batch in rows.partitions(PRUNE_BATCH):
            payloads = np.frombuffer(b"".join(row[2] for row in batch), dtype=np.uint8).reshape(len(batch), -1)
            parts = None if spec.partition_key is None else [row[1] for row in batch]
            vector_sql.insert(connection, collection, spec.quantization, [row[0] for row in batch], parts, payloads)
            copied += len(batch)
        connection.exec_driver_sql(f"DROP TABLE {copy}")
        after = vector_sql.size_bytes(connection, collection)
    return TableRebuild(
        collection=collection,
        vectors=copied,
        bytes_before=before,
        bytes_after=after,
        seconds=time.perf_counter() - started,
    )


def vacuum(database_url: str) -> DatabaseCompaction:
    """VACUUM the database and truncate its write-ahead log (SQLite only; elsewhere a logged no-op)."""
    return _outside_transaction(database_url, ("VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"), "vacuumed")


def optimize(database_url: str) -> DatabaseCompaction:
    """Run ``PRAGMA optimize``, which refreshes the query planner's statistics where they are stale."""
    return _outside_transaction(database_url, ("PRAGMA optimize",), "optimized")


def _outside_transaction(database_url: str, statements: Sequence[str], action: str) -> DatabaseCompaction:
    if not is_sqlite(database_url):
        note = f"not {action}: {', '.join(statements)} is SQLite only"
        logger.info(note)
        return DatabaseCompaction(action="skipped", bytes_before=None, bytes_after=None, seconds=0.0, note=note)
    started = time.perf_counter()
    # VACUUM cannot run in a transaction: the driver connection is in autocommit (isolation_level None).
    raw = get_engine(database_url).raw_connection()
    try:
        cursor = raw.cursor()
        before = _file_bytes(cursor)
        for statement in statements:
            cursor.execute(statement)
            cursor.fetchall()
        after = _file_bytes(cursor)
        cursor.close()
    finally:
        raw.close()
    return DatabaseCompaction(
        action=action, bytes_before=before, bytes_after=after, seconds=time.perf_counter() - started
    )


def _file_bytes(cursor: Any) -> int:
    pages = cursor.execute("PRAGMA page_count").fetchone()[0]
    size = cursor.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(size)


# -- statistics ---------------------------------------------------------------------------------
