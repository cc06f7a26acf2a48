"""Shared data, brute-force references and the read-only store of the `VectorDB` specifications."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from models.migrations import upgrade_database
from models.vector_store import VectorDB
from neuraltrade.memory.collection import Filter, SearchResult

DIMENSION = 24
START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA")
REGIMES = ("bull", "bear", "flat")
INJECTION = "x' OR 1=1 --"
#: Distances from sqlite-vec are float32 sums; numpy's are float64 over the same float32 vectors.
RTOL, ATOL = 1e-4, 1e-5


# -- data and brute force ---------------------------------------------------------------------------


def random_vectors(count: int, dimension: int = DIMENSION, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)


def clustered_vectors(
    count: int, dimension: int, *, clusters: int, spread: float = 0.35, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return `count` vectors around `clusters` centres, and the centres (market states come in regimes)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dimension))
    labels = rng.integers(0, clusters, count)
    vectors = centres[labels] + spread * rng.normal(size=(count, dimension))
    return vectors.astype(np.float32), centres


def near_centres(centres: np.ndarray, count: int, *, spread: float = 0.35, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = centres[rng.integers(0, len(centres), count)]
    return (chosen + spread * rng.normal(size=chosen.shape)).astype(np.float32)


def reference_distances(metric: str, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Return the distances the store defines, computed directly in float64 from the float32 values.

    cosine 1 - cos, l2 the Euclidean distance, inner_product 1 - dot; the same definitions as
    `neuraltrade.memory.collection.distances`, without its float32 dot products (see
    `test_a_stored_vector_is_at_distance_zero_from_itself_on_every_path`).
    """
    matrix = np.asarray(vectors, dtype=np.float32).astype(np.float64).reshape(-1, np.shape(query)[-1])
    point = np.asarray(query, dtype=np.float32).astype(np.float64)
    if metric == "l2":
        return np.linalg.norm(matrix - point, axis=1)
    dots = matrix @ point
    if metric == "inner_product":
        return 1.0 - dots
    return 1.0 - dots / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(point))


def brute_force(metric: str, query: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (row numbers, distances) of the `k` rows of `vectors` nearest to `query`."""
    values = reference_distances(metric, query, vectors)
    order = np.argsort(values, kind="stable")[:k]
    return order, values[order]


def assert_brute_force_top_k(
    results: Sequence[SearchResult],
    metric: str,
    query: np.ndarray,
    keys: Sequence[str],
    vectors: np.ndarray,
    allowed: np.ndarray,
    k: int,
) -> None:
    """Assert that `results` are a top-`k` of the `allowed` rows, each at its numpy distance.

    Ties and float32 rounding may swap neighbours of (almost) equal distance, so the check is: as many
    results as allowed rows permit, distinct ids, every one allowed and at its own distance, and the
    sorted distances equal to the brute-force ones.
    """
    allowed_rows = np.flatnonzero(allowed)
    _, expected = brute_force(metric, query, vectors[allowed_rows], k)
    assert len(results) == len(expected), f"expected {len(expected)} results, got {len(results)}"
    row_of = {key: row for row, key in enumerate(keys)}
    rows = [row_of[result.id] for result in results]
    assert len(set(rows)) == len(rows), "an item was returned twice"
    assert all(allowed[row] for row in rows), "a result the filter or as_of excludes was returned"
    own = reference_distances(metric, query, vectors[rows])
    got = np.array([result.distance for result in results])
    np.testing.assert_allclose(got, own, rtol=RTOL, atol=ATOL, err_msg="a result's distance is not its own")
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg="results are not the top k")
    assert list(got) == sorted(got), "results are not sorted by distance"


def kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    if isinstance(value, int | float):
        return "number"
    return None


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def picks(where: Filter | None, metadata: Mapping[str, Any]) -> bool:
    """Evaluate `where` on one item's metadata, in Python, as `Filter` documents it.

    A field the item does not have (or holds None) never matches; values compare within their kind.
    """
    if where is None:
        return True
    if where.operator == "and":
        return all(picks(operand, metadata) for operand in where.operands)
    if where.operator == "or":
        return any(picks(operand, metadata) for operand in where.operands)
    stored = metadata.get(where.name or "")
    if stored is None:
        return False
    values = where.value if isinstance(where.value, tuple) else (where.value,)
    same_kind = [value for value in values if kind(value) == kind(stored)]
    if where.operator in ("eq", "in"):
        return any(stored == value for value in same_kind)
    return any(_ORDERINGS[where.operator](stored, value) for value in same_kind)


def moment(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


def new_database(folder: Path) -> str:
    url = f"sqlite:///{folder}/store.db"
    upgrade_database(url)
    return url


# -- a shared collection per metric, read-only ------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What a module-scoped store holds: one collection per metric over the same items."""

    url: str
    keys: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any]]
    timestamps: list[datetime]
    stores: dict[str, VectorDB]

    def allowed(self, where: Filter | None = None, as_of: datetime | None = None) -> np.ndarray:
        return np.array(
            [
                picks(where, meta) and (as_of is None or stamp < as_of)
                for meta, stamp in zip(self.metadata, self.timestamps, strict=True)
            ]
        )


def item_metadata(rng: np.random.Generator, row: int) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "symbol": SYMBOLS[row % len(SYMBOLS)],
        "volume": int(rng.integers(0, 1_000)),
        "score": float(np.round(rng.normal(), 3)),
        "flagged": bool(rng.random() < 0.3),
    }
    if row % 7:
        meta["regime"] = REGIMES[int(rng.integers(0, len(REGIMES)))]
    if row % 11 == 0:
        meta["note"] = None
    return meta


def aapl(count: int) -> list[dict[str, Any]]:
    """Metadata of `count` AAPL items, numbered."""
    return [{"symbol": "AAPL", "row": row} for row in range(count)]


def stored_vectors(url: str, collection: str, ids: list[int] | None = None) -> dict[int, np.ndarray]:
    """The full-precision vectors the backend stores for `collection` (those of `ids`, else all), by
    item id, read through the backend as the store reads them, on any kind of database."""
    from models import collections
    from models.dialects import vector_backend_for
    from models.engine import session_scope

    with session_scope(url) as session:
        spec = collections.spec_of(collections.get_collection(session, collection))
        backend, connection = vector_backend_for(session), session.connection()
        if ids is not None:
            batches = [backend.full_vectors(connection, spec, ids)]
        else:
            batches = list(backend.scan_full(connection, spec, batch=10_000))
    return {int(number): row.copy() for numbers, matrix in batches for number, row in zip(numbers, matrix, strict=True)}
