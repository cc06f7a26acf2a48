"""The unsealed segment: the items written since a graph was sealed, held in memory and scanned exactly.

Every graph search (the collection's main graph, or a partition's) merges its answer with an exact scan
of its segment (`models.vector_index`, `models.partition_index`). The scan reads every vector of the
segment for every query: at a million items with 10,000 unsealed, 10,000 x 512 float32 is 20 MB, about
0.6 ms a query. When the graph holds coordinates in its vectors' span (`neuraltrade.memory.subspace`) and
every vector of the segment lies in that span too, the segment holds its rows' coordinates there and
scans those instead: the same distances, reading a fifth of the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from neuraltrade.memory.collection import distance_metric
from neuraltrade.memory.subspace import Subspace

#: Reads the vectors of ids: (the ids found, their float32 matrix).
VectorReader = Callable[[Sequence[int]], tuple[np.ndarray, np.ndarray]]
#: The written version of every item written after a version, by id.
WrittenSince = Callable[[int], dict[int, int]]
#: How many items were written after a version and up to another: (after, through) -> count.
CountSince = Callable[[int, int], int]


@dataclass(frozen=True)
class Segment:
    """The unsealed items as of collection `version`: ids, written versions and full vectors."""

    version: int
    ids: np.ndarray
    written: dict[int, int]
    matrix: np.ndarray
    #: Unit rows for the angular metrics (cosine), so a search is one matrix-vector product.
    unit: np.ndarray | None
    #: The span whose `coordinates` the segment scans, or None (it scans whole rows).
    subspace: Subspace | None = None
    #: The coordinates in `subspace` of the searched rows (`unit` for angular metrics, else `matrix`).
    coordinates: np.ndarray | None = None
    #: The segment holds the items written after this version (its graph's sealed version).
    base: int = -1
    #: The buffers its arrays are the first rows of, by field name (`_joined`).
    rooms: dict[str, _Room] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.ids)


class _Room:
    """A buffer whose first `taken` rows are a segment's array, with room for more after them.

    A refresh that keeps every row and adds a few writes the new rows into the room, so the segment's
    arrays are not copied after each write (at 4,000 unsealed 128-d items the copies cost 1.4 ms of a
    7 ms refresh). The older segment's arrays are views of the rows before and are never written again:
    only the segment holding all `taken` rows may add to the buffer.
    """

    __slots__ = ("buffer", "taken")

    def __init__(self, buffer: np.ndarray, taken: int) -> None:
        self.buffer = buffer
        self.taken = taken


#: The first buffer of a segment holds this many rows; a full one is replaced by one twice the size.
FIRST_ROOM = 1_024


def _joined(
    name: str, old: Segment | None, keep_rows: np.ndarray, fresh: np.ndarray, rooms: dict[str, _Room]
) -> np.ndarray:
    """The `keep_rows` of `old`'s array `name` followed by `fresh`, written into `old`'s room for it when
    every row is kept and the room is large enough, else copied into a new room (entered in `rooms`)."""
    held: np.ndarray | None = None if old is None else getattr(old, name)
    room = None if old is None else old.rooms.get(name)
    if held is None or len(held) == 0:
        rows = fresh
    elif room is not None and len(keep_rows) == len(held) == room.taken and room.taken + len(fresh) <= len(room.buffer):
        room.buffer[room.taken : room.taken + len(fresh)] = fresh
        room.taken += len(fresh)
        rooms[name] = room
        return room.buffer[: room.taken]
    else:
        rows = np.concatenate([held[keep_rows], fresh])
    buffer = np.empty((max(FIRST_ROOM, 2 * len(rows)), *rows.shape[1:]), dtype=rows.dtype)
    buffer[: len(rows)] = rows
    rooms[name] = _Room(buffer, len(rows))
    return buffer[: len(rows)]


def scan_segment(segment: Segment, vector: np.ndarray, k: int, metric: str) -> list[tuple[int, float]]:
    """The `k` nearest items of `segment`, measured exactly as the store measures."""
    query = np.asarray(vector, dtype=np.float32)
    # In the span, u·q = (Bu)·(Bq) exactly for u in it, whatever q: the same products from 112 numbers.
    searched, probe = segment.matrix, query
    if segment.coordinates is not None and segment.subspace is not None:
        searched, probe = segment.coordinates, segment.subspace.project(query.reshape(1, -1))[0]
    elif segment.unit is not None:
        searched = segment.unit
    if segment.unit is not None:
        norm = float(np.linalg.norm(query))
        values = 1.0 - (searched @ (probe / norm)).astype(np.float64) if norm > 0 else np.ones(len(segment))
    elif metric == "inner_product":
        values = 1.0 - (searched @ probe).astype(np.float64)
    else:
        values = np.sqrt(np.maximum(np.einsum("ij,ij->i", segment.matrix - query, segment.matrix - query), 0.0))
    count = min(k, len(values))
    nearest = np.argpartition(values, count - 1)[:count] if len(values) > count else np.arange(len(values))
    return [(int(segment.ids[i]), float(values[i])) for i in nearest]


def current_segment(
    old: Segment | None,
    *,
    base: int,
    version: int,
    written_since: WrittenSince,
    count_since: CountSince,
    vectors_of: VectorReader,
    dimension: int,
    metric: str,
    subspace: Subspace | None = None,
    limit: int,
) -> Segment | None:
    """The segment of the items written after version `base`, at collection `version`, from `old`; None
    when it would hold more than `limit` items (the caller then searches exactly).

    When `old` starts at the same `base`, only what was written after `old` is read: a refresh after a
    write of ten items reads ten ids and ten vectors, not the whole segment (at 5,000 unsealed items
    the whole read cost 6 ms, paid by every searching process after every write). A delete cannot be
    seen that way, so the count of items written after `base` is checked against what the refresh
    expects; on any difference the whole segment is read again. The count stops at the newest version
    the listing saw: a write that lands between the two reads is not taken for a difference (with eight
    searching processes on two cores it did, and one refresh in three read everything).
    """
    if old is not None and old.base == base:
        changed = written_since(old.version)
        added = sum(1 for number in changed if number not in old.written)
        # A row of `old` written after its version is listed again in `changed` unless it was deleted.
        through = max([old.version, *changed.values()])
        expected = len(old.written) + added
        if expected <= limit and count_since(base, through) == expected:
            return _extended_segment(old, changed, version, vectors_of, metric=metric, subspace=subspace)
    written = written_since(base)
    if len(written) > limit:
        return None
    return refreshed_segment(
        old, written, version, vectors_of, base=base, dimension=dimension, metric=metric, subspace=subspace
    )


def refreshed_segment(
    old: Segment | None,
    written: dict[int, int],
    version: int,
    vectors_of: VectorReader,
    *,
    base: int = -1,
    dimension: int,
    metric: str,
    subspace: Subspace | None = None,
) -> Segment:
    """The segment of `written` (written version by id) at collection `version`, reusing the vectors of
    `old` whose written version is unchanged and reading the others with `vectors_of`. With `subspace`
    (the graph's), it holds its rows' coordinates there when every row lies in it."""
    keep_rows: list[int] = []
    kept_ids: set[int] = set()
    if old is not None:
        for row, number in enumerate(old.ids.tolist()):
            if written.get(number) == old.written[number]:
                keep_rows.append(row)
                kept_ids.add(number)
    missing = [number for number in written if number not in kept_ids]
    new_ids, new_matrix = vectors_of(missing) if missing else (np.empty(0, dtype=np.int64), None)
    return _assembled(
        old,
        np.asarray(keep_rows, dtype=np.int64),
        new_ids,
        new_matrix,
        written,
        base=base,
        version=version,
        dimension=dimension,
        metric=metric,
        subspace=subspace,
    )


def _extended_segment(
    old: Segment,
    changed: dict[int, int],
    version: int,
    vectors_of: VectorReader,
    *,
    metric: str,
    subspace: Subspace | None,
) -> Segment:
    """`old` with the items of `changed` (written after it) added, or replacing their older vectors."""
    if not changed:
        return replace(old, version=version)
    keep_rows = np.flatnonzero(~np.isin(old.ids, np.fromiter(changed, dtype=np.int64, count=len(changed))))
    new_ids, new_matrix = vectors_of(list(changed))
    written = {**old.written, **changed}
    return _assembled(
        old,
        keep_rows,
        new_ids,
        new_matrix,
        written,
        base=old.base,
        version=version,
        dimension=old.matrix.shape[1],
        metric=metric,
        subspace=subspace,
    )


def _assembled(
    old: Segment | None,
    keep_rows: np.ndarray,
    new_ids: np.ndarray,
    new_matrix: np.ndarray | None,
    written: dict[int, int],
    *,
    base: int,
    version: int,
    dimension: int,
    metric: str,
    subspace: Subspace | None,
) -> Segment:
    """The segment of the `keep_rows` of `old` followed by the rows read now; only the new rows are
    normalised and projected."""
    if new_matrix is None:
        new_ids, new_matrix = np.empty(0, dtype=np.int64), np.empty((0, dimension), dtype=np.float32)
    new_matrix = np.asarray(new_matrix, dtype=np.float32)
    rooms: dict[str, _Room] = {}
    ids = _joined("ids", old, keep_rows, np.asarray(new_ids, dtype=np.int64), rooms)
    matrix = _joined("matrix", old, keep_rows, new_matrix, rooms)
    # An id listed but without a vector was deleted between the two reads: it is simply left out.
    if len(ids) != len(written):
        present = set(ids.tolist())
        written = {number: value for number, value in written.items() if number in present}
    geometry = distance_metric(metric).geometry
    unit = None
    if geometry == "angular":
        if old is None or old.unit is not None:
            unit = _joined("unit", old, keep_rows, _unit_rows(new_matrix), rooms)
        else:  # `old` held no unit rows: all of them now
            unit = _unit_rows(matrix)
    # Euclidean distances stay on whole rows: from coordinates they would come out of |x|² - 2x·q + |q|²,
    # which loses the small distances to cancellation.
    if subspace is None or geometry == "euclidean":
        return Segment(version=version, ids=ids, written=written, matrix=matrix, unit=unit, base=base, rooms=rooms)
    coordinates = _coordinates(old, keep_rows, subspace, matrix if unit is None else unit, rooms)
    return Segment(
        version=version,
        ids=ids,
        written=written,
        matrix=matrix,
        unit=unit,
        base=base,
        subspace=None if coordinates is None else subspace,
        coordinates=coordinates,
        rooms=rooms,
    )


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _coordinates(
    old: Segment | None, keep_rows: np.ndarray, subspace: Subspace, searched: np.ndarray, rooms: dict[str, _Room]
) -> np.ndarray | None:
    """The coordinates of the `searched` rows in `subspace`, the first ``len(keep_rows)`` taken from `old`
    when it held them in the same span; None when a row lies off it."""
    held = old is not None and old.subspace is subspace and old.coordinates is not None
    fresh = searched[len(keep_rows) :] if held else searched
    coordinates = subspace.project(fresh)
    if subspace.outside(fresh, coordinates).any():
        return None
    return _joined("coordinates", old, keep_rows, coordinates, rooms) if held else coordinates
