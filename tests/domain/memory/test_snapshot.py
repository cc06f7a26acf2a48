"""Specification of `MemorySnapshot` (`neuraltrade.memory.snapshot`): exact search in memory, as the store answers."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.errors import ConfigError, DimensionMismatch, FingerprintMismatch, InvalidVector
from neuraltrade.memory.collection import METRICS, CollectionSpec, distances
from neuraltrade.memory.embedding import WindowEmbedder, WindowEmbedderConfig
from neuraltrade.memory.query import Filter, Query, SearchResult
from neuraltrade.memory.snapshot import MemorySnapshot
from neuraltrade.strategies.memory_vote import MemoryVote, MemoryVoteConfig
from tests.domain.strategy_support import BruteForceMemory, real_history

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIELDS = ("symbol", "volume", "score", "flagged", "regime", "note", "absent")
VALUES = st.one_of(
    st.sampled_from(["A", "B", "bull", "bear", "", "10"]),
    st.integers(-3, 3),
    st.sampled_from([-1.5, 0.0, 0.5, 2.0]),
    st.booleans(),
)
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def moment(microseconds: int) -> datetime:
    return EPOCH + timedelta(microseconds=microseconds)


# -- a reference: the store's rules, one item at a time ---------------------------------------------


def kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    return "number" if isinstance(value, int | float) else None


def picks(where: Filter | None, metadata: Mapping[str, Any]) -> bool:
    """`where` on one item, as `Filter` documents it: a missing or None field never matches, kinds never mix."""
    if where is None:
        return True
    if where.operator == "and":
        return all(picks(operand, metadata) for operand in where.operands)
    if where.operator == "or":
        return any(picks(operand, metadata) for operand in where.operands)
    stored = metadata.get(where.name or "")
    if kind(stored) is None:
        return False
    values = where.value if isinstance(where.value, tuple) else (where.value,)
    same_kind = [value for value in values if kind(value) == kind(stored)]
    if where.operator in ("eq", "in"):
        return any(stored == value for value in same_kind)
    return any(_ORDERINGS[where.operator](stored, value) for value in same_kind)


def brute_force(
    items: dict[str, Any], metric: str, query: Query
) -> list[tuple[str, float, Mapping[str, Any], datetime]]:
    """Every item the query may see, ranked by distance then id, the first k of them."""
    bound = None if query.as_of is None else (query.as_of - EPOCH) // timedelta(microseconds=1)
    seen = [
        row
        for row, (metadata, stamp) in enumerate(zip(items["metadata"], items["timestamps"], strict=True))
        if picks(query.where, metadata) and (bound is None or stamp < bound)
    ]
    if not seen:
        return []
    values = distances(metric, query.vector, items["vectors"][seen])
    ids = items["ids"] if items["ids"] is not None else list(range(len(items["keys"])))
    ranked = sorted(range(len(seen)), key=lambda position: (values[position], ids[seen[position]]))[: query.k]
    return [
        (
            items["keys"][seen[position]],
            float(values[position]),
            items["metadata"][seen[position]],
            moment(items["timestamps"][seen[position]]),
        )
        for position in ranked
    ]


def described(results: Sequence[SearchResult]) -> list[tuple[str, float, Mapping[str, Any], datetime]]:
    return [(result.id, result.distance, dict(result.metadata), result.timestamp) for result in results]


# -- generated collections and queries --------------------------------------------------------------


@st.composite
def collections(draw: st.DrawFn) -> dict[str, Any]:
    """Up to 30 items of small integer vectors (exact float32 arithmetic, many exact ties) and mixed metadata."""
    count = draw(st.integers(0, 30))
    dimension = draw(st.integers(1, 5))
    vectors = np.array(
        draw(st.lists(st.integers(-2, 2), min_size=count * dimension, max_size=count * dimension)), dtype=np.float32
    ).reshape(count, dimension)
    item = st.fixed_dictionaries(
        {
            "symbol": st.sampled_from(["A", "B"]),
            "volume": st.integers(-3, 3),
            "score": st.sampled_from([-1.5, 0.0, 2.0, 2]),
            "flagged": st.booleans(),
        },
        optional={"regime": st.sampled_from(["bull", "bear", "10"]), "note": st.none()},
    )
    metadata = draw(st.lists(item, min_size=count, max_size=count))
    ids = draw(st.none() | st.lists(st.integers(-(2**62), 2**62), min_size=count, max_size=count, unique=True))
    return {
        "keys": [f"item-{row}" for row in range(count)],
        "vectors": vectors,
        "timestamps": draw(st.lists(st.integers(0, 20), min_size=count, max_size=count)),
        "metadata": metadata,
        "ids": ids,
        "dimension": dimension,
    }


def leaves() -> st.SearchStrategy[Filter]:
    field = st.sampled_from(FIELDS)
    equal = st.builds(Filter.eq, field, VALUES)
    among = st.builds(Filter.in_, field, st.lists(VALUES, min_size=1, max_size=3))
    ordered = st.builds(
        lambda operator_name, name, value: getattr(Filter, operator_name)(name, value),
        st.sampled_from(["lt", "le", "gt", "ge"]),
        field,
        VALUES.filter(lambda value: not isinstance(value, bool)),
    )
    return equal | among | ordered


def filters() -> st.SearchStrategy[Filter]:
    return st.recursive(
        leaves(),
        lambda inner: st.builds(operator.and_, inner, inner) | st.builds(operator.or_, inner, inner),
        max_leaves=4,
    )


#: Built once: making a recursive strategy costs more than drawing from it.
FILTERS = filters()


@st.composite
def queries(draw: st.DrawFn, dimension: int) -> Query:
    vector = np.array(draw(st.lists(st.integers(-2, 2), min_size=dimension, max_size=dimension)), dtype=np.float32)
    as_of = draw(st.none() | st.integers(-1, 22))
    zone = draw(st.sampled_from([UTC, timezone(timedelta(hours=-5))]))
    return Query(
        vector,
        k=draw(st.integers(1, 8)),
        where=draw(st.none() | FILTERS),
        as_of=None if as_of is None else moment(as_of).astimezone(zone),
    )


QUERIES = {dimension: queries(dimension) for dimension in range(1, 6)}


def snapshot_of(items: dict[str, Any], metric: str) -> MemorySnapshot:
    return MemorySnapshot(
        keys=items["keys"],
        vectors=items["vectors"],
        timestamps=items["timestamps"],
        metadata=items["metadata"],
        metric=metric,
        ids=items["ids"],
    )


# -- the property -----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(items=collections(), metric=st.sampled_from(METRICS), data=st.data())
def test_a_search_returns_the_brute_force_top_k_of_the_items_its_filter_and_as_of_allow(
    items: dict[str, Any], metric: str, data: st.DataObject
) -> None:
    snapshot = snapshot_of(items, metric)
    asked = QUERIES[items["dimension"]]
    for _ in range(3):
        query = data.draw(asked)
        assert described(snapshot.search(query)) == brute_force(items, metric, query)


@pytest.mark.parametrize("metric", METRICS)
def test_real_valued_vectors_rank_as_brute_force_does(metric: str) -> None:
    rng = np.random.default_rng(7)
    count = 400
    items = {
        "keys": [f"state-{row}" for row in range(count)],
        "vectors": rng.normal(size=(count, 16)).astype(np.float32),
        "timestamps": rng.integers(0, 1_000, count).tolist(),
        "metadata": [{"symbol": "AB"[row % 2], "volume": int(rng.integers(0, 100))} for row in range(count)],
        "ids": None,
    }
    snapshot = snapshot_of(items, metric)
    for seed in range(20):
        vector = np.random.default_rng(seed).normal(size=16).astype(np.float32)
        query = Query(vector, k=12, where=Filter.eq("symbol", "A") & Filter.lt("volume", 70), as_of=moment(600))
        found, expected = described(snapshot.search(query)), brute_force(items, metric, query)
        assert [row[0] for row in found] == [row[0] for row in expected]
        np.testing.assert_allclose([row[1] for row in found], [row[1] for row in expected], rtol=1e-6, atol=1e-7)


# -- the store's rules, one at a time ---------------------------------------------------------------


def small_snapshot(**changes: Any) -> MemorySnapshot:
    arguments: dict[str, Any] = {
        "keys": ["late", "twin-b", "twin-a", "far"],
        "vectors": np.array([[1, 0], [1, 1], [1, 1], [-1, 0]], dtype=np.float32),
        "timestamps": [moment(30), moment(10), moment(10), moment(20)],
        "metadata": [{"symbol": "A"}, {"symbol": "A", "flagged": True}, {"symbol": "A", "flagged": 1}, {"symbol": "A"}],
        "metric": "cosine",
        "ids": [4, 9, 7, 1],
    }
    arguments.update(changes)
    return MemorySnapshot(**arguments)


def test_items_at_exactly_as_of_are_not_seen() -> None:
    found = small_snapshot().search(Query(np.array([1.0, 0.0]), k=10, as_of=moment(20)))
    assert [result.id for result in found] == ["twin-a", "twin-b"]
    later = small_snapshot().search(Query(np.array([1.0, 0.0]), k=10, as_of=moment(20) + timedelta(microseconds=1)))
    assert [result.id for result in later] == ["twin-a", "twin-b", "far"]


def test_equal_distances_are_ordered_by_item_id_as_the_store_orders_them() -> None:
    query = Query(np.array([2.0, 2.0]), k=1)
    assert [result.id for result in small_snapshot().search(query)] == ["twin-a"]
    assert [result.id for result in small_snapshot(ids=[4, 7, 9, 1]).search(query)] == ["twin-b"]


def test_filter_values_match_only_fields_of_their_own_kind() -> None:
    snapshot = small_snapshot()
    vector = np.array([1.0, 1.0])
    assert [result.id for result in snapshot.search(Query(vector, where=Filter.eq("flagged", True)))] == ["twin-b"]
    assert [result.id for result in snapshot.search(Query(vector, where=Filter.eq("flagged", 1.0)))] == ["twin-a"]
    assert snapshot.search(Query(vector, where=Filter.eq("symbol", "B"))) == []
    assert snapshot.search(Query(vector, where=Filter.gt("missing", 0))) == []


def test_results_carry_the_items_key_metadata_and_aware_timestamp() -> None:
    (result,) = small_snapshot().search(Query(np.array([1.0, 0.0]), k=1))
    assert result == SearchResult("late", 0.0, {"symbol": "A"}, moment(30))
    assert result.timestamp.tzinfo is not None
    with pytest.raises(TypeError):
        result.metadata["symbol"] = "B"  # type: ignore[index]


def test_epoch_microseconds_and_datetimes_stamp_items_alike() -> None:
    as_datetimes = small_snapshot().search(Query(np.array([1.0, 0.5]), k=4, as_of=moment(25)))
    as_integers = small_snapshot(timestamps=[30, 10, 10, 20]).search(Query(np.array([1.0, 0.5]), k=4, as_of=moment(25)))
    assert as_datetimes == as_integers


def test_an_empty_snapshot_finds_nothing() -> None:
    empty = MemorySnapshot(keys=[], vectors=np.empty((0, 3), dtype=np.float32), timestamps=[], metadata=[])
    assert empty.search(Query(np.ones(3), k=5)) == []
    assert len(empty) == 0


@pytest.mark.parametrize(
    ("changes", "error", "named"),
    [
        ({"keys": ["a", "a", "b", "c"]}, ConfigError, "unique"),
        ({"ids": [1, 1, 2, 3]}, ConfigError, "ids must be unique"),
        ({"timestamps": [datetime(2024, 1, 1)] * 4}, ConfigError, "naive"),
        ({"timestamps": [1.5, 2, 3, 4]}, ConfigError, r"timestamp 0 \(1.5\)"),
        ({"metric": "manhattan"}, ConfigError, "manhattan"),
        ({"vectors": np.full((4, 2), np.nan)}, InvalidVector, "vector 0"),
        ({"metadata": [{}]}, ConfigError, "1 metadata"),
    ],
)
def test_a_snapshot_refuses_inconsistent_items_naming_the_fault(
    changes: dict[str, Any], error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=named):
        small_snapshot(**changes)


def test_a_query_of_another_dimension_is_refused() -> None:
    with pytest.raises(DimensionMismatch, match="2-d vectors, was given 3-d"):
        small_snapshot().search(Query(np.ones(3)))


# -- as the memory of `memory_vote` -----------------------------------------------------------------

SMALL = MemoryVoteConfig(dimension=32, horizon=4, k=10, min_neighbours=5, min_confidence=0.7)


def test_memory_vote_on_a_snapshot_decides_as_on_a_brute_force_memory() -> None:
    history = real_history("NVDA").head(400)
    reference = BruteForceMemory()
    reference.add_history(history, SMALL.embedder_config)
    fingerprint = WindowEmbedder(SMALL.embedder_config).fingerprint
    snapshot = MemorySnapshot(
        keys=reference.keys,
        vectors=reference.vectors,
        timestamps=reference.timestamps,
        metadata=reference.metadata,
        spec=CollectionSpec(name="market_state", fingerprint=fingerprint),
        partition="NVDA",
    )
    frame = MemoryVote(SMALL, snapshot).signals(history)
    expected = MemoryVote(SMALL, reference).signals(history)
    assert len(frame.decisions()) > 3
    assert np.array_equal(frame.target, expected.target, equal_nan=True)
    assert frame.links == expected.links
    np.testing.assert_allclose(frame.confidence, expected.confidence, rtol=1e-6)


def test_memory_vote_refuses_a_snapshot_of_another_embedder() -> None:
    other = WindowEmbedder(WindowEmbedderConfig(window=32, dimension=512)).fingerprint
    snapshot = MemorySnapshot(
        keys=[],
        vectors=np.empty((0, 512), dtype=np.float32),
        timestamps=[],
        metadata=[],
        spec=CollectionSpec(name="market_state", fingerprint=other),
    )
    with pytest.raises(FingerprintMismatch, match="market_state"):
        MemoryVote(SMALL, snapshot)
