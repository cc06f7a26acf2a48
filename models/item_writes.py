"""One write of a vector collection's items: new items appended, stored ones replaced in place.

`VectorDB` validates a write and hands it here as columns in write order (grouped by partition). Items
not yet stored get the next item-row sequences and their vectors are appended under them. A stored item
that stays in its partition keeps its row and its vector's slot: the row is updated and the vector
replaced where it lies, so a re-run that writes the same items again costs an update, not a delete and
an insert of each (20,874 replacing upserts/s before, measured in docs/benchmarks.md). A stored item
that moves to another partition is removed and written anew, since its vector moves to another
partition's chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from models import memory_items
from models.collections import remove_items
from models.vector_backend import VectorBackend
from neuraltrade.memory.collection import CollectionSpec

#: Indexed fields of an item row that a replacement usually leaves as they were.
_INDEXED_FIELDS = frozenset({"timestamp", "observation_id"})


def stored_in_place(
    stored: Mapping[int, memory_items.StoredRow], ids: Sequence[int], partitions: Sequence[str] | None
) -> list[bool]:
    """Which of `ids` (with their new `partitions`) are stored and stay in their partition."""
    kept = []
    for position, number in enumerate(ids):
        row = stored.get(number)
        partition = None if partitions is None else partitions[position]
        kept.append(row is not None and row.partition == partition)
    return kept


def store_items(
    session: Session,
    backend: VectorBackend,
    spec: CollectionSpec,
    columns: dict[str, list[Any]],
    payloads: np.ndarray,
    full: np.ndarray | None,
    stored: Mapping[int, memory_items.StoredRow],
) -> None:
    """Write the item rows `columns` (``memory_items`` columns but ``sequence``, in write order) with
    their searched vectors `payloads` and full vectors `full` (None when they are the payloads); `stored`
    holds the rows already stored under any of their ids."""
    ids: list[int] = columns["id"]
    partitions: list[str] | None = None if spec.partition_key is None else columns["partition"]
    kept = stored_in_place(stored, ids, partitions)
    moved = [number for number, stays in zip(ids, kept, strict=True) if number in stored and not stays]
    if moved:
        remove_items(session, spec.name, moved)
    fresh = [position for position, stays in enumerate(kept) if not stays]
    in_place = [position for position, stays in enumerate(kept) if stays]
    connection = session.connection()
    if fresh:
        first = memory_items.next_sequence(session)
        sequences = list(range(first, first + len(fresh)))
        rows = _take(columns, fresh)
        memory_items.insert_rows(session, {"sequence": sequences, **rows})
        backend.insert(
            connection,
            spec,
            rows["id"],
            None if partitions is None else rows["partition"],
            _rows(payloads, fresh),
            None if full is None else _rows(full, fresh),
            sequences=sequences,
        )
    if in_place:
        taken = _take(columns, in_place)
        rows = {**taken, "sequence": [stored[number].sequence for number in taken["id"]]}
        _update_rows(session, rows, stored)
        backend.replace(
            connection,
            spec,
            None if partitions is None else rows["partition"],
            _rows(payloads, in_place),
            None if full is None else _rows(full, in_place),
            sequences=rows["sequence"],
        )


def _update_rows(session: Session, rows: dict[str, list[Any]], stored: Mapping[int, memory_items.StoredRow]) -> None:
    """Update the item rows `rows`; those whose timestamp and observation are unchanged (a re-run's)
    leave both alone, which spares the update their index entries."""
    unchanged = [
        stored[number].timestamp == moment and stored[number].observation_id == observation
        for number, moment, observation in zip(rows["id"], rows["timestamp"], rows["observation_id"], strict=True)
    ]
    same = [position for position, flag in enumerate(unchanged) if flag]
    changed = [position for position, flag in enumerate(unchanged) if not flag]
    if same:
        kept = {name: values for name, values in _take(rows, same).items() if name not in _INDEXED_FIELDS}
        memory_items.update_rows(session, kept)
    if changed:
        memory_items.update_rows(session, _take(rows, changed))


def _take(columns: dict[str, list[Any]], positions: list[int]) -> dict[str, list[Any]]:
    """The `positions` (ascending) of every column; the columns themselves when that is all of them."""
    if len(positions) == len(next(iter(columns.values()))):
        return columns
    return {name: [values[position] for position in positions] for name, values in columns.items()}


def _rows(matrix: np.ndarray, positions: list[int]) -> np.ndarray:
    """The `positions` (ascending) of `matrix`; the matrix itself, not a copy, when that is all of them
    (every write of new items: 20 MB a batch of 10,000 x 512)."""
    return matrix if len(positions) == len(matrix) else matrix[positions]
