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
from dataclasses import dataclass

import numpy as np

from neuraltrade.memory.collection import distance_metric
from neuraltrade.memory.subspace import Subspace

#: Reads the vectors of ids: (the ids found, their float32 matrix).
VectorReader = Callable[[Sequence[int]], tuple[np.ndarray, np.ndarray]]


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

    def __len__(self) -> int:
        return len(self.ids)


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


def refreshed_segment(
    old: Segment | None,
    written: dict[int, int],
    version: int,
    vectors_of: VectorReader,
    *,
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
    parts_ids = [old.ids[keep_rows]] if old is not None else []
    parts = [old.matrix[keep_rows]] if old is not None else []
    if new_matrix is not None:
        parts_ids.append(new_ids)
        parts.append(np.asarray(new_matrix, dtype=np.float32))
    ids = np.concatenate(parts_ids) if parts_ids else np.empty(0, dtype=np.int64)
    matrix = np.concatenate(parts) if parts else np.empty((0, dimension), dtype=np.float32)
    # An id listed but without a vector was deleted between the two reads: it is simply left out.
    present = set(ids.tolist())
    written = {number: value for number, value in written.items() if number in present}
    geometry = distance_metric(metric).geometry
    unit = None
    if geometry == "angular":
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    # Euclidean distances stay on whole rows: from coordinates they would come out of |x|² - 2x·q + |q|²,
    # which loses the small distances to cancellation.
    if subspace is None or geometry == "euclidean":
        return Segment(version=version, ids=ids, written=written, matrix=matrix, unit=unit)
    coordinates = _coordinates(old, keep_rows, subspace, matrix if unit is None else unit)
    return Segment(
        version=version,
        ids=ids,
        written=written,
        matrix=matrix,
        unit=unit,
        subspace=None if coordinates is None else subspace,
        coordinates=coordinates,
    )


def _coordinates(
    old: Segment | None, keep_rows: list[int], subspace: Subspace, searched: np.ndarray
) -> np.ndarray | None:
    """The coordinates of the `searched` rows in `subspace`, the first ``len(keep_rows)`` taken from `old`
    when it held them in the same span; None when a row lies off it."""
    held = None if old is None or old.subspace is not subspace else old.coordinates
    fresh = searched if held is None else searched[len(keep_rows) :]
    coordinates = subspace.project(fresh)
    if subspace.outside(fresh, coordinates).any():
        return None
    return coordinates if held is None else np.concatenate([held[keep_rows], coordinates])
