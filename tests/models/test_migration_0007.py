"""Specification of revision 0007 (issue 13, point 1): each vector stored once, moved without losing one.

The vendored database of revision 0003 is taken to 0006, the last layout with `memory_vectors`, and given
an int8 collection as that layout stored it (searched int8 vectors in its vec0 table, full vectors in
`memory_vectors`); then it is upgraded to 0007 and every vector is compared byte for byte
(test_migration_0008 takes it on from there).
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import memory_items
from models.engine import dispose_engines, get_engine
from models.migrations import current_revision, downgrade_database, upgrade_database
from models.vector_store import VectorDB
from neuraltrade.memory.collection import quantize_int8
from neuraltrade.memory.query import Filter, Query

PREVIOUS = Path(__file__).parents[1] / "data" / "previous_schema" / "revision_0003.db.gz"
DIMENSION = 16
SCALE = 40.0


def rows(url: str, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as connection:
        return [tuple(row) for row in connection.exec_driver_sql(sql, parameters)]


def execute(url: str, sql: str, parameters: Any = ()) -> None:
    with get_engine(url).begin() as connection:
        connection.exec_driver_sql(sql, parameters)


def database_at_0006(folder: Path) -> str:
    """The vendored database taken to 0006 in `folder`, with an int8 collection of that layout; its URL."""
    target = folder / "previous.db"
    with gzip.open(PREVIOUS, "rb") as source, target.open("wb") as copy:
        shutil.copyfileobj(source, copy)
    database_url = f"sqlite:///{target}"
    upgrade_database(database_url, "0006")
    add_old_int8_collection(database_url)
    return database_url


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    yield database_at_0006(tmp_path)
    dispose_engines()


def add_old_int8_collection(url: str) -> None:
    """An int8 collection of 0006's layout: a copy of market_state's items, quantized."""
    execute(
        url,
        "INSERT INTO collections (name, dimension, metric, quantization, index_type, partition_key, int8_scale, "
        "version, fingerprint, fingerprint_digest, created_at) SELECT 'quantized', dimension, metric, 'int8', "
        "'exact', partition_key, ?, 7, fingerprint, fingerprint_digest, created_at FROM collections "
        "WHERE name = 'market_state'",
        (SCALE,),
    )
    [(collection_id,)] = rows(url, "SELECT id FROM collections WHERE name = 'quantized'")
    execute(
        url,
        "CREATE VIRTUAL TABLE vec_quantized USING vec0(item_id integer primary key, partition_value text partition "
        f"key, embedding int8[{DIMENSION}] distance_metric=cosine, chunk_size=1024)",
    )
    source = rows(
        url,
        "SELECT i.id, i.partition, i.timestamp, i.metadata, i.fingerprint_digest, i.created_at, f.vector "
        "FROM memory_items i JOIN memory_vectors f ON f.id = i.id ORDER BY i.id LIMIT 60",
    )
    for number, (_, partition, moment, metadata, digest, created, vector) in enumerate(source):
        new_id = memory_items.item_id(collection_id, f"q{number}")
        execute(
            url,
            "INSERT INTO memory_items (id, collection_id, key, partition, timestamp, metadata, fingerprint_digest, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id, collection_id, f"q{number}", partition, moment, metadata, digest, created),
        )
        execute(url, "INSERT INTO memory_vectors (id, vector) VALUES (?, ?)", (new_id, vector))
        code = quantize_int8(np.frombuffer(vector, dtype=np.float32), SCALE)
        execute(
            url,
            "INSERT INTO vec_quantized (item_id, partition_value, embedding) VALUES (?, ?, vec_int8(?))",
            (new_id, partition, code.tobytes()),
        )


def old_vectors(url: str, collection: str) -> dict[int, tuple[bytes, bytes]]:
    """Each item's (full vector, searched vector) in 0006's layout."""
    found = rows(
        url,
        f"SELECT f.id, f.vector, v.embedding FROM memory_vectors f JOIN vec_{collection} v ON v.item_id = f.id",
    )
    return {row[0]: (row[1], row[2]) for row in found}


def test_upgrading_keeps_every_vector_once_and_drops_the_second_copy(url: str) -> None:
    plain, quantized = old_vectors(url, "market_state"), old_vectors(url, "quantized")
    assert (len(plain), len(quantized)) == (569, 60)

    upgrade_database(url, "0007")

    assert current_revision(url) == "0007"
    assert rows(url, "SELECT name FROM sqlite_master WHERE name = 'memory_vectors'") == []
    # Unquantized: the searched vector is the full one, byte for byte.
    moved = {row[0]: row[1] for row in rows(url, "SELECT item_id, embedding FROM vec_market_state")}
    assert moved == {number: full for number, (full, _) in plain.items()}
    # Quantized: the int8 code and the full vector side by side in one table.
    both = {row[0]: (row[1], row[2]) for row in rows(url, "SELECT item_id, full, embedding FROM vec_quantized")}
    assert both == quantized
    # Every item carries its collection's version as the version that wrote it.
    versions = rows(
        url,
        "SELECT DISTINCT c.name, i.written_version = c.version FROM memory_items i "
        "JOIN collections c ON c.id = i.collection_id",
    )
    assert sorted(versions) == [("market_state", 1), ("quantized", 1)]
    assert rows(url, "PRAGMA foreign_key_check") == []


def test_the_upgraded_collections_answer_with_their_full_vectors(url: str) -> None:
    quantized = old_vectors(url, "quantized")
    upgrade_database(url)
    store = VectorDB.open("quantized", database_url=url)
    [(key, number)] = rows(url, "SELECT key, id FROM memory_items WHERE key = 'q5'")
    item = store.get(key)
    assert item is not None and item.vector.tobytes() == quantized[number][0]
    nearest = store.search(Query(item.vector, k=1).filter(Filter.eq("symbol", item.metadata["symbol"])))
    assert (nearest[0].id, nearest[0].distance) == ("q5", pytest.approx(0.0, abs=1e-6))
    # New writes go to the new layout beside the moved vectors.
    store.insert("late", -item.vector, dict(item.metadata), timestamp=item.timestamp)
    assert store.search(Query(-item.vector, k=1))[0].id == "late"
    assert store.count() == 61


def test_a_downgrade_restores_the_second_copy_and_upgrades_again_the_same(url: str) -> None:
    plain, quantized = old_vectors(url, "market_state"), old_vectors(url, "quantized")
    upgrade_database(url, "0007")
    downgrade_database(url, "0006")
    assert (old_vectors(url, "market_state"), old_vectors(url, "quantized")) == (plain, quantized)
    upgrade_database(url, "0007")
    moved = {row[0]: row[1] for row in rows(url, "SELECT item_id, embedding FROM vec_market_state")}
    assert moved == {number: full for number, (full, _) in plain.items()}
