"""Specification of the unsealed segment (issue 13, point 3): every committed item is searchable at once,
from this process or another, beside an HNSW graph that catches up off the write path."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import partition_index, vector_index
from models.vector_store import VectorDB
from neuraltrade.memory.collection import Filter, Query
from tests.models.vector_support import DIMENSION, aapl, random_vectors

CHILD_ITEMS = 40
PATIENCE = 120


def child_writer(database_url: str, vectors: np.ndarray, written: Any, go: Any) -> None:
    """Another process: one item per committed write, each announced only after its commit returned."""
    db = VectorDB(DIMENSION, database_url=database_url)
    go.wait(PATIENCE)
    for row, vector in enumerate(vectors):
        db.insert(f"child-{row}", vector, {"symbol": "AAPL"})
        written.put(row)
    db.close()


def test_items_another_process_commits_are_found_by_the_next_search(database_url: str) -> None:
    mine = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    mine.insert_many([f"base-{row}" for row in range(500)], random_vectors(500, seed=1), aapl(500))
    mine.seal()
    assert mine.index_status == "fresh"
    theirs = random_vectors(CHILD_ITEMS, seed=2)
    context = multiprocessing.get_context("spawn")
    written, go = context.Queue(), context.Event()
    child = context.Process(target=child_writer, args=(database_url, theirs, written, go))
    child.start()
    try:
        go.set()
        for _ in range(CHILD_ITEMS):
            row = written.get(timeout=PATIENCE)
            # The very next search, with nothing rebuilt or reloaded, finds the item just committed.
            found = mine.search(Query(theirs[row], k=1))
            assert (found[0].id, found[0].distance) == (f"child-{row}", pytest.approx(0.0, abs=1e-5))
        child.join(PATIENCE)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
    assert (mine.index_status, mine.segment_size, mine.index_size) == ("behind", CHILD_ITEMS, 500)


def test_a_large_segment_becomes_a_delta_graph_in_the_background_and_closing_seals_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vector_index, "MERGE_THRESHOLD", 100)
    vectors = random_vectors(300, seed=3)
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many([f"m{row}" for row in range(200)], vectors[:200], aapl(200))
    db.seal()
    db.insert_many([f"m{row}" for row in range(200, 300)], vectors[200:], aapl(100))
    assert db.search(Query(vectors[250], k=1))[0].id == "m250"  # this search starts the delta's build
    deadline = time.monotonic() + PATIENCE
    while db.segment_size and time.monotonic() < deadline:
        time.sleep(0.05)
    # The new items are in the delta graph now, the main graph is as sealed, nothing is scanned exactly.
    assert (db.index_status, db.index_size, db.segment_size) == ("behind", 200, 0)
    for row in (0, 199, 200, 299):
        assert db.search(Query(vectors[row], k=1))[0].id == f"m{row}"
    # Upserted and deleted after the delta was built: the newest layer answers.
    db.upsert("m250", -vectors[250], {"symbol": "AAPL"})
    db.delete(["m260"])
    assert db.search(Query(-vectors[250], k=1))[0].id == "m250"
    assert "m260" not in {result.id for result in db.search(Query(vectors[260], k=10))}
    db.close()  # the store wrote: closing seals everything into the main graph and saves it
    reopened = VectorDB.open("default", database_url=database_url, index_type="hnsw")
    assert (reopened.index_status, reopened.index_size, reopened.segment_size) == ("fresh", 299, 0)
    assert reopened.search(Query(vectors[123], k=1))[0].id == "m123"


def test_a_graph_file_sealed_past_the_database_is_not_used(database_url: str) -> None:
    vectors = random_vectors(200, seed=4)
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many([f"f{row}" for row in range(200)], vectors, aapl(200))
    db.seal()
    assert db.index_file is not None
    sidecar = Path(f"{db.index_file}.json")
    described = json.loads(sidecar.read_text())
    # As if the database had been restored from a backup older than the graph.
    described["state"]["version"] += 5
    sidecar.write_text(json.dumps(described))
    reopened = VectorDB.open("default", database_url=database_url, index_type="hnsw")
    assert (reopened.index_status, reopened.index_size, reopened.segment_size) == ("missing", 0, 200)
    assert reopened.search(Query(vectors[50], k=1))[0].id == "f50"


def test_too_large_a_segment_is_answered_exactly_until_sealed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vector_index, "SEGMENT_LIMIT", 50)
    vectors = random_vectors(120, seed=5)
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many([f"s{row}" for row in range(120)], vectors, aapl(120))
    assert (db.index_status, db.segment_size) == ("missing", None)
    assert db.search(Query(vectors[99], k=1))[0].id == "s99"
    assert db.seal() == 120
    assert (db.index_status, db.segment_size, db.index_size) == ("fresh", 0, 120)


def test_a_query_filtered_to_one_partition_searches_that_partition_s_own_graph(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partition_index, "GRAPH_MIN_ITEMS", 100)
    symbols = ("AAPL", "MSFT", "NVDA", "TSLA")
    vectors = random_vectors(1_200, seed=6)
    keys = [f"p{row}" for row in range(1_200)]
    metadata = [{"symbol": symbols[row % 4]} for row in range(1_200)]
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert_many(keys[:1_000], vectors[:1_000], metadata[:1_000])
    db.seal()
    graphs = db._partition_graphs
    assert graphs is not None
    assert [graphs.size(symbol) for symbol in symbols] == [250, 250, 250, 250]
    # Written after sealing: the partition's unsealed segment, merged with its graph's answer.
    db.insert_many(keys[1_000:], vectors[1_000:], metadata[1_000:])
    db.delete(["p4"])
    for row in (0, 8, 999, 1_000, 1_199):
        symbol = symbols[row % 4]
        results = db.search(Query(vectors[row], k=10, where=Filter.eq("symbol", symbol)))
        assert len(results) == 10
        assert {result.metadata["symbol"] for result in results} == {symbol}
        assert "p4" not in {result.id for result in results}
        if row != 4:
            assert results[0].id == f"p{row}"
        exact = db.search(Query(vectors[row], k=10, where=Filter.eq("symbol", symbol), exact=True))
        assert len({r.id for r in results} & {r.id for r in exact}) >= 9
    # Another store of the collection loads the saved partition graphs.
    db.close()
    reopened = VectorDB.open("default", database_url=database_url, index_type="hnsw")
    assert reopened._partition_graphs is not None
    assert reopened._partition_graphs.size("MSFT") == 300
    found = reopened.search(Query(vectors[1_001], k=3, where=Filter.eq("symbol", "MSFT")))
    assert found[0].id == "p1001"
