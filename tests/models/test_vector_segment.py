"""The unsealed segment scanned in its graph's span (`models.vector_segment`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from models.ann_index import HnswConfig
from models.migrations import upgrade_database
from models.vector_segment import Segment, refreshed_segment, scan_segment
from models.vector_store import VectorDB
from neuraltrade.memory.collection import Query, distance_matrix
from neuraltrade.memory.subspace import Subspace
from tests.domain.memory.test_subspace import DIMENSION, low_rank

SPAN = Subspace.find(low_rank(2_000))


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's stores run on SQLite and on PostgreSQL."""
    return storage_url


def span() -> Subspace:
    assert SPAN is not None
    return SPAN


def reader(vectors: dict[int, np.ndarray]):  # type: ignore[no-untyped-def]
    def read(ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        found = [number for number in ids if number in vectors]
        matrix = np.array([vectors[number] for number in found], dtype=np.float32).reshape(-1, DIMENSION)
        return np.asarray(found, dtype=np.int64), matrix

    return read


def segment_of(vectors: np.ndarray, metric: str, subspace: Subspace | None, old: Segment | None = None) -> Segment:
    stored = {number: vector for number, vector in enumerate(vectors)}
    written = dict.fromkeys(stored, 1)
    return refreshed_segment(old, written, 1, reader(stored), dimension=DIMENSION, metric=metric, subspace=subspace)


def nearest(segment: Segment, query: np.ndarray, metric: str, k: int = 10) -> list[tuple[int, float]]:
    return sorted(scan_segment(segment, query, k, metric), key=lambda pair: (pair[1], pair[0]))


@pytest.mark.parametrize("metric", ["cosine", "inner_product"])
def test_a_segment_in_the_span_scans_coordinates_with_the_distances_of_whole_rows(metric: str) -> None:
    vectors = low_rank(300, seed=3) * np.linspace(0.5, 2.0, 300, dtype=np.float32)[:, None]
    in_span, whole = segment_of(vectors, metric, span()), segment_of(vectors, metric, None)
    assert in_span.coordinates is not None and in_span.coordinates.shape == (300, span().rows)
    assert whole.coordinates is None
    # Queries on the span and off it (full-rank noise): the same neighbours and distances.
    queries = np.vstack([low_rank(5, seed=4), np.random.default_rng(5).standard_normal((5, DIMENSION))])
    for query in queries.astype(np.float32):
        found, expected = nearest(in_span, query, metric), nearest(whole, query, metric)
        assert [number for number, _ in found] == [number for number, _ in expected]
        truth = distance_matrix(metric, query[None, :].astype(np.float64), vectors.astype(np.float64))[0]
        assert [distance for _, distance in found] == pytest.approx([truth[n] for n, _ in found], rel=1e-6, abs=2e-6)


def test_a_row_off_the_span_keeps_the_segment_on_whole_rows() -> None:
    vectors = low_rank(100, seed=6)
    vectors[40] = np.random.default_rng(7).standard_normal(DIMENSION)
    segment = segment_of(vectors, "cosine", span())
    assert segment.coordinates is None and segment.subspace is None
    assert nearest(segment, vectors[40], "cosine", k=1) == [(40, pytest.approx(0.0, abs=1e-6))]


def test_euclidean_segments_stay_on_whole_rows_to_keep_small_distances_exact() -> None:
    vectors = low_rank(100, seed=8)
    segment = segment_of(vectors, "l2", span())
    assert segment.coordinates is None
    assert nearest(segment, vectors[3], "l2", k=1) == [(3, 0.0)]


def test_a_refreshed_segment_keeps_the_coordinates_it_had_and_adds_those_of_new_rows() -> None:
    first = low_rank(50, seed=9)
    old = segment_of(first, "cosine", span())
    later = low_rank(20, seed=10)
    stored = {number: vector for number, vector in enumerate(np.vstack([first, later]))}
    written = {**dict.fromkeys(range(50), 1), **dict.fromkeys(range(50, 70), 2)}
    del written[7], stored[7]  # deleted since
    segment = refreshed_segment(old, written, 2, reader(stored), dimension=DIMENSION, metric="cosine", subspace=span())
    fresh = segment_of(np.array([stored[n] for n in segment.ids.tolist()]), "cosine", span())
    assert segment.coordinates is not None and fresh.coordinates is not None
    assert 7 not in segment.ids.tolist() and len(segment) == 69
    assert np.allclose(segment.coordinates, fresh.coordinates, atol=1e-6)
    # A new row off the span takes the whole segment back to whole rows.
    stored[70] = np.random.default_rng(11).standard_normal(DIMENSION).astype(np.float32)
    off = refreshed_segment(
        segment, {**written, 70: 3}, 3, reader(stored), dimension=DIMENSION, metric="cosine", subspace=span()
    )
    assert off.coordinates is None and len(off) == 70


def test_the_store_answers_unsealed_items_of_a_span_graph_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/segment.db"
    upgrade_database(url)
    store = VectorDB(
        DIMENSION, name="span", database_url=url, index_type="hnsw", partition_key=None, hnsw=HnswConfig(ef_search=64)
    )
    sealed = low_rank(1_200, seed=12)
    store.insert_many([f"s{n}" for n in range(len(sealed))], sealed)
    store.seal()
    assert store.index_subspace_rank == span().rank
    unsealed = low_rank(200, seed=13)
    store.insert_many([f"u{n}" for n in range(len(unsealed))], unsealed)
    assert store.segment_size == 200
    for number in (0, 57, 199):
        found = store.search(Query(unsealed[number], k=5))
        exact = store.search(Query(unsealed[number], k=5, exact=True))
        assert found[0].id == f"u{number}" and found[0].distance == pytest.approx(0.0, abs=1e-6)
        assert [item.id for item in found] == [item.id for item in exact]
        assert [item.distance for item in found] == pytest.approx([item.distance for item in exact], abs=2e-6)
    # The segment those answers came from was scanned in the graph's span.
    keeper = store._keeper
    assert keeper is not None and keeper._segment is not None
    assert keeper._segment.subspace is not None and keeper._segment.subspace.rank == span().rank
