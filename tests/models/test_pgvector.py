"""Specification of the pgvector backend (`models.dialects.pgvector`) on a real PostgreSQL with pgvector.

What the store-level specifications (run on both databases) cannot see: which searches pgvector's HNSW
index answers, that a filtered approximate search scans on until it has `k` rows, and that each
quantization's vectors are stored as pgvector's types exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import inspect

from models import memory_items
from models.dialects.pgvector import PGVECTOR, driver_connection, nearest_statement
from models.engine import session_scope
from models.migrations import upgrade_database
from models.vector_store import VectorDB
from neuraltrade.memory.collection import Filter, Query
from tests.models.vector_support import random_vectors

DIMENSION = 20  # not a multiple of 8: bit vectors keep their exact length


@pytest.fixture
def database_url(postgresql_url: str) -> Iterator[str]:
    upgrade_database(postgresql_url)
    yield postgresql_url


def plan(url: str, sql: str, parameters: tuple[object, ...]) -> str:
    """The query plan of `sql` where the planner would use an index whenever one can answer it (on a
    few thousand rows it rightly prefers to read them all)."""
    with session_scope(url) as session:
        driver = driver_connection(session.connection())
        driver.execute("SET LOCAL enable_seqscan = off")
        return "\n".join(str(row[0]) for row in driver.execute(f"EXPLAIN {sql}", parameters).fetchall())


def test_only_a_store_that_keeps_an_hnsw_index_gets_pgvectors_hnsw_index(database_url: str) -> None:
    VectorDB(DIMENSION, name="exact_one", database_url=database_url)
    VectorDB(DIMENSION, name="graph_one", index_type="hnsw", database_url=database_url)

    with session_scope(database_url) as session:
        inspector = inspect(session.connection())
        indexes = {
            table: {index["name"] for index in inspector.get_indexes(table)}
            for table in ("vec_exact_one", "vec_graph_one")
        }

    assert indexes == {
        "vec_exact_one": {"vec_exact_one_partition"},
        "vec_graph_one": {"vec_graph_one_partition", "vec_graph_one_hnsw"},
    }


@pytest.mark.parametrize("quantization", ["none", "int8", "binary"])
def test_exact_searches_rank_every_row_and_approximate_ones_use_the_hnsw_index(
    database_url: str, quantization: str
) -> None:
    db = VectorDB(DIMENSION, name="graph", quantization=quantization, index_type="hnsw", database_url=database_url)
    db.insert_many([f"k{row}" for row in range(2_000)], random_vectors(2_000, DIMENSION), [{"symbol": "A"}] * 2_000)
    query = random_vectors(1, DIMENSION, seed=1)[0]
    payload = query if quantization == "none" else db._query_payload(query)

    exact = plan(database_url, *nearest_statement(db.spec, payload, 5))
    approximate = plan(database_url, *nearest_statement(db.spec, payload, 5, approximate=True))

    assert "vec_graph_hnsw" not in exact
    assert "Index Scan using vec_graph_hnsw" in approximate


def test_a_filtered_approximate_search_of_a_rare_partition_scans_on_until_it_has_k_rows(database_url: str) -> None:
    # 3,000 items, 12 of them in a rare partition: an HNSW search with a candidate list of 10 meets
    # hardly any of them unless pgvector scans on (hnsw.iterative_scan).
    keys = [f"k{row}" for row in range(3_000)]
    rare = {key for row, key in enumerate(keys) if row % 250 == 0}
    db = VectorDB(DIMENSION, name="graph", index_type="hnsw", database_url=database_url)
    symbols = [{"symbol": "RARE" if key in rare else "COMMON"} for key in keys]
    db.insert_many(keys, random_vectors(3_000, DIMENSION, seed=4), symbols)
    query = random_vectors(1, DIMENSION, seed=5)[0]
    numbers = {memory_items.item_id(db.collection_id, key): key for key in keys}

    with session_scope(database_url) as session:
        driver = driver_connection(session.connection())
        # Only the HNSW index may answer: the planner would rather read a partition this small whole.
        driver.execute("DROP INDEX vec_graph_partition")
        driver.execute("SET LOCAL enable_seqscan = off")

        def rows(sql: str, parameters: tuple[object, ...]) -> list[Any]:
            return driver.execute(sql, parameters).fetchall()

        sql, parameters = nearest_statement(db.spec, query, 10, partition="RARE", approximate=True)
        explained = "\n".join(str(row[0]) for row in rows(f"EXPLAIN {sql}", parameters))
        found = PGVECTOR.nearest(rows, db.spec, query, 10, partition="RARE", breadth=10)
        exact = PGVECTOR.nearest(rows, db.spec, query, 10, partition="RARE")
        session.rollback()

    assert "Index Scan using vec_graph_hnsw" in explained
    assert len(found) == 10
    assert {numbers[number] for number, _ in found} <= rare
    assert len({number for number, _ in found} & {number for number, _ in exact}) >= 9
    exact_search = db.search(Query(query, k=10, where=Filter.eq("symbol", "RARE"), exact=True))
    assert [numbers[number] for number, _ in exact] == [result.id for result in exact_search]


@pytest.mark.parametrize("quantization", ["int8", "binary"])
def test_quantized_vectors_keep_their_full_precision_originals_exactly(database_url: str, quantization: str) -> None:
    vectors = random_vectors(300, DIMENSION, seed=6)
    db = VectorDB(DIMENSION, name="quantized", quantization=quantization, database_url=database_url)
    keys = [f"k{row}" for row in range(300)]
    db.insert_many(keys, vectors, [{"symbol": "A"}] * 300)

    numbers = {memory_items.item_id(db.collection_id, key): row for row, key in enumerate(keys)}

    with session_scope(database_url) as session:
        ids, matrix = PGVECTOR.full_vectors(session.connection(), db.spec, list(numbers)[:40])
        scanned = {
            int(number): row
            for batch_ids, batch in PGVECTOR.scan_full(session.connection(), db.spec, batch=64)
            for number, row in zip(batch_ids, batch, strict=True)
        }

    assert sorted(ids.tolist()) == sorted(list(numbers)[:40])
    for number, row in zip(ids, matrix, strict=True):
        np.testing.assert_array_equal(row, vectors[numbers[int(number)]])
    assert scanned.keys() == numbers.keys()
    for number, row in scanned.items():
        np.testing.assert_array_equal(row, vectors[numbers[number]])
