"""The unsealed segment scanned in its graph's span (`models.vector_segment`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from models.ann_index import HnswConfig
from models.migrations import upgrade_database
from models.vector_segment import Segment, current_segment, refreshed_segment, scan_segment
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


class Table:
    """A collection's items as the segment reads them: written version and vector by id, reads counted."""

    def __init__(self, vectors: np.ndarray, version: int = 1) -> None:
        self.rows = {number: (version, vector) for number, vector in enumerate(vectors)}
        self.vectors_read: list[int] = []
        self.rows_listed = 0
        #: Rows another process writes between this one's listing and its count.
        self.written_meanwhile: dict[int, tuple[int, np.ndarray]] = {}

    def written_since(self, after: int) -> dict[int, int]:
        listed = self._since(after)
        self.rows_listed += len(listed)
        return listed

    def count_since(self, after: int, through: int) -> int:
        self.rows.update(self.written_meanwhile)
        self.written_meanwhile = {}
        return sum(1 for version in self._since(after).values() if version <= through)

    def _since(self, after: int) -> dict[int, int]:
        return {number: version for number, (version, _) in self.rows.items() if version > after}

    def vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        self.vectors_read.extend(ids)
        return reader({number: vector for number, (_, vector) in self.rows.items()})(ids)

    def segment(self, old: Segment | None, version: int, *, base: int = 0, limit: int = 10_000) -> Segment | None:
        return current_segment(
            old,
            base=base,
            version=version,
            written_since=self.written_since,
            count_since=self.count_since,
            vectors_of=self.vectors_of,
            dimension=DIMENSION,
            metric="cosine",
            subspace=span(),
            limit=limit,
        )


def same_segment(segment: Segment | None, table: Table) -> None:
    """`segment` holds exactly the table's items written after its base, with their current vectors."""
    assert segment is not None
    expected = table._since(segment.base)
    assert segment.written == expected
    assert sorted(segment.ids.tolist()) == sorted(expected)
    for row, number in enumerate(segment.ids.tolist()):
        assert np.array_equal(segment.matrix[row], table.rows[number][1])
    stored = reader({number: vector for number, (_, vector) in table.rows.items()})
    fresh = refreshed_segment(
        None, expected, segment.version, stored, dimension=DIMENSION, metric="cosine", subspace=span()
    )
    assert segment.coordinates is not None and fresh.coordinates is not None
    order, fresh_order = np.argsort(segment.ids), np.argsort(fresh.ids)
    assert np.allclose(segment.coordinates[order], fresh.coordinates[fresh_order], atol=1e-6)
    assert segment.unit is not None and fresh.unit is not None
    assert np.allclose(segment.unit[order], fresh.unit[fresh_order], atol=1e-6)


def test_a_refresh_after_a_write_reads_only_what_was_written_since() -> None:
    table = Table(low_rank(1_000, seed=14))
    old = table.segment(None, 1)
    assert len(table.vectors_read) == 1_000
    table.vectors_read.clear()
    table.rows_listed = 0
    extra = low_rank(10, seed=15)
    for offset, vector in enumerate(extra):
        table.rows[1_000 + offset] = (2, vector)
    table.rows[3] = (2, extra[0])  # written again: its new vector replaces the old one

    segment = table.segment(old, 2)

    # The 11 rows written since are listed and read; the 999 others are neither.
    assert (table.rows_listed, sorted(table.vectors_read)) == (11, [3, *range(1_000, 1_010)])
    same_segment(segment, table)
    assert segment is not None and len(segment) == 1_010
    unchanged = table.segment(segment, 3)
    assert unchanged is not None and unchanged.version == 3 and len(table.vectors_read) == 11


def test_a_write_between_the_listing_and_the_count_does_not_force_a_whole_read() -> None:
    table = Table(low_rank(1_000, seed=20))
    old = table.segment(None, 1)
    table.rows[1_000] = (2, low_rank(1, seed=21)[0])
    table.written_meanwhile = {1_001: (3, low_rank(1, seed=22)[0])}
    table.rows_listed = 0

    segment = table.segment(old, 2)

    assert table.rows_listed == 1 and segment is not None and len(segment) == 1_001
    later = table.segment(segment, 3)
    assert table.rows_listed == 2 and later is not None
    same_segment(later, table)


def test_a_segment_extended_in_place_leaves_the_segment_before_it_as_it_was() -> None:
    first = low_rank(200, seed=23)
    table, other = Table(first), Table(first)
    old = table.segment(None, 1)
    assert old is not None
    before = (old.ids.copy(), old.matrix.copy(), old.coordinates.copy() if old.coordinates is not None else None)
    table.rows[200] = (2, low_rank(1, seed=24)[0])
    other.rows[200] = (2, low_rank(1, seed=25)[0])  # another history from the same segment

    mine, theirs = table.segment(old, 2), other.segment(old, 2)

    same_segment(mine, table)
    same_segment(theirs, other)
    assert np.array_equal(old.ids, before[0]) and np.array_equal(old.matrix, before[1])
    assert before[2] is not None and old.coordinates is not None and np.array_equal(old.coordinates, before[2])
    # Only one of them could write into the room after the old rows; the other copied.
    assert mine is not None and theirs is not None
    assert np.shares_memory(mine.matrix, old.matrix) != np.shares_memory(theirs.matrix, old.matrix)


def test_a_delete_since_the_last_refresh_reads_the_segment_again_and_drops_the_item() -> None:
    table = Table(low_rank(500, seed=16))
    old = table.segment(None, 1)
    del table.rows[42]
    table.rows[500] = (2, low_rank(1, seed=17)[0])  # a write too, so the count alone matches the old one
    table.vectors_read.clear()

    segment = table.segment(old, 2)

    assert segment is not None and 42 not in segment.ids.tolist()
    same_segment(segment, table)
    # Read again whole: the kept vectors are reused, only the new one is read.
    assert table.vectors_read == [500]


def test_a_segment_of_another_base_or_past_its_limit_is_not_extended() -> None:
    table = Table(low_rank(300, seed=18))
    old = table.segment(None, 1)
    table.rows.update(
        {number: (2, vector) for number, vector in zip(range(300, 400), low_rank(100, seed=19), strict=True)}
    )
    # The graph took in everything up to version 1: the segment starts again after it.
    rebased = table.segment(old, 2, base=1)
    assert rebased is not None and rebased.base == 1 and len(rebased) == 100
    same_segment(rebased, table)
    assert table.segment(old, 2, limit=399) is None


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
