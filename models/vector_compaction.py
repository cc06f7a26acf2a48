"""Compaction of the vector memory: dense rebuilds of vector storage, VACUUM and ``PRAGMA optimize``.

A vector backend may keep space it no longer needs (sqlite-vec frees a chunk once it is wholly empty,
but never compacts partly empty ones); a rebuild rewrites a collection's storage densely. VACUUM runs
when it is due (weekly by default, or when free pages pass a ratio), outside any transaction. Each
database says through its dialect (`models.dialects`) whether and how it is compacted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from models.collections import get_collection, spec_of
from models.dialects import DialectComponents, dialect_for, vector_backend_for
from models.engine import get_engine, session_scope
from models.vector_statistics import recent_details
from neuraltrade.canonical import format_timestamp, parse_timestamp
from neuraltrade.memory.maintenance import MaintenanceConfig

#: Vectors moved through memory at a time when a collection's storage is rewritten.
REBUILD_BATCH = 20_000

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
    compacted (not SQLite).
    """
    dialect = dialect_for(database_url)
    if not dialect.compactable:
        return VacuumPlan(due=False, reason="not SQLite", last_vacuum=None, free_page_ratio=None)
    with session_scope(database_url) as session:
        last = last_vacuum(session)
        ratio = dialect.free_page_ratio(session.connection())
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
    """Rewrite the collection's vector storage densely, grouped by partition, in one transaction.

    sqlite-vec never reclaims a partly empty chunk, so a table that lost most of its vectors keeps its
    size until it is rebuilt (`VectorBackend.compact`); PostgreSQL reuses the space of deleted rows, and
    a rebuild gives it back to the file system. Ids and vectors are unchanged, so the
    collection's version (and its HNSW index) stay as they are.
    """
    started = time.perf_counter()
    with session_scope(database_url, write=True) as session:
        spec = spec_of(get_collection(session, collection))
        vectors = vector_backend_for(session)
        connection = session.connection()
        before = vectors.size_bytes(connection, collection)
        copied = vectors.compact(connection, spec, REBUILD_BATCH)
        after = vectors.size_bytes(connection, collection)
    return TableRebuild(
        collection=collection,
        vectors=copied,
        bytes_before=before,
        bytes_after=after,
        seconds=time.perf_counter() - started,
    )


def vacuum(database_url: str) -> DatabaseCompaction:
    """VACUUM the database and truncate its write-ahead log (SQLite only; elsewhere a logged no-op)."""
    return _compact(database_url, lambda dialect, engine: dialect.vacuum(engine), "vacuumed")


def optimize(database_url: str) -> DatabaseCompaction:
    """Run ``PRAGMA optimize``, which refreshes the query planner's statistics where they are stale."""
    return _compact(database_url, lambda dialect, engine: dialect.optimize(engine), "optimized")


def _compact(
    database_url: str, step: Callable[[DialectComponents, Engine], tuple[int, int]], action: str
) -> DatabaseCompaction:
    dialect = dialect_for(database_url)
    if not dialect.compactable:
        note = f"not {action}: a {dialect.name} database is not compacted here (SQLite only)"
        logger.info(note)
        return DatabaseCompaction(action="skipped", bytes_before=None, bytes_after=None, seconds=0.0, note=note)
    started = time.perf_counter()
    before, after = step(dialect, get_engine(database_url))
    return DatabaseCompaction(
        action=action, bytes_before=before, bytes_after=after, seconds=time.perf_counter() - started
    )
