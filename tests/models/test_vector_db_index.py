"""Specification of `VectorDB` persistence, its HNSW index, its L1 cache and its distances on every path."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.engine import dispose_engines
from models.vector_store import CollectionNotFound, VectorDB
from neuraltrade.memory.collection import METRICS, Filter, Query, SearchResult
from neuraltrade.memory.session import SessionMemory, SessionMemoryConfig
from tests.models.vector_support import (
    ATOL,
    DIMENSION,
    RTOL,
    SYMBOLS,
    aapl,
    assert_brute_force_top_k,
    clustered_vectors,
    moment,
    near_centres,
    new_database,
    picks,
    random_vectors,
    reference_distances,
)
from tests.postgresql import sqlite_only

# -- persistence ------------------------------------------------------------------------------------


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's stores run on SQLite and on PostgreSQL."""
    return storage_url


def test_a_second_store_opened_by_name_sees_the_items_and_takes_the_stored_settings(database_url: str) -> None:
    vectors = random_vectors(100)
    first = VectorDB(
        DIMENSION, name="memory", metric="l2", quantization="int8", partition_key="strategy", database_url=database_url
    )
    first.insert_many([f"p{row}" for row in range(100)], vectors, [{"strategy": "momentum"}] * 100)
    dispose_engines()

    second = VectorDB.open("memory", database_url=database_url)

    assert (second.spec.metric, second.spec.quantization, second.spec.partition_key) == ("l2", "int8", "strategy")
    assert second.spec.dimension == DIMENSION
    assert second.count() == 100
    assert second.search(Query(vectors[42], k=1))[0].id == "p42"
    item = second.get("p42")
    assert item is not None
    assert np.array_equal(item.vector, vectors[42])


def test_opening_an_unknown_collection_is_not_found_by_name(database_url: str) -> None:
    with pytest.raises(CollectionNotFound, match="'nothing_here'"):
        VectorDB.open("nothing_here", database_url=database_url)


def test_collections_of_one_database_hold_their_own_items(database_url: str) -> None:
    vectors = random_vectors(20)
    left = VectorDB(DIMENSION, name="left", database_url=database_url)
    right = VectorDB(DIMENSION, name="right", database_url=database_url)
    left.insert_many([f"x{row}" for row in range(10)], vectors[:10], aapl(10))
    right.insert_many([f"x{row}" for row in range(10)], vectors[10:], aapl(10))
    assert left.count() == right.count() == 10
    left_item, right_item = left.get("x0"), right.get("x0")
    assert left_item is not None and right_item is not None
    assert np.array_equal(left_item.vector, vectors[0])
    assert np.array_equal(right_item.vector, vectors[10])
    assert left.delete(["x1"]) == 1
    assert right.count() == 10


# -- the HNSW index ---------------------------------------------------------------------------------

HNSW_COUNT = 2_000


@pytest.fixture
def hnsw_data() -> tuple[list[str], np.ndarray, list[dict[str, Any]], list[datetime], np.ndarray]:
    vectors, centres = clustered_vectors(HNSW_COUNT, DIMENSION, clusters=25, seed=12)
    keys = [f"h{row}" for row in range(HNSW_COUNT)]
    metadata = [{"symbol": SYMBOLS[row % 4], "volume": row % 1_000} for row in range(HNSW_COUNT)]
    stamps = [moment(row) for row in range(HNSW_COUNT)]
    return keys, vectors, metadata, stamps, near_centres(centres, 30, seed=13)


def overlap_at_10(first: Sequence[SearchResult], second: Sequence[SearchResult]) -> float:
    return len({result.id for result in first} & {result.id for result in second}) / 10


def test_inserts_are_searchable_at_once_and_a_sealed_graph_agrees_with_exact_search(
    database_url: str, hnsw_data: Any
) -> None:
    keys, vectors, metadata, stamps, queries = hnsw_data
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    assert db.index_status == "fresh"
    for start in range(0, HNSW_COUNT, 400):
        db.insert_many(
            keys[start : start + 400],
            vectors[start : start + 400],
            metadata[start : start + 400],
            timestamps=stamps[start : start + 400],
        )
        # Nothing is in the graph yet: every item is in the unsealed segment, searched exactly.
        assert (db.index_status, db.segment_size, db.index_size) == ("missing", start + 400, 0)
        newest = start + 399
        assert db.search(Query(vectors[newest], k=1))[0].id == keys[newest]

    assert db.seal() == HNSW_COUNT
    assert (db.index_status, db.segment_size, db.index_size) == ("fresh", 0, HNSW_COUNT)
    db.insert("single", queries[0], {"symbol": "AAPL"}, timestamp=moment(HNSW_COUNT))
    assert (db.index_status, db.segment_size) == ("behind", 1)

    agreement = np.mean(
        [overlap_at_10(db.search(Query(query, k=10)), db.search(Query(query, k=10, exact=True))) for query in queries]
    )
    print(f"hnsw agreement with exact top-10: {agreement:.3f}")
    assert agreement >= 0.95
    assert db.search(Query(queries[0], k=1))[0].id == "single"
    for query in queries[:5]:
        for result in db.search(Query(query, k=10)):
            row = keys.index(result.id) if result.id != "single" else None
            vector = queries[0] if row is None else vectors[row]
            assert result.distance == pytest.approx(
                float(reference_distances("cosine", query, vector[None])[0]), abs=1e-4
            )


def test_a_saved_graph_is_searched_with_the_breadth_of_the_store_that_opened_it(
    database_url: str, hnsw_data: Any
) -> None:
    from models.ann_index import HnswConfig

    keys, vectors, metadata, stamps, queries = hnsw_data
    narrow = HnswConfig(m=4, ef_construction=16, ef_search=1)
    with VectorDB(DIMENSION, index_type="hnsw", hnsw=narrow, database_url=database_url) as db:
        db.insert_many(keys, vectors, metadata, timestamps=stamps)
    dispose_engines()

    def agreement(db: VectorDB) -> float:
        return float(
            np.mean([overlap_at_10(db.search(Query(q, k=10)), db.search(Query(q, k=10, exact=True))) for q in queries])
        )

    # The file says ef_search=1; each store searches it with its own breadth.
    reopened = VectorDB(DIMENSION, index_type="hnsw", hnsw=narrow, database_url=database_url)
    wide = VectorDB(DIMENSION, index_type="hnsw", hnsw=HnswConfig(m=4, ef_construction=16), database_url=database_url)
    assert reopened.index_status == wide.index_status == "fresh"
    assert HnswConfig().ef_search == 256
    assert agreement(wide) >= 0.95 > agreement(reopened)
    assert agreement(VectorDB.open("default", database_url=database_url)) >= 0.95  # the default breadth, 256


@pytest.mark.parametrize("metric", ["l2", "inner_product"])
def test_the_hnsw_index_measures_distances_as_the_store_does(database_url: str, metric: str) -> None:
    vectors = random_vectors(500, seed=31)
    db = VectorDB(DIMENSION, metric=metric, index_type="hnsw", database_url=database_url)
    db.insert_many([f"m{row}" for row in range(250)], vectors[:250], aapl(250))
    db.seal()
    # Half in the graph, half in the segment: both measure as the exact path does.
    db.insert_many([f"m{row}" for row in range(250, 500)], vectors[250:], aapl(250))
    assert (db.index_size, db.segment_size) == (250, 250)
    for query in random_vectors(5, seed=32):
        approximate = db.search(Query(query, k=10))
        exact = db.search(Query(query, k=10, exact=True))
        assert overlap_at_10(approximate, exact) >= 0.8
        rows = [int(result.id[1:]) for result in approximate]
        np.testing.assert_allclose(
            [result.distance for result in approximate],
            reference_distances(metric, query, vectors[rows]),
            rtol=RTOL,
            atol=1e-4,
        )


def test_deletes_and_upserts_keep_the_hnsw_index_fresh_and_correct(database_url: str, hnsw_data: Any) -> None:
    keys, vectors, metadata, stamps, _ = hnsw_data
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many(keys[:800], vectors[:800], metadata[:800], timestamps=stamps[:800])
    db.seal()

    assert db.delete(keys[:10]) == 10
    db.upsert(keys[20], -vectors[20], {"symbol": "AAPL"})

    # The graph no longer holds the deleted items; the upserted one's new vector is in the segment and
    # shadows its old one in the graph.
    assert (db.index_status, db.index_size, db.segment_size) == ("behind", 790, 1)
    for row in range(10):
        assert not {result.id for result in db.search(Query(vectors[row], k=10))} & set(keys[:10])
    replaced = db.search(Query(-vectors[20], k=1))[0]
    assert (replaced.id, replaced.distance) == (keys[20], pytest.approx(0.0, abs=1e-4))
    assert keys[20] not in {result.id for result in db.search(Query(vectors[20], k=10))}


def test_a_write_by_another_store_is_searched_at_once_beside_the_graph(database_url: str, hnsw_data: Any) -> None:
    keys, vectors, metadata, stamps, queries = hnsw_data
    mine = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    mine.insert_many(keys[:1_500], vectors[:1_500], metadata[:1_500], timestamps=stamps[:1_500])
    mine.seal()
    assert mine.index_status == "fresh"

    theirs = VectorDB.open("default", database_url=database_url)
    theirs.insert_many(keys[1_500:], vectors[1_500:], metadata[1_500:], timestamps=stamps[1_500:])

    assert (mine.index_status, mine.segment_size) == ("behind", HNSW_COUNT - 1_500)
    for row in (1_500, 1_700, 1_999):
        assert mine.search(Query(vectors[row], k=1))[0].id == keys[row]
    agreement = np.mean(
        [overlap_at_10(mine.search(Query(q, k=10)), mine.search(Query(q, k=10, exact=True))) for q in queries]
    )
    assert agreement >= 0.95

    mine.insert("mine-again", queries[2], {"symbol": "AAPL"})
    assert mine.search(Query(queries[2], k=1))[0].id == "mine-again"
    # Sealing takes in both stores' items.
    assert mine.seal() == HNSW_COUNT - 1_500 + 1
    assert (mine.index_status, mine.index_size, mine.segment_size) == ("fresh", HNSW_COUNT + 1, 0)


def test_a_graph_sealed_by_another_store_is_taken_up_by_a_searching_store(database_url: str, hnsw_data: Any) -> None:
    """One process seals (the writer, maintenance); the searching ones load its graph instead of each
    scanning the unsealed items and building graphs of them."""
    keys, vectors, metadata, stamps, _ = hnsw_data
    writer = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    writer.insert_many(keys[:1_000], vectors[:1_000], metadata[:1_000], timestamps=stamps[:1_000])
    writer.seal()
    searcher = VectorDB.open("default", database_url=database_url, index_type="hnsw")
    assert (searcher.index_status, searcher.index_size) == ("fresh", 1_000)

    writer.insert_many(keys[1_000:], vectors[1_000:], metadata[1_000:], timestamps=stamps[1_000:])
    writer.seal()

    # Answered at once from the segment while the sealed graph loads beside the searches.
    assert searcher.search(Query(vectors[1_500], k=1))[0].id == keys[1_500]
    deadline = time.monotonic() + 30
    while searcher.index_size != HNSW_COUNT and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (searcher.index_status, searcher.index_size, searcher.segment_size) == ("fresh", HNSW_COUNT, 0)
    assert searcher.search(Query(vectors[1_999], k=1))[0].id == keys[1_999]
    searcher.close()


def test_a_delete_by_another_store_is_never_answered_and_k_results_still_come(
    database_url: str, hnsw_data: Any
) -> None:
    keys, vectors, metadata, stamps, _ = hnsw_data
    mine = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    mine.insert_many(keys[:300], vectors[:300], metadata[:300], timestamps=stamps[:300])
    mine.seal()
    VectorDB.open("default", database_url=database_url).delete(keys[:150])
    assert mine.index_status == "behind"
    for row in (5, 100, 149, 200):
        results = mine.search(Query(vectors[row], k=10))
        assert len(results) == 10
        assert {result.id for result in results} <= set(keys[150:300])
    # Sealing drops what is no longer stored from the graph.
    mine.seal()
    assert (mine.index_status, mine.index_size) == ("fresh", 150)


def test_writes_and_deletes_by_another_store_reach_a_searchers_warm_segment(database_url: str, hnsw_data: Any) -> None:
    keys, vectors, metadata, stamps, _ = hnsw_data
    searcher = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    searcher.insert_many(keys[:300], vectors[:300], metadata[:300], timestamps=stamps[:300])
    searcher.seal()
    other = VectorDB.open("default", database_url=database_url)
    other.insert_many(keys[300:500], vectors[300:500], metadata[300:500], timestamps=stamps[300:500])
    assert searcher.search(Query(vectors[320], k=1))[0].id == keys[320]  # the segment is read

    other.delete(keys[300:350])
    other.upsert_many(keys[350:360], -vectors[350:360], metadata[350:360], timestamps=stamps[350:360])
    other.insert_many(keys[500:520], vectors[500:520], metadata[500:520], timestamps=stamps[500:520])

    assert searcher.segment_size == 170
    for row in (300, 320, 349):
        assert not {result.id for result in searcher.search(Query(vectors[row], k=10))} & set(keys[300:350])
    rewritten = searcher.search(Query(-vectors[355], k=1))[0]
    assert (rewritten.id, rewritten.distance) == (keys[355], pytest.approx(0.0, abs=1e-4))
    assert searcher.search(Query(vectors[510], k=1))[0].id == keys[510]


def test_rebuilding_the_index_makes_it_fresh_and_writes_its_file_atomically(database_url: str, hnsw_data: Any) -> None:
    keys, vectors, metadata, stamps, queries = hnsw_data
    VectorDB(DIMENSION, database_url=database_url).insert_many(keys, vectors, metadata, timestamps=stamps)
    db = VectorDB.open("default", database_url=database_url, index_type="hnsw")
    assert db.index_status == "missing"
    assert db.index_file is not None
    assert not db.index_file.exists()

    assert db.rebuild_index() == HNSW_COUNT

    assert db.index_status == "fresh"
    assert db.index_file.is_file()
    assert Path(f"{db.index_file}.json").is_file()
    leftovers = [path.name for path in db.index_file.parent.iterdir() if path.name.endswith(".tmp")]
    assert leftovers == []
    agreement = np.mean(
        [overlap_at_10(db.search(Query(query, k=10)), db.search(Query(query, k=10, exact=True))) for query in queries]
    )
    assert agreement >= 0.95

    # A later store loads the saved index instead of starting without one.
    reopened = VectorDB.open("default", database_url=database_url, index_type="hnsw")
    assert reopened.index_status == "fresh"
    assert overlap_at_10(reopened.search(Query(queries[0], k=10)), db.search(Query(queries[0], k=10))) == 1.0


def test_a_saved_graph_older_than_the_store_opens_behind(database_url: str, hnsw_data: Any) -> None:
    keys, vectors, metadata, stamps, _ = hnsw_data
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many(keys[:500], vectors[:500], metadata[:500], timestamps=stamps[:500])
    db.seal()
    VectorDB.open("default", database_url=database_url).insert("late", vectors[600], {"symbol": "MSFT"})
    reopened = VectorDB.open("default", database_url=database_url, index_type="hnsw")
    assert (reopened.index_status, reopened.index_size, reopened.segment_size) == ("behind", 500, 1)
    assert reopened.search(Query(vectors[600], k=1))[0].id == "late"


def _collection_version(database_url: str) -> int:
    from models.collections import get_collection
    from models.engine import session_scope

    with session_scope(database_url) as session:
        return get_collection(session, "default").version


@sqlite_only
def test_a_graph_of_another_history_is_not_used_even_at_the_version_the_database_reached(
    database_url: str, hnsw_data: Any
) -> None:
    """A database restored from a backup and written to again reaches the graph's version with other
    items: the graph's token names the write it was sealed at, which this history never made."""
    from models.vector_maintenance import inspect_integrity, saved_index_status

    keys, vectors, metadata, stamps, _ = hnsw_data
    path = Path(database_url.removeprefix("sqlite:///"))
    backup = path.with_name("backup.db")
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many(keys[:500], vectors[:500], metadata[:500], timestamps=stamps[:500])
    db.close()
    dispose_engines()
    shutil.copyfile(path, backup)
    lost = VectorDB.open("default", database_url=database_url, index_type="hnsw")
    lost.insert_many(keys[500:1000], vectors[500:1000], metadata[500:1000], timestamps=stamps[500:1000])
    lost.seal()
    lost.close()
    version = _collection_version(database_url)
    dispose_engines()
    shutil.copyfile(backup, path)  # the restore; the graph file beside it stays
    again = VectorDB.open("default", database_url=database_url)
    again.insert_many(keys[1000:1500], vectors[1000:1500], metadata[1000:1500], timestamps=stamps[1000:1500])
    assert _collection_version(database_url) == version

    assert saved_index_status(database_url, "default") == "unusable"
    reopened = VectorDB.open("default", database_url=database_url, index_type="hnsw")
    assert (reopened.index_status, reopened.index_size) == ("missing", 0)
    # Every answer is of the stored items: the lost history's items are never answered.
    allowed = (np.arange(HNSW_COUNT) < 500) | ((np.arange(HNSW_COUNT) >= 1000) & (np.arange(HNSW_COUNT) < 1500))
    for query in vectors[[3, 700, 1200]]:
        assert_brute_force_top_k(reopened.search(Query(query, k=10)), "cosine", query, keys, vectors, allowed, 10)
    reopened.seal()
    assert inspect_integrity(database_url, "default").index_status == "fresh"
    assert saved_index_status(database_url, "default") == "fresh"


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "delete-sidecar"])
def test_a_damaged_index_file_opens_as_missing_and_searches_answer_exactly(
    database_url: str, hnsw_data: Any, damage: str
) -> None:
    keys, vectors, metadata, stamps, queries = hnsw_data
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many(keys[:500], vectors[:500], metadata[:500], timestamps=stamps[:500])
    db.rebuild_index()
    path = db.index_file
    assert path is not None
    size = path.stat().st_size
    if damage == "truncate":
        with path.open("r+b") as handle:
            handle.truncate(size // 2)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(size))
    else:
        Path(f"{path}.json").unlink()

    reopened = VectorDB.open("default", database_url=database_url, index_type="hnsw")

    assert reopened.index_status == "missing"
    allowed = np.arange(HNSW_COUNT) < 500
    for query in queries[:5]:
        assert_brute_force_top_k(reopened.search(Query(query, k=10)), "cosine", query, keys, vectors, allowed, 10)
    reopened.rebuild_index()
    assert reopened.index_status == "fresh"


def test_an_hnsw_search_with_a_filter_returns_only_matching_items(database_url: str, hnsw_data: Any) -> None:
    keys, vectors, metadata, stamps, queries = hnsw_data
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many(keys, vectors, metadata, timestamps=stamps)
    db.seal()
    for where in (Filter.lt("volume", 20), Filter.ge("volume", 500), Filter.eq("volume", 999)):
        allowed = np.array([picks(where, meta) for meta in metadata])
        for query in queries[:5]:
            results = db.search(Query(query, k=10, where=where))
            assert len(results) == min(10, int(allowed.sum()))
            assert all(allowed[keys.index(result.id)] for result in results)


def test_as_of_holds_on_the_hnsw_path_with_and_without_a_filter(database_url: str, hnsw_data: Any) -> None:
    keys, vectors, metadata, stamps, queries = hnsw_data
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many(keys, vectors, metadata, timestamps=stamps)
    db.seal()
    assert db.index_status == "fresh"
    for cut in (5, 700, 1_999):
        as_of = moment(cut)
        for where in (None, Filter.gt("volume", 100), Filter.eq("symbol", "AAPL")):
            for query in (*queries[:3], vectors[cut], vectors[cut - 1]):
                results = db.search(Query(query, k=10, as_of=as_of, where=where))
                assert all(int(result.id[1:]) < cut for result in results)
                assert all(result.timestamp < as_of for result in results)
        # The newest item before the cut is its own nearest neighbour; the one at the cut is invisible.
        assert db.search(Query(vectors[cut - 1], k=1, as_of=as_of))[0].id == keys[cut - 1]
        assert keys[cut] not in {result.id for result in db.search(Query(vectors[cut], k=10, as_of=as_of))}
        allowed = np.arange(HNSW_COUNT) < cut
        assert len(db.search(Query(queries[0], k=10, as_of=as_of))) == min(10, int(allowed.sum()))


# -- the L1 cache -----------------------------------------------------------------------------------


def cached_store(database_url: str, count: int = 300, **options: Any) -> tuple[VectorDB, SessionMemory, np.ndarray]:
    cache = SessionMemory(SessionMemoryConfig())
    db = VectorDB(DIMENSION, database_url=database_url, cache=cache, **options)
    vectors = random_vectors(count, seed=41)
    db.insert_many([f"c{row}" for row in range(count)], vectors, [{"symbol": SYMBOLS[row % 4]} for row in range(count)])
    return db, cache, vectors


def test_a_repeated_search_is_a_cache_hit_with_equal_results(database_url: str) -> None:
    db, cache, vectors = cached_store(database_url)
    query = Query(vectors[10], k=10).filter(Filter.eq("symbol", "MSFT"))
    first = db.search(query)
    hits = cache.statistics.hits

    again = db.search(Query(vectors[10].copy(), k=10).filter(Filter.eq("symbol", "MSFT")))

    assert cache.statistics.hits == hits + 1
    assert again == first
    assert db.search(Query(vectors[10], k=11).filter(Filter.eq("symbol", "MSFT"))) != first


def test_a_write_through_the_store_invalidates_cached_results(database_url: str) -> None:
    db, _, vectors = cached_store(database_url)
    query = Query(vectors[7] + 0.01, k=3)
    assert db.search(query)[0].id == "c7"

    db.insert("newcomer", vectors[7] + 0.01, {"symbol": "AAPL"})
    assert db.search(query)[0].id == "newcomer"

    db.delete(["newcomer"])
    assert db.search(query)[0].id == "c7"

    db.upsert("c100", vectors[7] + 0.01, {"symbol": "AAPL"})
    assert db.search(query)[0].id == "c100"


def test_get_is_cached_and_a_write_invalidates_the_item(database_url: str) -> None:
    db, cache, vectors = cached_store(database_url)
    first = db.get("c5")
    hits = cache.statistics.hits
    second = db.get("c5")
    assert cache.statistics.hits == hits + 1
    assert first is not None and second is not None
    assert np.array_equal(second.vector, vectors[5])

    db.upsert("c5", vectors[6], {"symbol": "NVDA"})
    replaced = db.get("c5")
    assert replaced is not None
    assert np.array_equal(replaced.vector, vectors[6])
    assert replaced.metadata == {"symbol": "NVDA"}

    db.delete("c5")
    assert db.get("c5") is None


def try_to_change(change: Callable[[], object]) -> None:
    """Attempt `change`; refusing it (read-only results) is as good as ignoring it."""
    with contextlib.suppress(TypeError, ValueError):
        change()


def test_changing_what_the_store_returned_does_not_change_its_next_answer(database_url: str) -> None:
    db, _, vectors = cached_store(database_url)
    item = db.get("c5")
    assert item is not None
    results = db.search(Query(vectors[5], k=1))

    def zero_vector() -> None:
        item.vector[:] = 0.0

    def rename_symbol() -> None:
        item.metadata["symbol"] = "CHANGED"  # type: ignore[index]

    def rename_result_symbol() -> None:
        results[0].metadata["symbol"] = "CHANGED"  # type: ignore[index]

    for change in (zero_vector, rename_symbol, rename_result_symbol):
        try_to_change(change)

    again = db.get("c5")
    assert again is not None
    assert np.array_equal(again.vector, vectors[5])
    assert again.metadata["symbol"] == "MSFT"
    assert db.search(Query(vectors[5], k=1))[0].metadata["symbol"] == "MSFT"


def test_a_replay_of_recent_states_by_several_strategies_is_answered_mostly_from_the_cache(database_url: str) -> None:
    # 300 steps; at each, 5 strategies (each with its own question: k and symbols) re-query the 50 most recent
    # states, each as of its own moment, so a state's question is the same at every step that sees it.
    steps, window, count = 300, 50, 400
    cache = SessionMemory(SessionMemoryConfig(max_results=5_000))
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url, cache=cache)
    vectors = random_vectors(count, seed=51)
    stamps = [moment(row) for row in range(count)]
    db.insert_many(
        [f"s{row}" for row in range(count)],
        vectors,
        [{"symbol": SYMBOLS[row % 4]} for row in range(count)],
        timestamps=stamps,
    )
    strategies = [
        (5, None),
        (10, None),
        (10, Filter.eq("symbol", "AAPL")),
        (20, Filter.in_("symbol", ["MSFT", "NVDA"])),
        (10, Filter.eq("symbol", "TSLA")),
    ]
    # A replay holds the question of each (strategy, state) it has seen, as a backtest holds its states.
    questions = {
        (strategy, state): Query(vectors[state], k=k, where=where, as_of=stamps[state])
        for strategy, (k, where) in enumerate(strategies)
        for state in range(count - steps - window + 1, count)
    }
    cache.reset_statistics()

    answers: dict[tuple[int, int], list[SearchResult]] = {}
    for step in range(count - steps, count):
        for strategy in range(len(strategies)):
            for state in range(step - window + 1, step + 1):
                results = db.search(questions[strategy, state])
                if answers.setdefault((strategy, state), results) is not results:
                    assert results == answers[strategy, state]
    assert all(result.timestamp < stamps[state] for (_, state), found in answers.items() for result in found)

    statistics = cache.statistics
    print(f"replay: {statistics.hits} hits, {statistics.misses} misses, hit rate {statistics.hit_rate:.3f}")
    assert statistics.hits + statistics.misses == steps * len(strategies) * window
    assert statistics.hit_rate >= 0.8


def test_a_cache_shared_by_two_collections_keeps_their_answers_apart(database_url: str) -> None:
    cache = SessionMemory(SessionMemoryConfig())
    vectors = random_vectors(20)
    left = VectorDB(DIMENSION, name="left", database_url=database_url, cache=cache)
    right = VectorDB(DIMENSION, name="right", database_url=database_url, cache=cache)
    left.insert_many([f"l{row}" for row in range(10)], vectors[:10], aapl(10))
    right.insert_many([f"r{row}" for row in range(10)], vectors[10:], aapl(10))
    query = Query(vectors[0], k=3)
    assert left.search(query)[0].id == "l0"
    assert right.search(query)[0].id.startswith("r")
    assert left.get("r1") is None


# -- distances on every path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantization", "index_type", "metric"),
    [
        (quantization, index_type, metric)
        for quantization, index_type in [("none", "exact"), ("none", "hnsw"), ("int8", "exact"), ("binary", "exact")]
        for metric in METRICS
    ],
)
def test_a_stored_vector_is_at_its_own_distance_from_itself_on_every_path(
    database_url: str, quantization: str, index_type: str, metric: str
) -> None:
    vectors = random_vectors(200, seed=61) * np.float32(2.0)
    db = VectorDB(DIMENSION, metric=metric, quantization=quantization, index_type=index_type, database_url=database_url)
    db.insert_many([f"v{row}" for row in range(200)], vectors, aapl(200))
    for row in (0, 77, 199):
        nearest = db.search(Query(vectors[row], k=1, oversample=16))[0]
        expected = float(reference_distances(metric, vectors[row], vectors[row])[0])
        assert nearest.id == f"v{row}" or metric == "inner_product"
        assert nearest.distance == pytest.approx(expected, rel=RTOL, abs=ATOL), f"{metric} self-distance of v{row}"


def test_a_cache_shared_by_stores_of_two_databases_keeps_their_answers_apart(tmp_path: Path) -> None:
    cache = SessionMemory(SessionMemoryConfig())
    vectors = random_vectors(2)
    backtest = VectorDB(DIMENSION, database_url=new_database(tmp_path / "backtest"), cache=cache)
    live = VectorDB(DIMENSION, database_url=new_database(tmp_path / "live"), cache=cache)
    backtest.insert("only-in-backtest", vectors[0], {"symbol": "AAPL"})
    live.insert("only-in-live", vectors[1], {"symbol": "AAPL"})
    assert backtest.get("only-in-backtest") is not None
    assert [result.id for result in backtest.search(Query(vectors[0], k=5))] == ["only-in-backtest"]

    assert live.get("only-in-backtest") is None
    assert [result.id for result in live.search(Query(vectors[0], k=5))] == ["only-in-live"]
