"""Writes of stored items: replaced in place when they stay in their partition (`models.item_writes`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from models.engine import get_engine
from models.item_writes import stored_in_place
from models.memory_items import StoredRow
from models.vector_maintenance import inspect_integrity
from models.vector_store import VectorDB
from neuraltrade.memory.collection import Filter, Query
from tests.models.vector_support import DIMENSION, random_vectors


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's stores run on SQLite and on PostgreSQL."""
    return storage_url


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as connection:
        return [tuple(row) for row in connection.exec_driver_sql(sql)]


def sequences(url: str) -> dict[str, int]:
    return {key: sequence for key, sequence in rows(url, "SELECT key, sequence FROM memory_items")}


def symbols(count: int, symbol: str) -> list[dict[str, Any]]:
    return [{"symbol": symbol, "row": row} for row in range(count)]


def test_only_stored_items_that_keep_their_partition_are_replaced_in_place() -> None:
    stored = {
        number: StoredRow(key=key, sequence=number + 9, partition=partition, timestamp=0, observation_id=None)
        for number, key, partition in [(1, "a", "AAPL"), (2, "b", "AAPL"), (3, "c", None)]
    }
    assert stored_in_place(stored, [1, 2, 4], ["AAPL", "MSFT", "AAPL"]) == [True, False, False]
    assert stored_in_place(stored, [3, 4], None) == [True, False]


@pytest.mark.parametrize("quantization", ["none", "int8", "binary"])
def test_replacing_upserts_keep_each_items_row_and_store_its_new_vector_and_metadata(
    database_url: str, quantization: str
) -> None:
    db = VectorDB(DIMENSION, name="replaced", quantization=quantization, database_url=database_url)
    keys = [f"k{row}" for row in range(300)]
    first, second = random_vectors(300, seed=1), random_vectors(300, seed=2)
    db.insert_many(keys, first, symbols(300, "AAPL"))
    before = sequences(database_url)

    assert db.upsert_many(keys, second, symbols(300, "AAPL")) == 300

    assert sequences(database_url) == before
    assert db.count() == 300
    for row in (0, 137, 299):
        item = db.get(keys[row])
        assert item is not None and np.array_equal(item.vector, second[row])
        assert item.metadata == {"symbol": "AAPL", "row": row}
        assert db.search(Query(second[row], k=1))[0].id == keys[row]
    assert inspect_integrity(database_url, "replaced").problems == []


def test_an_upsert_that_moves_items_to_another_partition_writes_them_anew_there(database_url: str) -> None:
    db = VectorDB(DIMENSION, name="moved", database_url=database_url)
    vectors = random_vectors(60, seed=3)
    db.insert_many([f"k{row}" for row in range(40)], vectors[:40], symbols(40, "AAPL"))
    before = sequences(database_url)
    # One write: 10 items stay in AAPL, 10 move to MSFT, 20 are new.
    keys = [f"k{row}" for row in range(20)] + [f"k{row}" for row in range(40, 60)]
    metadata = symbols(10, "AAPL") + symbols(10, "MSFT") + symbols(20, "MSFT")
    replacement = np.vstack([vectors[:20] * 2, vectors[40:]])

    assert db.upsert_many(keys, replacement, metadata) == 40

    after = sequences(database_url)
    assert [after[f"k{row}"] == before[f"k{row}"] for row in range(20)] == [True] * 10 + [False] * 10
    assert min(after[f"k{row}"] for row in range(10, 20)) > max(before.values())
    assert db.count() == 60
    assert db.count(Filter.eq("symbol", "MSFT")) == 30
    moved = db.search(Query(vectors[15] * 2, k=1).filter(Filter.eq("symbol", "MSFT")))
    assert moved[0].id == "k15" and moved[0].distance == pytest.approx(0.0, abs=1e-6)
    left = db.search(Query(vectors[15] * 2, k=40).filter(Filter.eq("symbol", "AAPL")))
    assert "k15" not in {result.id for result in left}
    assert inspect_integrity(database_url, "moved").problems == []


def test_a_replaced_item_of_a_sealed_graph_is_found_by_its_new_vector_only(database_url: str) -> None:
    db = VectorDB(DIMENSION, name="graph", index_type="hnsw", database_url=database_url)
    keys = [f"k{row}" for row in range(500)]
    first = random_vectors(500, seed=4)
    db.insert_many(keys, first, symbols(500, "AAPL"))
    db.seal()
    new = random_vectors(1, seed=5)[0]

    db.upsert_many(["k7"], new[None, :], symbols(1, "AAPL"))

    assert db.search(Query(new, k=1))[0].id == "k7"
    assert "k7" not in {result.id for result in db.search(Query(first[7], k=5))}
    db.seal()
    assert db.search(Query(new, k=1))[0].id == "k7"
    assert inspect_integrity(database_url, "graph").problems == []


def test_a_replacing_upsert_may_change_an_items_timestamp(database_url: str) -> None:
    db = VectorDB(DIMENSION, name="stamped", database_url=database_url)
    vectors = random_vectors(4, seed=6)
    early, late = datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)
    db.insert_many(["a", "b", "c", "d"], vectors, symbols(4, "AAPL"), timestamps=[early] * 4)

    # "a", "b" and "d" are re-run as they were; "c" changes its time.
    db.upsert_many(["a", "b", "c", "d"], vectors, symbols(4, "AAPL"), timestamps=[early, early, late, early])

    items = {key: db.get(key) for key in "abcd"}
    assert {key: item.timestamp for key, item in items.items() if item is not None} == {
        "a": early,
        "b": early,
        "c": late,
        "d": early,
    }
    # The time index follows: a search as of February sees the three items still stamped in January.
    query = Query(vectors[2], k=4, as_of=datetime(2024, 2, 1, tzinfo=UTC))
    assert sorted(result.id for result in db.search(query)) == ["a", "b", "d"]
    assert inspect_integrity(database_url, "stamped").problems == []
