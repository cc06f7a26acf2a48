"""Load a point-in-time `MemorySnapshot` of a stored vector collection (or one of its partitions).

One read transaction, one statement for the items and one for their full-precision vectors: the
snapshot is what the collection held at one moment, and every later search bounds itself with its own ``as_of``.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from models import memory_items
from models.base import stored_microseconds
from models.collections import get_collection, spec_of
from models.engine import session_scope
from models.tables import MemoryItemRecord
from neuraltrade.errors import ConfigError, StorageError
from neuraltrade.memory.snapshot import MemorySnapshot


def snapshot(database_url: str, collection: str, partition: str | None = None) -> MemorySnapshot:
    """Return the items of `collection` in `partition` (all of them when None), searchable in memory.

    The snapshot answers ``search(Query)`` as ``VectorDB.search`` with ``exact=True`` does, from memory;
    items written after it was taken are not in it, and a partition's snapshot knows no other partition
    (a query filtered on another symbol finds nothing).

    Raises
    ------
    CollectionNotFound
        If no collection is called `collection`.
    ConfigError
        If a partition is named and the collection has no partition key.
    StorageError
        If a stored vector is not of the collection's dimension.
    """
    with session_scope(database_url) as session:
        record = get_collection(session, collection)
        spec = spec_of(record)
        if partition is not None and spec.partition_key is None:
            raise ConfigError(f"collection {collection!r} has no partition key, was asked for partition {partition!r}")
        statement = select(
            MemoryItemRecord.id,
            MemoryItemRecord.key,
            MemoryItemRecord.metadata_,
            stored_microseconds(MemoryItemRecord.timestamp),
        ).where(MemoryItemRecord.collection_id == record.id)
        if partition is not None:
            statement = statement.where(MemoryItemRecord.partition == partition)
        items = session.execute(statement).all()
        found, matrix = memory_items.full_vectors(session, spec, [row[0] for row in items])
        version = int(record.version)
    row_of = {int(number): position for position, number in enumerate(found.tolist())}
    missing = [row[1] for row in items if int(row[0]) not in row_of]
    if missing:
        raise StorageError(
            f"{len(missing)} item(s) of collection {collection!r} have no stored vector, the first {missing[0]!r}"
        )
    rows = items
    vectors = matrix[[row_of[int(row[0])] for row in items]].reshape(len(items), spec.dimension)
    return MemorySnapshot(
        keys=[row[1] for row in rows],
        vectors=vectors,
        timestamps=np.fromiter((row[3] for row in rows), dtype=np.int64, count=len(rows)),
        metadata=[row[2] for row in rows],
        metric=spec.metric,
        ids=np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
        spec=spec,
        partition=partition,
        version=version,
    )
