"""Specification of `VectorDB` writes and of the errors that name the bad value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from models.engine import session_scope
from models.vector_store import VectorDB
from neuraltrade.clock import FixedClock
from neuraltrade.errors import (
    ConfigError,
    DimensionMismatch,
    DuplicateItem,
    FingerprintMismatch,
    InvalidItemId,
    InvalidVector,
)
from neuraltrade.memory.collection import Filter, Query
from neuraltrade.memory.embedding import EmbedderFingerprint
from tests.models.vector_support import (
    DIMENSION,
    SYMBOLS,
    aapl,
    random_vectors,
    reference_distances,
)

# -- writes -----------------------------------------------------------------------------------------


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's stores run on SQLite and on PostgreSQL."""
    return storage_url


def test_inserting_a_stored_id_raises_duplicate_item_naming_it_and_writes_nothing_of_the_batch(
    database_url: str,
) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    vectors = random_vectors(4)
    db.insert("taken", vectors[0], {"symbol": "AAPL"})

    with pytest.raises(DuplicateItem, match="'taken'") as raised:
        db.insert("taken", vectors[1], {"symbol": "MSFT"})
    assert raised.value.keys == ["taken"]
    with pytest.raises(DuplicateItem, match="'taken'"):
        db.insert_many(["new-1", "taken", "new-2"], vectors[1:4], aapl(3))

    assert db.count() == 1
    assert db.get("new-1") is None
    assert db.get("new-2") is None
    kept = db.get("taken")
    assert kept is not None
    assert np.array_equal(kept.vector, vectors[0])
    assert kept.metadata == {"symbol": "AAPL"}


def test_an_id_twice_in_one_write_is_refused_naming_it(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    with pytest.raises(ConfigError, match="'twice'"):
        db.insert_many(["once", "twice", "twice"], random_vectors(3), aapl(3))
    assert db.count() == 0


@pytest.mark.parametrize(("quantization", "metric"), [("none", "cosine"), ("int8", "l2"), ("none", "inner_product")])
def test_upsert_replaces_the_vector_and_the_metadata(database_url: str, quantization: str, metric: str) -> None:
    db = VectorDB(DIMENSION, metric=metric, quantization=quantization, database_url=database_url)
    old, new = random_vectors(2, seed=21)
    db.insert_many([f"other-{row}" for row in range(50)], random_vectors(50, seed=22), aapl(50))
    db.insert("state", old, {"symbol": "AAPL", "regime": "bull", "old_only": 1})
    before = db.count()

    db.upsert("state", new, {"symbol": "MSFT", "regime": "bear"})

    assert db.count() == before
    item = db.get("state")
    assert item is not None
    assert np.array_equal(item.vector, new)
    assert item.metadata == {"symbol": "MSFT", "regime": "bear"}
    nearest = db.search(Query(new, k=1))[0]
    assert nearest.id == "state"
    # ~0: exactly how close is specified by test_a_stored_vector_is_at_its_own_distance_from_itself_on_every_path
    assert nearest.distance == pytest.approx(float(reference_distances(metric, new, new)[0]), abs=5e-3)
    assert "state" not in {result.id for result in db.search(Query(old, k=5).filter(Filter.eq("symbol", "AAPL")))}
    assert db.count(Filter.eq("old_only", 1)) == 0
    assert db.count(Filter.eq("symbol", "AAPL")) == 50


def test_upsert_many_twice_is_idempotent(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    keys, vectors = [f"k{row}" for row in range(200)], random_vectors(200)
    assert db.upsert_many(keys, vectors, aapl(200)) == 200
    assert db.upsert_many(keys, vectors, aapl(200)) == 200
    assert db.count() == 200
    assert [result.id for result in db.search(Query(vectors[3], k=1))] == ["k3"]


def test_insert_many_is_one_transaction_a_bad_vector_at_row_500_stores_nothing_and_is_named(
    database_url: str,
) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    vectors = random_vectors(1_000)
    vectors[500, 3] = np.nan
    keys = [f"row-{row}" for row in range(1_000)]
    with pytest.raises(InvalidVector, match="vector 500 of 1000"):
        db.insert_many(keys, vectors, aapl(1_000))
    assert db.count() == 0
    assert db.get("row-0") is None


def test_insert_many_with_bad_metadata_at_row_500_stores_nothing_and_names_the_item(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    metadata = aapl(1_000)
    metadata[500] = {"regime": "bull"}
    with pytest.raises(ConfigError, match="'row-500'"):
        db.insert_many([f"row-{row}" for row in range(1_000)], random_vectors(1_000), metadata)
    assert db.count() == 0


def test_insert_many_with_a_stored_id_at_row_500_stores_nothing(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    vectors = random_vectors(1_001)
    db.insert("row-500", vectors[1_000], {"symbol": "MSFT"})
    with pytest.raises(DuplicateItem, match="'row-500'"):
        db.insert_many([f"row-{row}" for row in range(1_000)], vectors[:1_000], aapl(1_000))
    assert db.count() == 1
    with session_scope(database_url) as session:
        assert session.execute(text("SELECT count(*) FROM vec_default")).scalar_one() == 1


def test_insert_many_returns_how_many_and_an_empty_write_stores_nothing(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    assert db.insert_many([], np.empty((0, DIMENSION), dtype=np.float32), []) == 0
    assert db.insert_many(["a", "b"], random_vectors(2), aapl(2)) == 2
    assert db.count() == 2


def test_delete_returns_how_many_were_stored_and_ignores_unknown_ids(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    vectors = random_vectors(10)
    db.insert_many([f"d{row}" for row in range(10)], vectors, aapl(10))

    assert db.delete(["d1", "d2", "never-stored"]) == 2
    assert db.delete("d3") == 1
    assert db.delete(["d1", "nope"]) == 0
    assert db.delete([]) == 0

    assert db.count() == 7
    assert db.get("d1") is None
    remaining = {result.id for result in db.search(Query(vectors[1], k=10))}
    assert remaining == {f"d{row}" for row in (0, 4, 5, 6, 7, 8, 9)}
    with session_scope(database_url) as session:
        assert session.execute(text("SELECT count(*) FROM vec_default")).scalar_one() == 7


@pytest.mark.parametrize(
    ("quantization", "metric"),
    [("none", "cosine"), ("none", "l2"), ("int8", "cosine"), ("binary", "cosine"), ("none", "inner_product")],
)
def test_get_returns_the_full_precision_vector_metadata_and_timestamp(
    database_url: str, quantization: str, metric: str
) -> None:
    db = VectorDB(DIMENSION, metric=metric, quantization=quantization, database_url=database_url)
    vectors = random_vectors(20, seed=9) * np.float32(3.7)
    stamp = datetime(2024, 2, 29, 15, 59, 59, 999_999, tzinfo=UTC)
    metadata = {"symbol": "NVDA", "regime": "bull", "volume": 12, "score": 0.125, "flagged": True, "note": None}
    db.insert_many([f"g{row}" for row in range(20)], vectors, [metadata] * 20, timestamps=[stamp] * 20)

    item = db.get("g13")

    assert item is not None
    assert item.id == "g13"
    assert item.vector.dtype == np.float32
    assert np.array_equal(item.vector, vectors[13])
    assert dict(item.metadata) == metadata
    assert item.timestamp == stamp
    assert db.get("g-unknown") is None


def test_an_item_written_without_a_timestamp_is_stamped_by_the_clock(database_url: str) -> None:
    clock = FixedClock(datetime(2025, 6, 1, 9, 30, tzinfo=UTC))
    db = VectorDB(DIMENSION, database_url=database_url, clock=clock)
    db.insert("now", random_vectors(1)[0], {"symbol": "AAPL"})
    item = db.get("now")
    assert item is not None
    assert item.timestamp == datetime(2025, 6, 1, 9, 30, tzinfo=UTC)


def test_timestamps_may_be_given_as_epoch_microseconds(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    stamps = np.array([1_704_205_800_000_000, 1_704_205_800_000_001], dtype=np.int64)
    db.insert_many(["early", "late"], random_vectors(2), aapl(2), timestamps=stamps)
    late = db.get("late")
    assert late is not None
    assert late.timestamp == datetime(2024, 1, 2, 14, 30, 0, 1, tzinfo=UTC)
    found = db.search(Query(random_vectors(1)[0], as_of=datetime(2024, 1, 2, 14, 30, 0, 1, tzinfo=UTC)))
    assert [result.id for result in found] == ["early"]


def test_a_naive_timestamp_is_refused(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    with pytest.raises(ConfigError, match="naive"):
        db.insert("a", np.ones(DIMENSION), {"symbol": "AAPL"}, timestamp=datetime(2024, 1, 2, 14, 30))
    assert db.count() == 0


def test_count_with_a_filter_counts_the_matching_items(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    metadata = [{"symbol": SYMBOLS[row % 3], "volume": row} for row in range(30)]
    db.insert_many([f"c{row}" for row in range(30)], random_vectors(30), metadata)
    assert db.count() == 30
    assert db.count(Filter.eq("symbol", "AAPL")) == 10
    assert db.count(Filter.eq("symbol", "AAPL") & Filter.lt("volume", 15)) == 5
    assert db.count(Filter.in_("symbol", ["MSFT", "NVDA"]) | Filter.ge("volume", 27)) == 21
    assert db.count(Filter.eq("symbol", "TSLA")) == 0


# -- errors name the value --------------------------------------------------------------------------


def test_a_vector_of_another_dimension_is_refused_naming_both_dimensions(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    with pytest.raises(DimensionMismatch, match=f"{DIMENSION}-d vectors, was given 23-d"):
        db.insert("short", np.ones(23), {"symbol": "AAPL"})
    with pytest.raises(DimensionMismatch, match="was given 25-d"):
        db.insert_many(["a", "b"], np.ones((2, 25)), aapl(2))
    with pytest.raises(DimensionMismatch, match=f"{DIMENSION}-d vectors, was given 8-d"):
        db.search(Query(np.ones(8)))
    assert db.count() == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_vector_holding_nan_or_infinity_is_refused(database_url: str, bad: float) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    vector = np.ones(DIMENSION)
    vector[5] = bad
    with pytest.raises(InvalidVector, match="NaN or infinity"):
        db.insert("bad", vector, {"symbol": "AAPL"})
    with pytest.raises(InvalidVector):
        db.upsert("bad", vector, {"symbol": "AAPL"})
    assert db.count() == 0


def test_metadata_without_the_partition_key_is_refused_naming_the_item_and_the_key(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    for metadata in ({"regime": "bull"}, None, {"symbol": ""}, {"symbol": 3}, {"symbol": None}):
        with pytest.raises(ConfigError, match=r"'orphan'.*'symbol'"):
            db.insert("orphan", np.ones(DIMENSION), metadata)
    assert db.count() == 0


def test_a_collection_without_a_partition_key_takes_any_metadata(database_url: str) -> None:
    db = VectorDB(DIMENSION, partition_key=None, database_url=database_url)
    db.insert_many(["a", "b"], random_vectors(2), [None, {"regime": "bull"}])
    assert db.count() == 2
    assert db.count(Filter.eq("regime", "bull")) == 1


def test_a_custom_partition_key_partitions_the_collection(database_url: str) -> None:
    db = VectorDB(DIMENSION, partition_key="strategy", database_url=database_url)
    vectors = random_vectors(40)
    db.insert_many([f"s{row}" for row in range(40)], vectors, [{"strategy": f"st{row % 4}"} for row in range(40)])
    results = db.search(Query(vectors[6], k=5).filter(Filter.eq("strategy", "st2")))
    assert results[0].id == "s6"
    assert {result.metadata["strategy"] for result in results} == {"st2"}
    with pytest.raises(ConfigError, match="'strategy'"):
        db.insert("x", vectors[0], {"symbol": "AAPL"})


@pytest.mark.parametrize(
    "metadata",
    [
        {"symbol": "AAPL", "nested": {"a": 1}},
        {"symbol": "AAPL", "nested": [1, 2]},
        {"symbol": "AAPL", "when": datetime(2024, 1, 1, tzinfo=UTC)},
        {"symbol": "AAPL", "score": float("nan")},
        {"symbol": "AAPL", "bad key": 1},
        {"symbol": "AAPL", "a.b": 1},
    ],
    ids=["dict", "list", "datetime", "nan", "space-in-key", "dot-in-key"],
)
def test_metadata_that_is_not_flat_scalars_is_refused_naming_the_item(
    database_url: str, metadata: dict[str, Any]
) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    with pytest.raises(ConfigError, match="'item-7'") as raised:
        db.insert("item-7", np.ones(DIMENSION), metadata)
    field = next(key for key in metadata if key != "symbol")
    assert repr(field) in str(raised.value)
    assert db.count() == 0


@pytest.mark.parametrize(
    "key",
    ["", "x" * 257, 10**300, None, 7.0, b"id", True],
    ids=["empty", "too-long", "too-long-int", "none", "float", "bytes", "bool"],
)
def test_an_id_that_is_empty_too_long_or_not_a_str_int_or_uuid_is_refused_naming_it_and_its_type(
    database_url: str, key: object
) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    with pytest.raises(InvalidItemId) as raised:
        db.insert(key, np.ones(DIMENSION), {"symbol": "AAPL"})  # type: ignore[arg-type]
    assert repr(key)[:40] in str(raised.value)
    assert f"of type {type(key).__name__}" in str(raised.value)
    db.insert("x" * 256, np.ones(DIMENSION), {"symbol": "AAPL"})
    assert db.count() == 1


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"metric": "l2"}, ["metric 'cosine' (asked for 'l2')"]),
        ({"quantization": "binary"}, ["quantization 'int8' (asked for 'binary')"]),
        ({"partition_key": "strategy"}, ["partition_key 'symbol' (asked for 'strategy')"]),
        ({"partition_key": None}, ["partition_key 'symbol' (asked for None)"]),
        (
            {"metric": "inner_product", "quantization": "none"},
            ["metric 'cosine' (asked for 'inner_product')", "quantization 'int8' (asked for 'none')"],
        ),
    ],
)
def test_reopening_a_collection_with_other_settings_is_a_config_error_naming_each_difference(
    database_url: str, changed: dict[str, Any], named: list[str]
) -> None:
    VectorDB(DIMENSION, name="memory", quantization="int8", database_url=database_url)
    settings_asked = {"metric": "cosine", "quantization": "int8", "partition_key": "symbol", **changed}
    with pytest.raises(ConfigError) as raised:
        VectorDB(DIMENSION, name="memory", database_url=database_url, **settings_asked)
    for difference in named:
        assert difference in str(raised.value)
    assert "'memory'" in str(raised.value)


def test_reopening_a_collection_with_another_embedder_is_a_fingerprint_mismatch_naming_both(database_url: str) -> None:
    first = EmbedderFingerprint(name="window", version="1", dimension=DIMENSION, parameters={"seed": 1})
    second = EmbedderFingerprint(name="window", version="2", dimension=DIMENSION, parameters={"seed": 1})
    db = VectorDB(DIMENSION, name="memory", fingerprint=first, database_url=database_url)
    db.insert("a", np.ones(DIMENSION), {"symbol": "AAPL"})
    with pytest.raises(FingerprintMismatch) as raised:
        VectorDB(DIMENSION, name="memory", fingerprint=second, database_url=database_url)
    assert first.describe() in str(raised.value)
    assert second.describe() in str(raised.value)
    with pytest.raises(FingerprintMismatch):
        VectorDB(DIMENSION, name="memory", database_url=database_url)  # vectors from outside, not `first`


def test_reopening_a_collection_with_another_dimension_is_a_dimension_mismatch(database_url: str) -> None:
    VectorDB(DIMENSION, name="memory", database_url=database_url)
    with pytest.raises(DimensionMismatch, match=f"{DIMENSION}-d vectors, was given 16-d"):
        VectorDB(16, name="memory", database_url=database_url)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("name", "Bad-Name"),
        ("name", "1memory"),
        ("metric", "dot"),
        ("quantization", "pq"),
        ("index_type", "ivf"),
        ("partition_key", "a.b"),
        ("oversample", 0),
    ],
)
def test_an_invalid_setting_is_a_config_error_naming_it(database_url: str, option: str, value: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        VectorDB(DIMENSION, database_url=database_url, **{option: value})
    assert repr(value) in str(raised.value)
