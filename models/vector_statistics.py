"""What `neuraltrade memory stats` shows: each collection's sizes, index status and last recall."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from models import memory_items
from models.collections import get_collection, index_path
from models.dialects import vector_backend_for
from models.engine import session_scope
from models.tables import MemoryItemRecord, RunSummary
from models.vector_maintenance import (
    RUN_KIND,
    RUNS_LOOKED_BACK,
    collection_names,
    saved_index_status,
    saved_index_subspace_rank,
)
from neuraltrade.canonical import format_timestamp


@dataclass(frozen=True, kw_only=True)
class CollectionStatistics:
    """A collection's settings and sizes in bytes, and the status of its saved index."""

    collection: str
    items: int
    vectors: int
    dimension: int
    metric: str
    quantization: str
    partition_key: str | None
    partitions: int
    vector_bytes: int | None
    item_bytes: int
    full_vector_bytes: int
    index_bytes: int | None
    index_status: str
    #: The rank of the span the saved graph searches in (None: whole vectors, or no graph).
    index_subspace_rank: int | None = None


def collection_statistics(database_url: str) -> list[CollectionStatistics]:
    """Return the size and settings of every collection, and the status of its saved index."""
    found = []
    for name in collection_names(database_url):
        with session_scope(database_url) as session:
            record = get_collection(session, name)
            connection = session.connection()
            vectors = vector_backend_for(session)
            column = MemoryItemRecord.collection_id == record.id
            partitions = session.scalar(select(func.count(MemoryItemRecord.partition.distinct())).where(column))
            # Bytes of the key and of the metadata's JSON text (octet_length: SQLite 3.43+ and PostgreSQL).
            payload = func.octet_length(MemoryItemRecord.key) + func.octet_length(
                cast(MemoryItemRecord.metadata_, Text)
            )
            item_bytes = session.scalar(select(func.coalesce(func.sum(payload), 0)).where(column))
            stored_vectors = vectors.count(connection, name)
            # Every vector is stored once, beside its searched form (which, unquantized, it is): float32 each.
            full_vector_bytes = stored_vectors * record.dimension * 4
            statistics = CollectionStatistics(
                collection=name,
                items=memory_items.count(session, record.id),
                vectors=stored_vectors,
                dimension=record.dimension,
                metric=record.metric,
                quantization=record.quantization,
                partition_key=record.partition_key,
                partitions=int(partitions or 0),
                vector_bytes=vectors.size_bytes(connection, name),
                item_bytes=int(item_bytes or 0),
                full_vector_bytes=int(full_vector_bytes or 0),
                index_bytes=_index_bytes(database_url, name),
                index_status="",
                index_subspace_rank=saved_index_subspace_rank(database_url, name),
            )
        found.append(_with_status(statistics, saved_index_status(database_url, name)))
    return found


def _with_status(statistics: CollectionStatistics, status: str) -> CollectionStatistics:
    return CollectionStatistics(**{**statistics.__dict__, "index_status": status})


def _index_bytes(database_url: str, collection: str) -> int | None:
    path = index_path(database_url, collection)
    if path is None or not path.exists():
        return None
    sidecar = path.with_suffix(path.suffix + ".json")
    return path.stat().st_size + (sidecar.stat().st_size if sidecar.exists() else 0)


def last_recalls(session: Session) -> dict[str, dict[str, Any]]:
    """Return, per collection, the last recall a maintenance run measured, with when and by which run."""
    found: dict[str, dict[str, Any]] = {}
    for run in session.scalars(_RECENT_RUNS):
        for name, figures in ((run.details or {}).get("recall") or {}).items():
            if name not in found and isinstance(figures, dict):
                found[name] = {**figures, "run_status": run.status}
    return found


def last_cache_hit_rate(session: Session) -> dict[str, Any] | None:
    """Return the L1 cache figures of the last run of any kind that recorded them, or None.

    A run that searched through a `SessionMemory` records ``details["cache"]`` (hits, misses, hit_rate);
    the cache lives in that run's process, so nothing else can report it afterwards.
    """
    query = select(RunSummary).order_by(RunSummary.started_at.desc()).limit(RUNS_LOOKED_BACK)
    for run in session.scalars(query):
        cache = (run.details or {}).get("cache")
        if isinstance(cache, dict) and isinstance(cache.get("hit_rate"), int | float):
            return {**cache, "kind": run.kind, "started_at": format_timestamp(run.started_at)}
    return None


_RECENT_RUNS = (
    select(RunSummary).where(RunSummary.kind == RUN_KIND).order_by(RunSummary.started_at.desc()).limit(RUNS_LOOKED_BACK)
)


def recent_details(session: Session) -> list[dict[str, Any]]:
    return [run.details or {} for run in session.scalars(_RECENT_RUNS)]
