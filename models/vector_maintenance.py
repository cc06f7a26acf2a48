"""Upkeep of the vector memory: integrity checks, recall audits, retention, HNSW refresh and compaction.

Each function takes a database URL (or a session) and returns a plain, JSON-ready dataclass, so that
the Prefect tasks of `tasks.memory` stay one call deep. Failures of a check raise `MemoryIntegrityError`,
naming the collection and the figures that disagree.

A collection is indexed when a store opened it with an HNSW index (`collections.index_type`), when
its index file exists beside the database, or when `neuraltrade.memory.maintenance.MaintenanceConfig`'s
`hnsw_collections` names it.
Compaction is in `models.vector_compaction`, the figures of `memory stats` in `models.vector_statistics`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import memory_items
from models.ann_index import HnswConfig, HnswIndex
from models.base import stored_microseconds
from models.collections import delete_items, get_collection, index_path, version_token
from models.dialects import vector_backend_for
from models.engine import session_scope
from models.tables import CollectionRecord, MemoryItemRecord
from models.vector_index import token_matches
from models.vector_store import VectorDB
from neuraltrade.canonical import format_timestamp
from neuraltrade.errors import ConfigError, IndexFileError, MemoryIntegrityError, RecallBelowThreshold
from neuraltrade.memory.collection import Query, distance_matrix
from neuraltrade.memory.maintenance import MaintenanceConfig
from neuraltrade.timestamps import to_microseconds

logger = logging.getLogger(__name__)

#: The `run_summaries.kind` of a maintenance run; its details hold the figures read back here.
RUN_KIND = "maintain_index"
#: Items deleted per write transaction when pruning, so that other writers get the lock in between.
PRUNE_BATCH = 20_000
#: Maintenance runs searched, newest first, for the last vacuum and the last recall of a collection.
RUNS_LOOKED_BACK = 200
# Distances of the k-th true neighbour and of a returned one within this are a tie, not a miss:
# sqlite-vec and hnswlib measure in float32, the audit in float64.
_TIE_TOLERANCE = 1e-5


@dataclass(frozen=True, kw_only=True)
class IntegrityReport:
    """The figures an integrity check compared; `problems` is empty when they agree."""

    collection: str
    items: int
    vectors: int
    fingerprints: list[str]
    non_finite: int
    index_status: str
    index_size: int | None
    seconds: float
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class PruneReport:
    """What retention deleted: items older than `cutoff` (None: retention is off)."""

    collection: str
    cutoff: str | None
    deleted: int
    remaining: int


@dataclass(frozen=True, kw_only=True)
class IndexRefresh:
    """What the HNSW refresh found (`status_before`) and did: ``"merged"`` (the segment went into the
    graph), ``"rebuilt"``, ``"skipped"`` or ``"none"``."""

    collection: str
    status_before: str
    action: str
    size: int | None
    seconds: float


@dataclass(frozen=True, kw_only=True)
class RecallReport:
    """Recall@k of one collection's search path over `queries` sampled items, and when it was measured."""

    collection: str
    items: int
    recall: float
    k: int
    queries: int
    path: str
    seconds: float
    measured_at: str


# -- which collections, which index -------------------------------------------------------------


def collection_names(database_url: str) -> list[str]:
    """Return the name of every vector collection, sorted."""
    with session_scope(database_url) as session:
        return list(session.scalars(select(CollectionRecord.name).order_by(CollectionRecord.name)))


def is_indexed(database_url: str, collection: str, config: MaintenanceConfig) -> bool:
    """Return whether `collection` keeps an HNSW index: it was opened with one, its file exists, or
    `config` asks for one."""
    path = index_path(database_url, collection)
    with session_scope(database_url) as session:
        declared = get_collection(session, collection).index_type == "hnsw"
    return declared or collection in config.hnsw_collections or (path is not None and path.exists())


def saved_index_status(database_url: str, collection: str) -> str:
    """Return the status of the saved index file without loading it: ``"none"`` (no file), ``"fresh"``,
    ``"behind"`` or ``"unusable"`` (unreadable, or written for another collection or embedder)."""
    path = index_path(database_url, collection)
    if path is None or not path.exists():
        return "none"
    sidecar = _sidecar(path)
    if sidecar is None:
        return "unusable"
    state = sidecar.get("state", {})
    with session_scope(database_url) as session:
        record = get_collection(session, collection)
        if (state.get("collection_id"), state.get("fingerprint")) != (record.id, record.fingerprint_digest):
            return "unusable"
        if not _same_history(session, record, state):
            return "unusable"
        return "fresh" if state.get("version") == record.version else "behind"


def _same_history(session: Session, record: CollectionRecord, state: dict[str, Any]) -> bool:
    """Whether a graph file's sealed version is one this database reached, by the token it recorded
    (`models.vector_index.same_history`; a file without a token is judged by its version alone)."""
    sealed = state.get("version")
    if not isinstance(sealed, int) or sealed > record.version:
        return False
    return token_matches(state, lambda version: version_token(session, record.id, version))


def saved_index_subspace_rank(database_url: str, collection: str) -> int | None:
    """Return the rank of the span the saved index's graph searches in (`models.ann_index`), None when
    it searches whole vectors or there is no readable file."""
    path = index_path(database_url, collection)
    sidecar = None if path is None or not path.exists() else _sidecar(path)
    subspace = None if sidecar is None else sidecar.get("subspace")
    rank = subspace.get("rank") if isinstance(subspace, dict) else None
    return rank if isinstance(rank, int) else None


def _sidecar(path: Path) -> dict[str, Any] | None:
    # `HnswIndex.save` describes the index in JSON beside it, at path + ".json".
    try:
        loaded = json.loads(path.with_suffix(path.suffix + ".json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return loaded if isinstance(loaded, dict) else None


# -- integrity ----------------------------------------------------------------------------------


def inspect_integrity(database_url: str, collection: str) -> IntegrityReport:
    """Compare what the collection's stores hold; every disagreement is one entry of `problems`.

    Checked: vector rows = item rows (and, where the scan sees the vector table's ids, the same ids),
    one fingerprint (the collection's), no NaN or infinity in the full-precision vectors, and, when the
    saved HNSW index reflects the current version, that it holds every item and nothing else.
    """
    started = time.perf_counter()
    problems: list[str] = []
    db = VectorDB.open(collection, database_url=database_url)
    with session_scope(database_url) as session:
        record = get_collection(session, collection)
        version = record.version
        connection = session.connection()
        backend = vector_backend_for(session)
        items = memory_items.count(session, record.id)
        vectors = backend.count(connection, collection)
        fingerprints = sorted(
            session.scalars(
                select(MemoryItemRecord.fingerprint_digest)
                .where(MemoryItemRecord.collection_id == record.id)
                .distinct()
            )
        )
        item_ids = np.asarray(
            session.scalars(select(MemoryItemRecord.id).where(MemoryItemRecord.collection_id == record.id)).all(),
            dtype=np.int64,
        )
        vector_ids = backend.ids(connection, collection)
        non_finite = scanned = 0
        for ids, matrix in db.full_vector_batches(session):
            non_finite += int((~np.isfinite(matrix).all(axis=1)).sum())
            scanned += len(ids)
    without_vector = np.setdiff1d(item_ids, vector_ids).size
    # A vector whose item row is gone has no id to show: `ids` leaves it out, so count it from the total.
    without_item = vectors - len(vector_ids) + np.setdiff1d(vector_ids, item_ids).size
    if vectors != items or without_vector or without_item:
        problems.append(
            f"{vectors:,} vectors in {backend.storage_name(collection)} but {items:,} item rows "
            f"({without_vector:,} items without a vector, {without_item:,} vectors without an item)"
        )
    if scanned != items:
        problems.append(f"{scanned:,} full-precision vectors for {items:,} items")
    if any(value != record.fingerprint_digest for value in fingerprints):
        shown = ", ".join(value[:12] for value in fingerprints)
        problems.append(
            f"items carry {len(fingerprints)} fingerprints ({shown}); the collection's is "
            f"{record.fingerprint_digest[:12]}"
        )
    if db.spec.fingerprint.digest != record.fingerprint_digest:
        problems.append(f"the stored fingerprint does not hash to its digest {record.fingerprint_digest[:12]}")
    if non_finite:
        problems.append(f"{non_finite:,} stored vectors hold NaN or infinity")
    index_status, index_size = _check_saved_index(database_url, collection, record, version, item_ids, problems)
    return IntegrityReport(
        collection=collection,
        items=items,
        vectors=vectors,
        fingerprints=fingerprints,
        non_finite=non_finite,
        index_status=index_status,
        index_size=index_size,
        seconds=time.perf_counter() - started,
        problems=problems,
    )


def _check_saved_index(
    database_url: str,
    name: str,
    record: CollectionRecord,
    version: int,
    item_ids: np.ndarray,
    problems: list[str],
) -> tuple[str, int | None]:
    path = index_path(database_url, name)
    if path is None or not path.exists():
        return "none", None
    try:
        index, state = HnswIndex.load(path)
    except IndexFileError as error:
        # The store ignores an unusable file and searches exactly; the refresh step replaces it.
        logger.warning("HNSW index of %r is unusable and will be rebuilt: %s", name, error)
        return "unusable", None
    if (state.get("collection_id"), state.get("fingerprint")) != (record.id, record.fingerprint_digest):
        return "unusable", None
    with session_scope(database_url) as session:
        if not _same_history(session, record, state):
            return "unusable", None
    if state.get("version") != version:
        return "behind", len(index)
    absent = sum(1 for number in item_ids.tolist() if number not in index)
    if len(index) != len(item_ids) or absent:
        problems.append(
            f"its fresh HNSW index {path} holds {len(index):,} vectors for {len(item_ids):,} items "
            f"({absent:,} items missing from it); delete the file and maintain again to rebuild it"
        )
    return "fresh", len(index)


def check_integrity(database_url: str, collection: str) -> IntegrityReport:
    """Return the collection's `IntegrityReport`, or raise `MemoryIntegrityError` naming every problem."""
    report = inspect_integrity(database_url, collection)
    if report.problems:
        raise MemoryIntegrityError(collection, report.problems)
    return report


# -- retention ----------------------------------------------------------------------------------


def prune(database_url: str, collection: str, retention_days: int | None, now: datetime) -> PruneReport:
    """Delete the collection's items whose timestamp is before `now` minus `retention_days`.

    Vectors go through the vector backend (`VectorBackend.delete`), in transactions of `PRUNE_BATCH` items.
    None keeps everything. A second call with the same arguments deletes nothing.
    """
    cutoff = None if retention_days is None else to_microseconds(now - timedelta(days=retention_days))
    deleted = 0
    while cutoff is not None:
        with session_scope(database_url, write=True) as session:
            record = get_collection(session, collection)
            ids = session.scalars(
                select(MemoryItemRecord.id)
                .where(
                    MemoryItemRecord.collection_id == record.id,
                    stored_microseconds(MemoryItemRecord.timestamp) < cutoff,
                )
                .limit(PRUNE_BATCH)
            ).all()
            deleted += delete_items(session, record, list(ids))
        if len(ids) < PRUNE_BATCH:
            break
    with session_scope(database_url) as session:
        remaining = memory_items.count(session, get_collection(session, collection).id)
    return PruneReport(
        collection=collection,
        cutoff=None if retention_days is None else format_timestamp(now - timedelta(days=retention_days)),
        deleted=deleted,
        remaining=remaining,
    )


# -- the HNSW index -----------------------------------------------------------------------------


def refresh_index(database_url: str, collection: str, config: MaintenanceConfig) -> IndexRefresh:
    """Bring the collection's HNSW graph up to date: merge what was written since it was sealed (and drop
    what was deleted) when it is behind, build it when it is missing, skip it when fresh.

    A rebuild keeps the parameters of the saved index (default `HnswConfig` for a new one) and writes
    the file atomically beside the database. Collections without an index are left alone.
    """
    started = time.perf_counter()
    path = index_path(database_url, collection)
    if path is None or not is_indexed(database_url, collection, config):
        reason = "no index" if path is not None else "no database file to keep an index beside"
        return IndexRefresh(collection=collection, status_before=reason, action="none", size=None, seconds=0.0)
    sidecar = _sidecar(path) or {}
    try:
        hnsw = HnswConfig(**sidecar["config"]) if "config" in sidecar else HnswConfig()
    except (TypeError, ConfigError):
        hnsw = HnswConfig()
    db = VectorDB.open(collection, database_url=database_url, index_type="hnsw", hnsw=hnsw)
    status = db.index_status
    if status == "fresh" and path.exists():
        db.close()
        return IndexRefresh(
            collection=collection,
            status_before=status,
            action="skipped",
            size=None,
            seconds=time.perf_counter() - started,
        )
    with session_scope(database_url) as session:
        record = get_collection(session, collection)
        before = (record.version, memory_items.count(session, record.id))
    # A graph that is behind takes only what was written since it was sealed; without one it is built.
    action = "merged" if status == "behind" and path.exists() else "rebuilt"
    if action == "merged":
        db.seal()
        size = db.index_size or 0
    else:
        size = db.rebuild_index()
    with session_scope(database_url) as session:
        record = get_collection(session, collection)
        after = (record.version, memory_items.count(session, record.id))
    if before == after and size != after[1]:
        raise MemoryIntegrityError(
            collection, [f"its {action} HNSW index holds {size:,} vectors for {after[1]:,} items"]
        )
    db.close()
    return IndexRefresh(
        collection=collection, status_before=status, action=action, size=size, seconds=time.perf_counter() - started
    )


# -- recall -------------------------------------------------------------------------------------


def audit_recall(database_url: str, collection: str, config: MaintenanceConfig, now: datetime) -> RecallReport:
    """Measure recall@k of the collection's search path against brute force over its full vectors.

    Queries are a seeded sample of stored vectors; the path is the HNSW index when it is fresh, else
    the quantized path (int8, binary) or the exact one. A returned item counts as found when it is
    among the true k nearest or as near as the k-th of them (ties are not misses).
    """
    started = time.perf_counter()
    indexed = is_indexed(database_url, collection, config)
    db = VectorDB.open(
        collection,
        database_url=database_url,
        index_type="hnsw" if indexed else "exact",
        oversample=config.oversample,
    )
    status = db.index_status
    path = "hnsw" if status == "fresh" else (db.spec.quantization if db.spec.quantization != "none" else "exact")
    with session_scope(database_url) as session:
        ids = session.scalars(
            select(MemoryItemRecord.id)
            .where(MemoryItemRecord.collection_id == db.collection_id)
            .order_by(MemoryItemRecord.id)
        ).all()
        rng = np.random.default_rng(config.seed)
        chosen = sorted(rng.choice(len(ids), size=min(config.recall_samples, len(ids)), replace=False).tolist())
        queries = _vectors_of(db, session, [ids[position] for position in chosen])
        k = max(1, min(config.k, len(ids)))
        truth = _brute_force(db, session, queries, k)
    found = 0
    for query, (true_ids, true_distances) in zip(queries, truth, strict=True):
        results = db.search(Query(query, k=k))
        kth = float(true_distances[-1])
        tolerance = _TIE_TOLERANCE * max(1.0, abs(kth))
        members = set(true_ids.tolist())
        found += sum(
            1
            for result in results
            if memory_items.item_id(db.collection_id, result.id) in members or result.distance <= kth + tolerance
        )
    db.close()
    recall = 1.0 if len(queries) == 0 else found / (len(queries) * k)
    return RecallReport(
        collection=collection,
        items=len(ids),
        recall=recall,
        k=k,
        queries=len(queries),
        path=path,
        seconds=time.perf_counter() - started,
        measured_at=format_timestamp(now),
    )


def check_recall(report: RecallReport, threshold: float) -> None:
    """Raise `RecallBelowThreshold` if `report` measured less than `threshold`."""
    if report.recall < threshold:
        raise RecallBelowThreshold(report.collection, report.recall, threshold, report.k)


def _vectors_of(db: VectorDB, session: Session, ids: list[int]) -> np.ndarray:
    """Return the full-precision vectors of items `ids`, in the order of `ids` (missing ones left out)."""
    found, matrix = memory_items.full_vectors(session, db.spec, ids)
    row_of = {int(number): row for row, number in enumerate(found.tolist())}
    return matrix[[row_of[number] for number in ids if number in row_of]].reshape(-1, db.spec.dimension)


def _brute_force(db: VectorDB, session: Session, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return each query's k nearest (ids, distances), keeping a running top-k over one stream of batches."""
    best = [(np.empty(0, dtype=np.int64), np.empty(0)) for _ in queries]
    for ids, matrix in db.full_vector_batches(session):
        values = distance_matrix(db.spec.metric, queries, matrix)
        for position, row in enumerate(values):
            nearest = np.argpartition(row, k - 1)[:k] if len(row) > k else np.arange(len(row))
            kept_ids, kept = best[position]
            merged_ids = np.concatenate([kept_ids, ids[nearest]])
            merged = np.concatenate([kept, row[nearest]])
            order = np.lexsort((merged_ids, merged))[:k]
            best[position] = (merged_ids[order], merged[order])
    return best
