"""The vector memory's rules, independent of where vectors are stored.

A collection holds vectors of one dimension from one embedder; this module decides what it accepts,
how vectors are quantized and how distances are measured. The storage itself (sqlite-vec, later
pgvector) lives in `models.vector_store`; queries and filters in `neuraltrade.memory.query`.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import numpy as np

from neuraltrade.errors import ConfigError, DimensionMismatch, FingerprintMismatch, InvalidItemId, InvalidVector
from neuraltrade.memory.embedding import EmbedderFingerprint
from neuraltrade.memory.query import FIELD_NAME, Filter, Item, Query, SearchResult, check_field_name, real_numbers
from neuraltrade.timestamps import microseconds_of, to_microseconds

__all__ = [
    "DISTANCE_METRICS",
    "MAX_ITEM_ID_LENGTH",
    "METRICS",
    "QUANTIZATIONS",
    "CollectionSpec",
    "DistanceMetric",
    "Filter",
    "Item",
    "ItemId",
    "Query",
    "SearchResult",
    "check_metadata",
    "check_query_vector",
    "check_timestamps",
    "check_vectors",
    "distance_matrix",
    "distance_metric",
    "distances",
    "int8_scale",
    "normalise_item_id",
    "quantize_binary",
    "quantize_int8",
    "top_k",
]


@dataclass(frozen=True, kw_only=True)
class DistanceMetric:
    """How one metric measures the distance between a query `q` and a stored vector `x`.

    Vector libraries name a metric by its `geometry`: ``"angular"`` (cosine), ``"euclidean"`` or
    ``"dot"`` (inner product); each adapter maps those three words to its own names.
    """

    name: str
    definition: str
    geometry: str


#: The one table of distance metrics: every store, index and snapshot measures as `distance_matrix` does.
DISTANCE_METRICS: Mapping[str, DistanceMetric] = MappingProxyType(
    {
        metric.name: metric
        for metric in (
            DistanceMetric(name="cosine", definition="1 - cos(q, x)", geometry="angular"),
            DistanceMetric(name="l2", definition="the Euclidean distance |q - x|", geometry="euclidean"),
            DistanceMetric(name="inner_product", definition="1 - q.x", geometry="dot"),
        )
    }
)
METRICS = tuple(DISTANCE_METRICS)
#: How a collection stores the vectors it searches: as they are, as int8, or as one bit per dimension.
#: Quantized candidates are always re-scored with the full-precision vectors.
QUANTIZATIONS = ("none", "int8", "binary")
_QUANTIZATION_ALIASES = {"scalar": "int8"}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")
#: What a caller may name an item by (numpy integers count as ints: ids often come from arrays); the store
#: keeps and returns every id as its `str` form.
ItemId = str | int | np.integer[Any] | uuid.UUID
#: The longest item id stored (its text form, in characters).
MAX_ITEM_ID_LENGTH = 256
#: The largest squared norm of a stored or searched vector: four times it still fits a float32, so every
#: distance the databases compute in float32 stays finite (|q - x|^2 <= 2|q|^2 + 2|x|^2).
LARGEST_SQUARED_NORM = float(np.finfo(np.float32).max) / 4
#: The smallest squared norm of a vector with a cosine direction: below float32's smallest normal number
#: the norm the databases compute rounds to zero, and every cosine distance to the vector is undefined.
SMALLEST_SQUARED_NORM = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True, kw_only=True)
class CollectionSpec:
    """A collection's identity: its name, the embedder that fills it and how distance is measured."""

    name: str
    fingerprint: EmbedderFingerprint
    metric: str = "cosine"
    quantization: str = "none"
    partition_key: str | None = "symbol"

    def __post_init__(self) -> None:
        quantization = _QUANTIZATION_ALIASES.get(self.quantization, self.quantization)
        if quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"collection quantization {self.quantization!r} is not one of {', '.join(QUANTIZATIONS)} "
                "(or 'scalar', which means int8)"
            )
        object.__setattr__(self, "quantization", quantization)
        if self.partition_key is not None:
            check_field_name(self.partition_key, "collection partition key")
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"collection name {self.name!r} must be 1-48 lower-case letters, digits or underscores, "
                "starting with a letter"
            )
        distance_metric(self.metric, what="collection metric")

    @property
    def dimension(self) -> int:
        """The dimension of every vector in the collection."""
        return self.fingerprint.dimension


def normalise_item_id(value: object) -> str:
    """Return the text an item named `value` is stored and returned under.

    A `str` stays as it is, an `int` becomes its decimal digits (``42`` and ``"42"`` name the same item)
    and a `uuid.UUID` its hyphenated lower-case form. numpy integers count as integers; booleans do not,
    although Python calls them integers (``True`` would silently name item ``"True"``).

    Raises
    ------
    InvalidItemId
        If `value` is of another type (float, bytes, None, bool, ...), empty, or longer than
        `MAX_ITEM_ID_LENGTH` characters; the message names the value and its type.
    """
    if isinstance(value, str):
        text = str(value)
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        try:
            text = str(int(value))
        except ValueError:  # more digits than Python converts to text, so far too long anyway
            raise InvalidItemId(value, f"is longer than {MAX_ITEM_ID_LENGTH} characters") from None
    elif isinstance(value, uuid.UUID):
        text = str(value)
    else:
        raise InvalidItemId(value, "is not a str, an int or a uuid.UUID")
    if not text:
        raise InvalidItemId(value, "is empty")
    if "\x00" in text:
        raise InvalidItemId(value, "holds a NUL character (U+0000), which PostgreSQL cannot store")
    if len(text) > MAX_ITEM_ID_LENGTH:
        raise InvalidItemId(value, f"is longer than {MAX_ITEM_ID_LENGTH} characters ({len(text)})")
    return text


def check_timestamps(
    timestamps: Sequence[datetime] | Sequence[int] | np.ndarray | None, count: int, *, now: datetime
) -> list[int]:
    """Return `count` item timestamps in epoch microseconds; they are given as aware datetimes or epoch
    microseconds, or not at all (None: every item is stamped `now`).

    Raises
    ------
    ConfigError
        If there are not `count` of them, or one is naive or of another type (it is named).
    """
    if timestamps is None:
        return [to_microseconds(now)] * count
    if isinstance(timestamps, np.ndarray) and np.issubdtype(timestamps.dtype, np.integer) and timestamps.ndim == 1:
        values: list[Any] = timestamps.tolist()
    else:
        values = list(timestamps)
    if len(values) != count:
        raise ConfigError(f"{count} ids and {len(values)} timestamps do not pair up")
    if all(type(value) is int for value in values):  # the common case, checked at C speed
        return values
    return [microseconds_of("timestamp", value, error=ConfigError) for value in values]


def check_vectors(spec: CollectionSpec, fingerprint: EmbedderFingerprint, vectors: np.ndarray) -> np.ndarray:
    """Return `vectors` as a contiguous float32 matrix if `spec` may store them.

    Raises
    ------
    FingerprintMismatch
        If the vectors come from another embedder than the collection's.
    DimensionMismatch
        If their dimension is not the collection's.
    InvalidVector
        If the array is not two-dimensional or holds NaN or infinity, or (cosine) a zero vector (the first
        bad row is named).
    """
    if fingerprint.digest != spec.fingerprint.digest:
        raise FingerprintMismatch(spec.name, spec.fingerprint.describe(), fingerprint.describe())
    matrix = real_numbers(vectors, f"vectors given to collection {spec.name!r}")
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2:
        raise InvalidVector(f"collection {spec.name!r} takes a matrix of vectors, was given {matrix.ndim}-d")
    if matrix.shape[1] != spec.dimension:
        raise DimensionMismatch(spec.name, spec.dimension, int(matrix.shape[1]))
    with np.errstate(over="ignore"):  # a value beyond float32 becomes infinity, refused just below
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise InvalidVector(
            f"collection {spec.name!r} refuses vector {first} of {len(matrix)}: it holds NaN or infinity, or a "
            "value beyond float32's range (3.4e38)"
        )
    # One such item would spoil every later search: its distances overflow, or (cosine) are undefined.
    squared = np.einsum("ij,ij->i", matrix, matrix, dtype=np.float64)
    refused = squared > LARGEST_SQUARED_NORM
    if spec.metric == "cosine":
        refused |= squared < SMALLEST_SQUARED_NORM
    if refused.any():
        first = int(np.flatnonzero(refused)[0])
        raise InvalidVector(
            f"collection {spec.name!r} refuses vector {first} of {len(matrix)}: {_norm_problem(spec, squared[first])}"
        )
    return matrix


def check_query_vector(spec: CollectionSpec, vector: np.ndarray) -> None:
    """Raise `InvalidVector` unless collection `spec` can measure distances to the query `vector`: its norm
    fits float32 and, under cosine, it has a direction."""
    squared = float(np.einsum("i,i->", vector, vector, dtype=np.float64))
    if squared > LARGEST_SQUARED_NORM or (spec.metric == "cosine" and squared < SMALLEST_SQUARED_NORM):
        raise InvalidVector(f"collection {spec.name!r} refuses the query vector: {_norm_problem(spec, squared)}")


def _norm_problem(spec: CollectionSpec, squared: float) -> str:
    if squared > LARGEST_SQUARED_NORM:
        return (
            f"its norm {math.sqrt(squared):.3g} is too large for distances in float32 "
            f"(at most {math.sqrt(LARGEST_SQUARED_NORM):.3g})"
        )
    if squared == 0:
        return f"it is zero, which has no {spec.metric} distance"
    return f"its norm {math.sqrt(squared):.3g} is too small to have a {spec.metric} direction in float32"


@functools.lru_cache(maxsize=4_096)
def _is_field_name(name: str) -> bool:
    # Memoised: most writes repeat a handful of field names millions of times.
    return FIELD_NAME.fullmatch(name) is not None


def check_metadata(spec: CollectionSpec, item_id: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return `metadata` as a plain dict if `spec` may store it with item `item_id`.

    Keys must be field names; values strings, booleans, integers, finite floats or None. A collection
    with a partition key requires that field, as a non-empty string.

    Raises
    ------
    ConfigError
        Naming the item, the field and the value at fault.
    """
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise ConfigError(f"metadata of item {item_id!r} must be a mapping, was {type(metadata).__name__}")
    plain: dict[str, Any] = {}
    for key, value in metadata.items():
        if type(key) is not str or not _is_field_name(key):
            check_field_name(key, f"metadata of item {item_id!r}:")
        kind = type(value)
        if (kind is str and "\x00" not in value) or kind is int or kind is bool or value is None:
            plain[key] = value
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL's JSON takes it, and then refuses every later query that reads the field.
            raise ConfigError(
                f"metadata field {key!r} of item {item_id!r} holds {value!r}, whose NUL character (U+0000) "
                "no database stores"
            )
        if value is not None and not isinstance(value, str | bool | int | float):
            raise ConfigError(
                f"metadata field {key!r} of item {item_id!r} holds {type(value).__name__} {value!r}; "
                "only strings, booleans, numbers and None are stored"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"metadata field {key!r} of item {item_id!r} holds {value!r}, which is not finite")
        plain[key] = value
    if spec.partition_key is not None:
        partition = plain.get(spec.partition_key)
        if not isinstance(partition, str) or not partition:
            raise ConfigError(
                f"item {item_id!r} of collection {spec.name!r} needs its partition key field "
                f"{spec.partition_key!r} as a non-empty string in its metadata, had {partition!r}"
            )
    return plain


def int8_scale(vectors: np.ndarray) -> float:
    """Return the factor that maps `vectors` onto int8: 127 over the 99.99th percentile of |value|.

    A collection fixes its scale from its first vectors, so that every stored vector and every query
    is quantized the same way; the rare larger value is clipped (and the rescoring repairs its rank).
    """
    bound = float(np.quantile(np.abs(vectors), 0.9999)) if vectors.size else 0.0
    return 127.0 / bound if bound > 0 and math.isfinite(bound) else 127.0


def quantize_int8(vectors: np.ndarray, scale: float) -> np.ndarray:
    """Return `vectors` scaled by `scale`, rounded and clipped to int8."""
    # In place on one float32 temporary: three passes over the matrix instead of four allocations.
    scaled = np.multiply(vectors, np.float32(scale), dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -127, 127, out=scaled)
    return scaled.astype(np.int8)


def quantize_binary(vectors: np.ndarray) -> np.ndarray:
    """Return one bit per dimension (set where the value is positive), packed eight to a byte."""
    return np.packbits(np.atleast_2d(vectors) > 0, axis=1)


def distance_metric(name: object, *, what: str = "metric") -> DistanceMetric:
    """Return the metric called `name`; `what` names, in the error, where the name came from.

    Raises
    ------
    ConfigError
        If `name` is not one of `METRICS`.
    """
    found = DISTANCE_METRICS.get(name) if isinstance(name, str) else None
    if found is None:
        raise ConfigError(f"{what} {name!r} is not one of {', '.join(METRICS)}")
    return found


def distances(metric: str, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Return the distance from `query` to every row of `vectors`, as the store defines it.

    cosine: 1 - cos; l2: Euclidean distance; inner_product: 1 - dot. The same definitions hold on the
    exact, rescored and HNSW paths, so results are comparable whichever path answered.
    """
    return distance_matrix(metric, np.asarray(query).reshape(1, -1), vectors)[0]


def distance_matrix(metric: str, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Return the (queries x vectors) distances; row q is ``distances(metric, queries[q], vectors)``.

    Many queries at once (recall audits): every row norm of `vectors` is computed once, not per query.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    rows = np.asarray(queries, dtype=np.float32)
    geometry = distance_metric(metric).geometry
    if len(matrix) == 0 or len(rows) == 0:
        return np.empty((len(rows), len(matrix)), dtype=np.float64)
    if geometry == "euclidean":
        # From the differences, not |x|^2 - 2x.q + |q|^2: that cancels catastrophically near zero.
        return np.stack([np.sqrt(np.einsum("ij,ij->i", matrix - row, matrix - row, dtype=np.float64)) for row in rows])
    dots = (rows @ matrix.T).astype(np.float64)
    if geometry == "dot":
        return 1.0 - dots
    norms = np.linalg.norm(rows, axis=1).astype(np.float64)[:, np.newaxis] * np.linalg.norm(matrix, axis=1).astype(
        np.float64
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        cosines = np.where(norms > 0, dots / norms, 0.0)
    return 1.0 - cosines


def top_k(candidate_ids: Sequence[int], values: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Return the `k` (id, distance) pairs of smallest distance, ties broken by id."""
    order = np.lexsort((np.asarray(candidate_ids, dtype=np.int64), values))[:k]
    return [(int(candidate_ids[i]), float(values[i])) for i in order]
