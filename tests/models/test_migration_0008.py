"""Specification of revision 0008 (issue 13, point 2): vector rows keyed by their item row's sequence.

The database of test_migration_0007 (the vendored revision 0003 with an int8 collection added in 0006's
layout) is taken to 0007, where vector rows are keyed by the derived item id, then to the head, and every
vector is compared byte for byte through its item id.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.engine import dispose_engines
from models.migrations import current_revision, downgrade_database, head_revision, upgrade_database
from models.vector_maintenance import inspect_integrity
from models.vector_store import VectorDB
from neuraltrade.memory.query import Filter, Query
from tests.models.test_migration_0007 import database_at_0006, execute, rows

# Each item's (partition, searched vector, full vector) by item id, in either layout.
BY_ITEM_ID = (
    "SELECT v.item_id, v.partition_value, v.embedding, {full} FROM vec_{name} AS v "
    "JOIN memory_items AS m ON m.id = v.item_id"
)
BY_SEQUENCE = (
    "SELECT m.id, v.partition_value, v.embedding, {full} FROM vec_{name} AS v "
    "JOIN memory_items AS m ON m.sequence = v.item_sequence"
)
COLLECTIONS = {"market_state": "NULL", "quantized": "v.full"}


def vectors(url: str, statement: str) -> dict[str, dict[int, tuple[object, ...]]]:
    return {
        name: {row[0]: row[1:] for row in rows(url, statement.format(name=name, full=full))}
        for name, full in COLLECTIONS.items()
    }


def vector_problems(url: str, collection: str) -> list[str]:
    """What `memory check` finds wrong with the collection's vectors. (The vendored file's fingerprints
    were written by revision 0003's code, whose digest differs: not what this revision moves.)"""
    return [problem for problem in inspect_integrity(url, collection).problems if "fingerprint" not in problem]


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    database_url = database_at_0006(tmp_path)
    upgrade_database(database_url, "0007")
    yield database_url
    dispose_engines()


def test_upgrading_keys_every_vector_by_its_item_sequence_byte_for_byte(url: str) -> None:
    before = vectors(url, BY_ITEM_ID)
    assert [len(found) for found in before.values()] == [569, 60]

    upgrade_database(url)

    assert current_revision(url) == head_revision()
    assert vectors(url, BY_SEQUENCE) == before
    # The new key is each item row's sequence, and only that.
    keys = rows(url, "SELECT item_sequence FROM vec_quantized ORDER BY item_sequence")
    sequences = rows(
        url,
        "SELECT m.sequence FROM memory_items m JOIN collections c ON c.id = m.collection_id "
        "WHERE c.name = 'quantized' ORDER BY m.sequence",
    )
    assert keys == sequences
    assert rows(url, "PRAGMA foreign_key_check") == []
    for name in COLLECTIONS:
        assert vector_problems(url, name) == []


def test_the_rekeyed_collections_answer_writes_and_deletes(url: str) -> None:
    upgrade_database(url)
    store = VectorDB.open("quantized", database_url=url)
    item = store.get("q7")
    assert item is not None
    nearest = store.search(Query(item.vector, k=1).filter(Filter.eq("symbol", item.metadata["symbol"])))
    assert (nearest[0].id, nearest[0].distance) == ("q7", pytest.approx(0.0, abs=1e-6))
    store.insert("late", -item.vector, dict(item.metadata), timestamp=item.timestamp)
    assert store.search(Query(-item.vector, k=1))[0].id == "late"
    assert store.delete(["q7", "late"]) == 2
    assert store.get("q7") is None and store.count() == 59
    assert vector_problems(url, "quantized") == []


def test_a_downgrade_keys_the_rows_by_item_id_again_and_upgrades_again_the_same(url: str) -> None:
    before = vectors(url, BY_ITEM_ID)
    upgrade_database(url)
    downgrade_database(url, "0007")
    assert vectors(url, BY_ITEM_ID) == before
    upgrade_database(url)
    assert vectors(url, BY_SEQUENCE) == before


def test_a_vector_without_an_item_row_stops_the_upgrade_with_nothing_changed(url: str) -> None:
    before = vectors(url, BY_ITEM_ID)
    [(orphan,)] = rows(url, "SELECT id FROM memory_items WHERE key = 'q3'")
    execute(url, "DELETE FROM memory_items WHERE id = ?", (orphan,))
    with pytest.raises(RuntimeError, match="59 match an item row"):
        upgrade_database(url)
    assert current_revision(url) == "0007"
    # Everything the table held is still there, keyed as before.
    stored = {row[0] for row in rows(url, "SELECT item_id FROM vec_quantized")}
    assert stored == set(before["quantized"])
