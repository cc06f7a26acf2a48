"""Vector collections on sqlite-vec: one ``vec0`` table per collection, partitioned by symbol.

The `embeddings` table (`models.tables.EmbeddingRecord`) is the system of record; each of its rows
shares its id with the rowid of its vector in ``vec_<collection>``. This module holds the only SQL of
the project that is not portable: sqlite-vec's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from models.base import stored_microseconds, table_of, to_microseconds
from models.bulk import execute_many
from models.tables import VECTOR_TABLE_PREFIX, CollectionRecord, EmbeddingRecord
from neuraltrade.embedding import EmbedderFingerprint
from neuraltrade.errors import DimensionMismatch, FingerprintMismatch, NeuralTradeError
from neuraltrade.memory import CollectionSpec, check_vectors

#: Vectors per sqlite-vec chunk. Each symbol (partition) allocates whole chunks, so a smaller chunk
#: wastes less space on short histories; 1,024 x 512 float32 is a 2 MiB blob.
CHUNK_SIZE = 1_024
_IDS_PER_STATEMENT = 10_000
_SQLITE_VEC_METRICS = {"cosine": "cosine", "l2": "L2", "inner_product": "L1"}
_ID_MASK = (1 << 63) - 1


class CollectionNotFound(NeuralTradeError):
    """A collection named by the caller does not exist."""


@dataclass(frozen=True)
class Neighbour:
    """One search result: the embedded observation and its distance to the query."""

    embedding_id: int
    observation_id: uuid.UUID
    symbol: str
    timestamp: datetime
    distance: float


def vector_table(name: str) -> str:
    """Return the name of the vector table of collection `name` (already validated by `CollectionSpec`)."""
    return f"{VECTOR_TABLE_PREFIX}{name}"


def embedding_id(collection_id: int, observation_id: uuid.UUID) -> int:
    """Return the stable 63-bit id of the vector of `observation_id` in collection `collection_id`.

    Derived, not allocated, so that a re-run writes the same ids and concurrent writers need no counter.
    """
    return ((observation_id.int >> 64) ^ (collection_id * 0x9E3779B97F4A7C15)) & _ID_MASK


def ensure_collection(session: Session, spec: CollectionSpec, now: datetime) -> CollectionRecord:
    """Return the collection `spec` names, creating its row and vector table if it is new.

    Raises
    ------
    FingerprintMismatch
        If a collection of that name exists with vectors of another embedder.
    """
    record = session.scalar(select(CollectionRecord).where(CollectionRecord.name == spec.name))
    if record is not None:
        if record.fingerprint_digest != spec.fingerprint.digest:
            stored = EmbedderFingerprint(**record.fingerprint)
            raise FingerprintMismatch(spec.name, stored.describe(), spec.fingerprint.describe())
        if record.dimension != spec.dimension:
            raise DimensionMismatch(spec.name, record.dimension, spec.dimension)
        return record
    record = CollectionRecord(
        name=spec.name,
        dimension=spec.dimension,
        metric=spec.metric,
        fingerprint={
            "name": spec.fingerprint.name,
            "version": spec.fingerprint.version,
            "dimension": spec.fingerprint.dimension,
            "parameters": spec.fingerprint.parameters,
        },
        fingerprint_digest=spec.fingerprint.digest,
        created_at=now,
    )
    session.add(record)
    session.flush()
    session.execute(
        text(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {vector_table(spec.name)} USING vec0("
            "embedding_id integer primary key, symbol text partition key, "
            f"embedding float[{spec.dimension}] distance_metric={_SQLITE_VEC_METRICS[spec.metric]}, "
            f"chunk_size={CHUNK_SIZE})"
        )
    )
    return record


def get_collection(session: Session, name: str) -> CollectionRecord:
    """Return the collection called `name`, or raise `CollectionNotFound`."""
    record = session.scalar(select(CollectionRecord).where(CollectionRecord.name == name))
    if record is None:
        raise CollectionNotFound(f"no vector collection is called {name!r}")
    return record


def spec_of(record: CollectionRecord) -> CollectionSpec:
    """Return the `CollectionSpec` a stored collection was created with."""
    return CollectionSpec(name=record.name, fingerprint=EmbedderFingerprint(**record.fingerprint), metric=record.metric)


def insert_vectors(
    session: Session,
    collection: CollectionRecord,
    fingerprint: EmbedderFingerprint,
    *,
    observation_ids: Sequence[uuid.UUID],
    symbols: Sequence[str],
    timestamps: Sequence[int],
    vectors: np.ndarray,
    now: datetime,
) -> list[int]:
    """Store `vectors` (one per observation) in `collection`; return their embedding ids.

    `timestamps` are the observations' times in epoch microseconds. Vectors already stored for the
    same observation are replaced (sqlite-vec refuses ``INSERT OR REPLACE``, so they are deleted first),
    which makes a re-run idempotent. Rows are written grouped by symbol, which keeps sqlite-vec's chunk
    writes local.

    Raises
    ------
    FingerprintMismatch, DimensionMismatch, InvalidVector
        If the vectors do not belong in the collection; nothing is written then.
    """
    matrix = check_vectors(spec_of(collection), fingerprint, vectors)
    if not (len(observation_ids) == len(symbols) == len(timestamps) == len(matrix)):
        raise ValueError(
            f"{len(observation_ids)} observation ids, {len(symbols)} symbols, {len(timestamps)} timestamps "
            f"and {len(matrix)} vectors do not pair up"
        )
    if len(matrix) == 0:
        return []
    ids = [embedding_id(collection.id, observation) for observation in observation_ids]
    order = sorted(range(len(ids)), key=symbols.__getitem__)
    created = to_microseconds(now)
    _delete_embeddings(session, collection, _stored_ids(session, collection.id, ids))
    digest = fingerprint.digest
    table_record = table_of(EmbeddingRecord)
    count = len(order)
    execute_many(
        session,
        insert(table_record),
        table_record,
        {
            "id": [ids[i] for i in order],
            "collection_id": [collection.id] * count,
            "observation_id": [observation_ids[i] for i in order],
            "symbol": [symbols[i] for i in order],
            "timestamp": [timestamps[i] for i in order],
            "fingerprint_digest": [digest] * count,
            "created_at": [created] * count,
        },
    )
    session.connection().exec_driver_sql(
        f"INSERT INTO {vector_table(collection.name)} (embedding_id, symbol, embedding) VALUES (?, ?, ?)",
        [(ids[i], symbols[i], matrix[i]) for i in order],
    )
    return ids


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    # SQLite binds at most 32,766 variables per statement.
    for start in range(0, len(values), _IDS_PER_STATEMENT):
        yield values[start : start + _IDS_PER_STATEMENT]


def _stored_ids(session: Session, collection_id: int, ids: Sequence[int]) -> list[int]:
    """Return which of `ids` the collection already holds."""
    query = select(EmbeddingRecord.id).where(EmbeddingRecord.collection_id == collection_id)
    return [value for chunk in _chunks(ids) for value in session.scalars(query.where(EmbeddingRecord.id.in_(chunk)))]


def _delete_embeddings(session: Session, collection: CollectionRecord, ids: Sequence[int]) -> None:
    """Delete the vectors and embedding rows `ids` of `collection`.

    Vectors go one id per statement: sqlite-vec takes ``DELETE ... WHERE embedding_id = ?`` at about
    25,000 rows/s, while ``WHERE embedding_id IN (SELECT ...)`` over 20,000 rows had not finished after
    12 minutes.
    """
    if not ids:
        return
    session.connection().exec_driver_sql(
        f"DELETE FROM {vector_table(collection.name)} WHERE embedding_id = ?", [(value,) for value in ids]
    )
    for chunk in _chunks(ids):
        session.execute(delete(EmbeddingRecord).where(EmbeddingRecord.id.in_(chunk)))


def count_vectors(session: Session, name: str) -> int:
    """Return how many vectors collection `name` holds (counted in its vector table)."""
    get_collection(session, name)
    return int(session.execute(text(f"SELECT count(*) FROM {vector_table(name)}")).scalar_one())


def count_embeddings(session: Session, name: str) -> int:
    """Return how many embedding rows collection `name` has in the system of record."""
    collection = get_collection(session, name)
    return int(session.scalar(select(func.count()).where(EmbeddingRecord.collection_id == collection.id)) or 0)


def search(
    session: Session,
    name: str,
    fingerprint: EmbedderFingerprint,
    vector: np.ndarray,
    *,
    k: int = 10,
    symbol: str | None = None,
) -> list[Neighbour]:
    """Return the `k` stored vectors nearest to `vector`, exactly, optionally within one `symbol`."""
    collection = get_collection(session, name)
    query = check_vectors(spec_of(collection), fingerprint, vector)[0]
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, was {k!r}")
    partition = " AND symbol = :symbol" if symbol is not None else ""
    rows = session.execute(
        text(
            f"SELECT embedding_id, distance FROM {vector_table(name)} "
            f"WHERE embedding MATCH :query AND k = :k{partition} ORDER BY distance"
        ),
        {"query": query.tobytes(), "k": k, "symbol": symbol},
    ).all()
    if not rows:
        return []
    distances = {int(row[0]): float(row[1]) for row in rows}
    records = session.scalars(select(EmbeddingRecord).where(EmbeddingRecord.id.in_(distances))).all()
    found = [
        Neighbour(
            embedding_id=record.id,
            observation_id=record.observation_id,
            symbol=record.symbol,
            timestamp=record.timestamp,
            distance=distances[record.id],
        )
        for record in records
    ]
    return sorted(found, key=lambda neighbour: (neighbour.distance, neighbour.embedding_id))


def delete_vectors_from(session: Session, symbol: str, since: int) -> int:
    """Delete, in every collection, the vectors and embedding rows of `symbol` at or after epoch
    microsecond `since`; return how many vectors went."""
    column = stored_microseconds(EmbeddingRecord.timestamp)
    removed = 0
    for collection in session.scalars(select(CollectionRecord)).all():
        ids = session.scalars(
            select(EmbeddingRecord.id).where(
                EmbeddingRecord.collection_id == collection.id,
                EmbeddingRecord.symbol == symbol,
                column >= since,
            )
        ).all()
        _delete_embeddings(session, collection, ids)
        removed += len(ids)
    return removed
