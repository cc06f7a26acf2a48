"""A point-in-time copy of a vector collection, held in memory and searched exactly, as the store would.

A backtest asks the vector memory thousands of nearest-neighbour questions, each bounded by ``as_of``.
The store answers each with a round trip and a filtered scan (~10 ms); a `MemorySnapshot` holds the
items of one partition sorted by timestamp, so that ``as_of`` is a prefix found by bisection and a
search is one matrix-vector product over that prefix. It answers what the store's exact search answers:
the same distances (`neuraltrade.memory.collection.distances`), the same filter semantics, the same order (distance,
then item id) and the same `SearchResult` fields.

Point in time is kept by the queries, not by the copy: every query carries its ``as_of``, and items
stored after the snapshot was taken are simply not in it.

Each query is computed on its own, never in a batch with others: a BLAS product over several queries
rounds each one's distances differently depending on its neighbours in the batch, and a distance that
changes in its last bit when a backtest runs over a longer history is exactly what
`neuraltrade.strategies.base.verify_causality` reports as reading the future. And each runs on one BLAS
thread: a matrix-vector product of a few thousand rows gains nothing from more, and on a busy machine
handing it to a second thread costs a scheduler slice, fifty times the product itself (measured on 2
cores: 7 ms instead of 0.14 ms).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import MappingProxyType
from typing import Any, cast

import numpy as np

from neuraltrade.canonical import canonical_json
from neuraltrade.errors import ConfigError, DimensionMismatch, InvalidVector
from neuraltrade.memory.collection import CollectionSpec, distance_metric, distances, top_k
from neuraltrade.memory.query import Filter, Query, SearchResult
from neuraltrade.timestamps import from_microseconds, microseconds_of, to_microseconds

__all__ = ["MemorySnapshot", "matches"]

#: Filters whose item masks are kept; a backtest asks with one or two filters, never hundreds.
_CACHED_FILTERS = 64


class MemorySnapshot:
    """The items of a collection (or one partition of it), searched exactly in memory.

    Parameters
    ----------
    keys
        The items' ids (`SearchResult.id`), unique.
    vectors
        Their full-precision vectors, one row per item (kept as float32).
    timestamps
        When each item came to be: epoch microseconds or aware datetimes.
    metadata
        Each item's metadata (strings, booleans, numbers or None), as the store keeps it.
    metric
        ``"cosine"``, ``"l2"`` or ``"inner_product"``, as `neuraltrade.memory.collection.distances` defines them.
    ids
        The items' numeric ids in the store, which break ties of distance as the store's search does
        (default: the items' positions in `keys`).
    spec
        The collection's specification, so that a caller can check its embedder (``spec.fingerprint``);
        its metric must be `metric`.
    partition
        The partition the items were taken from (None: the whole collection).
    version
        The collection's version when the items were read (None if they did not come from a store).
    """

    def __init__(
        self,
        *,
        keys: Sequence[str],
        vectors: np.ndarray,
        timestamps: Sequence[int] | Sequence[datetime] | np.ndarray,
        metadata: Sequence[Mapping[str, Any]],
        metric: str = "cosine",
        ids: Sequence[int] | np.ndarray | None = None,
        spec: CollectionSpec | None = None,
        partition: str | None = None,
        version: int | None = None,
    ) -> None:
        distance_metric(metric, what="snapshot metric")
        if spec is not None and spec.metric != metric:
            raise ConfigError(f"snapshot metric {metric!r} differs from collection {spec.name!r}'s {spec.metric!r}")
        self.metric = metric
        self.spec = spec
        self.partition = partition
        self.version = version
        self.name = spec.name if spec is not None else "snapshot"
        count = len(keys)
        matrix = _checked_matrix(vectors, count, spec)
        moments = _microseconds(timestamps, count)
        numbers = _checked_ids(ids, count)
        if len(metadata) != count:
            raise ConfigError(f"snapshot of {count} keys was given {len(metadata)} metadata entries")
        if len(set(keys)) != count:
            raise ConfigError(f"snapshot keys must be unique; {count - len(set(keys))} repeat")
        # Sorted by time, so that the items before any `as_of` are a prefix.
        order = np.argsort(moments, kind="stable")
        self.dimension = int(matrix.shape[1])
        self._vectors = np.ascontiguousarray(matrix[order])
        self._vectors.setflags(write=False)
        self._moments = moments[order]
        self._ids = numbers[order]
        self._keys = [str(keys[i]) for i in order]
        # Read-only views, as the store hands out: results sharing an item cannot change each other.
        self._metadata: list[Mapping[str, Any]] = [MappingProxyType(_plain(metadata[i])) for i in order]
        self._stamps = [from_microseconds(int(moment)) for moment in self._moments]
        self._row_of_id = {int(number): row for row, number in enumerate(self._ids)}
        self._masks: dict[str, np.ndarray] = {}
        self._digest: str | None = None

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> tuple[str, ...]:
        """The items' ids, in time order."""
        return tuple(self._keys)

    @property
    def vectors(self) -> np.ndarray:
        """The items' vectors (read-only), one row per key of `keys`."""
        return self._vectors

    @property
    def digest(self) -> str:
        """SHA-256 of what a search can read: keys, times, vectors, metadata and the metric."""
        if self._digest is None:
            hasher = hashlib.sha256(self.metric.encode())
            hasher.update("\x1f".join(self._keys).encode())
            hasher.update(np.ascontiguousarray(self._moments).tobytes())
            hasher.update(self._vectors.tobytes())
            hasher.update(canonical_json([dict(item) for item in self._metadata]))
            self._digest = hasher.hexdigest()
        return self._digest

    def __repr__(self) -> str:
        where = "" if self.partition is None else f", partition={self.partition!r}"
        return f"MemorySnapshot({self.name!r}{where}, {len(self)} items, {self.metric})"

    def search(self, query: Query) -> list[SearchResult]:
        """Return the `query.k` nearest items that satisfy the query's filter and are older than its ``as_of``.

        Results are sorted by distance, ties by item id, as the store's exact search sorts them.
        ``query.exact``, ``oversample`` and ``ef`` change nothing: a snapshot always searches exactly.

        Raises
        ------
        ConfigError
            If `query` is not a `Query`.
        DimensionMismatch
            If the query vector's dimension is not the snapshot's.
        """
        if not isinstance(query, Query):
            raise ConfigError(f"search takes a Query, was given {type(query).__name__}")
        if query.vector.shape[0] != self.dimension:
            raise DimensionMismatch(self.name, self.dimension, int(query.vector.shape[0]))
        end = len(self._keys)
        if query.as_of is not None:
            bound = to_microseconds(query.as_of)
            end = int(np.searchsorted(self._moments, bound, side="left"))
        rows = None
        if query.where is not None:
            allowed = self._mask(query.where)[:end]
            # The usual filter, a partition's own symbol, allows every row: the prefix is then searched as a view.
            rows = None if allowed.all() else np.flatnonzero(allowed)
        if end == 0 or (rows is not None and not len(rows)):
            return []
        matrix = self._vectors[:end] if rows is None else self._vectors[rows]
        with _one_blas_thread():
            values = distances(self.metric, query.vector, matrix)
        candidates = _nearest_candidates(values, query.k)
        numbers = self._ids[:end] if rows is None else self._ids[rows]
        results = []
        for number, distance in top_k(numbers[candidates].tolist(), values[candidates], query.k):
            row = self._row_of_id[number]
            results.append(SearchResult(self._keys[row], distance, self._metadata[row], self._stamps[row]))
        return results

    def _mask(self, where: Filter) -> np.ndarray:
        # Keyed by description, which tells True from 1 (Filter equality, like Python's, does not).
        key = where.describe()
        mask = self._masks.get(key)
        if mask is None:
            mask = np.fromiter((matches(where, item) for item in self._metadata), dtype=bool, count=len(self))
            if len(self._masks) >= _CACHED_FILTERS:
                self._masks.pop(next(iter(self._masks)))
            self._masks[key] = mask
        return mask


def matches(where: Filter, metadata: Mapping[str, Any]) -> bool:
    """Return whether an item with `metadata` satisfies `where`, as the store's SQL decides it.

    A field the item lacks, or holds as None, never matches. Values compare within their kind (strings
    with strings, booleans with booleans, numbers with numbers, as floats): the store's SQL guards every
    comparison with the JSON type of the field.
    """
    if where.operator == "and":
        return all(matches(operand, metadata) for operand in where.operands)
    if where.operator == "or":
        return any(matches(operand, metadata) for operand in where.operands)
    stored = metadata.get(where.name or "")
    kind = _kind(stored)
    if kind is None:
        return False
    values = where.value if isinstance(where.value, tuple) else (where.value,)
    same = [_comparable(value) for value in values if _kind(value) is kind]
    if not same:
        return False
    held = _comparable(stored)
    if where.operator in ("eq", "in"):
        return held in same
    value = same[0]
    if where.operator == "lt":
        return bool(held < value)
    if where.operator == "le":
        return bool(held <= value)
    if where.operator == "gt":
        return bool(held > value)
    if where.operator == "ge":
        return bool(held >= value)
    raise ConfigError(f"filter operator {where.operator!r} of {where.describe()} is not one the snapshot knows")


def _one_blas_thread() -> AbstractContextManager[Any]:
    return cast(AbstractContextManager[Any], _blas_controller().limit(limits=1, user_api="blas"))


@functools.cache
def _blas_controller() -> Any:
    # Made once: finding the loaded BLAS libraries takes 0.3 ms, limiting them then 10 microseconds.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _kind(value: object) -> type | None:
    if isinstance(value, bool):
        return bool
    if isinstance(value, str):
        return str
    if isinstance(value, int | float):
        return float
    return None


def _comparable(value: Any) -> Any:
    # Numbers as floats, as the store's SQL reads them (JSON integers and reals alike).
    return float(value) if _kind(value) is float else value


def _nearest_candidates(values: np.ndarray, k: int) -> np.ndarray:
    """Return the positions of the `k` smallest `values` and of every value tied with the k-th."""
    if len(values) <= k:
        return np.arange(len(values))
    kth = np.partition(values, k - 1)[k - 1]
    # Ties at the k-th distance are all kept, so that `top_k` decides among them by id, as the store does.
    return np.flatnonzero(values <= kth)


def _checked_matrix(vectors: np.ndarray, count: int, spec: CollectionSpec | None) -> np.ndarray:
    matrix = np.asarray(vectors)
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise InvalidVector(f"a snapshot takes a matrix of numbers, was given shape {matrix.shape} of {matrix.dtype}")
    if len(matrix) != count:
        raise ConfigError(f"snapshot of {count} keys was given {len(matrix)} vectors")
    if spec is not None and matrix.shape[1] != spec.dimension:
        raise DimensionMismatch(spec.name, spec.dimension, int(matrix.shape[1]))
    matrix = np.asarray(matrix, dtype=np.float32)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        raise InvalidVector(f"snapshot vector {int(np.flatnonzero(~finite)[0])} holds NaN or infinity")
    return matrix


def _microseconds(timestamps: Sequence[int] | Sequence[datetime] | np.ndarray, count: int) -> np.ndarray:
    values = list(timestamps)
    if len(values) != count:
        raise ConfigError(f"snapshot of {count} keys was given {len(values)} timestamps")
    moments = [
        microseconds_of(f"snapshot timestamp {position}", value, error=ConfigError)
        for position, value in enumerate(values)
    ]
    return np.asarray(moments, dtype=np.int64)


def _checked_ids(ids: Sequence[int] | np.ndarray | None, count: int) -> np.ndarray:
    if ids is None:
        return np.arange(count, dtype=np.int64)
    numbers = np.asarray(ids)
    if numbers.shape != (count,) or (count and not np.issubdtype(numbers.dtype, np.integer)):
        raise ConfigError(f"snapshot of {count} keys needs {count} integer ids, was given shape {numbers.shape}")
    numbers = numbers.astype(np.int64)
    if len(np.unique(numbers)) != count:
        raise ConfigError("snapshot ids must be unique, as the store's item ids are")
    return numbers


def _plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(metadata, Mapping):
        raise ConfigError(f"snapshot metadata must be mappings, was given {type(metadata).__name__}")
    return {key: value.item() if isinstance(value, np.generic) else value for key, value in metadata.items()}
