"""Specification of `models.vector_snapshot.snapshot`: a collection read into memory answers as the store does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.collections import CollectionNotFound
from models.vector_snapshot import snapshot
from models.vector_store import VectorDB
from neuraltrade.errors import ConfigError
from neuraltrade.memory.collection import METRICS, Filter, Query, SearchResult
from neuraltrade.memory.embedding import WindowEmbedder
from neuraltrade.memory.snapshot import MemorySnapshot
from neuraltrade.strategies.base import verify_causality
from neuraltrade.strategies.indicators import bar_frame
from neuraltrade.strategies.memory_vote import MemoryVote, MemoryVoteConfig
from tests.domain.strategy_support import real_history
from tests.models.vector_support import DIMENSION, INJECTION, REGIMES, SYMBOLS, Stored, moment, random_vectors

#: Filters beyond the partition, each a corner of the store's SQL: kinds that never mix, fields an item
#: lacks or holds as None, ranges, disjunctions and a value that would be an injection if it were SQL.
EXTRA_FILTERS = [
    None,
    Filter.eq("regime", "bull"),
    Filter.in_("regime", REGIMES[:2]),
    Filter.lt("volume", 400) & Filter.ge("score", -0.5),
    Filter.eq("flagged", True) | Filter.gt("volume", 900),
    Filter.eq("flagged", 1),
    Filter.eq("volume", "12"),
    Filter.le("note", "z"),
    Filter.eq("regime", INJECTION),
    Filter.in_("symbol", ["AAPL", "MSFT", 3]) & Filter.gt("score", 0),
]


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's stores run on SQLite and on PostgreSQL."""
    return storage_url


def assert_same_results(found: list[SearchResult], expected: list[SearchResult]) -> None:
    """The same items in the same order, each with its metadata and timestamp, at the same distance (1e-6)."""
    assert [result.id for result in found] == [result.id for result in expected]
    np.testing.assert_allclose(
        [result.distance for result in found], [result.distance for result in expected], rtol=0, atol=1e-6
    )
    assert [dict(result.metadata) for result in found] == [dict(result.metadata) for result in expected]
    assert [result.timestamp for result in found] == [result.timestamp for result in expected]


@pytest.fixture(scope="module")
def snapshots(stored: Stored) -> dict[tuple[str, str | None], MemorySnapshot]:
    """A snapshot of every metric's collection: of each symbol's partition, and whole (None)."""
    return {
        (metric, symbol): snapshot(stored.url, f"by_{metric}", symbol)
        for metric in METRICS
        for symbol in (*SYMBOLS, None)
    }


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    metric=st.sampled_from(METRICS),
    symbol=st.sampled_from(SYMBOLS),
    k=st.integers(1, 40),
    as_of=st.integers(-5, 910),
    near_an_item=st.booleans(),
)
def test_a_partition_snapshot_answers_a_symbol_query_as_the_stores_exact_search(
    stored: Stored,
    snapshots: dict[tuple[str, str | None], MemorySnapshot],
    seed: int,
    metric: str,
    symbol: str,
    k: int,
    as_of: int,
    near_an_item: bool,
) -> None:
    rng = np.random.default_rng(seed)
    vector = random_vectors(1, seed=seed)[0]
    if near_an_item:
        vector = stored.vectors[int(rng.integers(0, len(stored.vectors)))] + np.float32(0.01) * vector
    query = Query(vector, k=k, where=Filter.eq("symbol", symbol), as_of=moment(as_of), exact=True)
    found = snapshots[(metric, symbol)].search(query)
    assert_same_results(found, stored.stores[metric].search(query))
    assert all(result.timestamp < moment(as_of) for result in found)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("where", EXTRA_FILTERS, ids=lambda where: "none" if where is None else where.describe())
def test_a_whole_collection_snapshot_evaluates_filters_as_the_stores_sql(
    stored: Stored, snapshots: dict[tuple[str, str | None], MemorySnapshot], metric: str, where: Filter | None
) -> None:
    for seed in range(4):
        query = Query(random_vectors(1, seed=100 + seed)[0], k=25, where=where, as_of=moment(300 + 150 * seed))
        assert_same_results(snapshots[(metric, None)].search(query), stored.stores[metric].search(query))


def test_a_snapshot_takes_the_collections_specification_and_version(
    stored: Stored, snapshots: dict[tuple[str, str | None], MemorySnapshot]
) -> None:
    taken = snapshots[("l2", "NVDA")]
    store = stored.stores["l2"]
    assert taken.spec == store.spec
    assert taken.partition == "NVDA"
    assert len(taken) == store.count(Filter.eq("symbol", "NVDA"))
    assert taken.version is not None and taken.version >= 1


def test_ties_are_broken_by_the_stores_item_ids(database_url: str) -> None:
    # Small integers: every product and sum is exact in float32, so equal distances are equal on both sides.
    rng = np.random.default_rng(5)
    base = rng.integers(-2, 3, size=(6, DIMENSION)).astype(np.float32)
    vectors = np.repeat(base, 5, axis=0)
    keys = [f"twin-{row}" for row in range(len(vectors))]
    store = VectorDB(DIMENSION, name="twins", database_url=database_url)
    store.insert_many(
        keys, vectors, [{"symbol": "AAPL"}] * len(keys), timestamps=[moment(row % 7) for row in range(len(keys))]
    )
    taken = snapshot(database_url, "twins", "AAPL")
    for row in range(len(base)):
        query = Query(base[row], k=12, where=Filter.eq("symbol", "AAPL"), as_of=moment(5), exact=True)
        expected = store.search(query)
        assert [result.id for result in taken.search(query)] == [result.id for result in expected]
        assert len({result.distance for result in expected[:3]}) == 1, "the first neighbours are tied"


def test_items_stored_after_the_snapshot_are_not_in_it(database_url: str) -> None:
    store = VectorDB(DIMENSION, name="later", database_url=database_url)
    vectors = random_vectors(20, seed=9)
    store.insert_many([f"early-{row}" for row in range(10)], vectors[:10], [{"symbol": "AAPL"}] * 10)
    taken = snapshot(database_url, "later", "AAPL")
    store.insert_many([f"late-{row}" for row in range(10)], vectors[10:], [{"symbol": "AAPL"}] * 10)
    found = taken.search(Query(vectors[15], k=20))
    assert {result.id for result in found} == {f"early-{row}" for row in range(10)}
    assert taken.version == 1


def test_a_snapshot_of_a_missing_collection_or_partition_key_is_refused(database_url: str) -> None:
    with pytest.raises(CollectionNotFound, match="nothing"):
        snapshot(database_url, "nothing", "AAPL")
    VectorDB(DIMENSION, name="flat", partition_key=None, database_url=database_url)
    with pytest.raises(ConfigError, match="'flat' has no partition key"):
        snapshot(database_url, "flat", "AAPL")
    assert len(snapshot(database_url, "flat", None)) == 0


CONFIG = MemoryVoteConfig(dimension=32, horizon=4, k=8, min_neighbours=4, min_confidence=0.6)


def test_memory_vote_on_a_snapshot_decides_as_on_the_store(database_url: str) -> None:
    history = real_history("NVDA").head(260)
    embedder = WindowEmbedder(CONFIG.embedder_config)
    store = VectorDB(CONFIG.dimension, name="market_state", fingerprint=embedder.fingerprint, database_url=database_url)
    # As the nightly embed task stores them: keyed and linked by observation id, stamped with the bar's time.
    keys = [str(history.observation_id(bar)) for bar in range(CONFIG.window - 1, len(history))]
    store.upsert_many(
        keys,
        embedder.embed(bar_frame(history)),
        [{"symbol": history.symbol, "observation_id": key} for key in keys],
        timestamps=history.timestamps[CONFIG.window - 1 :].tolist(),
    )
    strategy = MemoryVote(CONFIG, snapshot(database_url, "market_state", history.symbol))
    frame = strategy.signals(history)
    expected = MemoryVote(CONFIG, store).signals(history)
    assert len(frame.decisions()) > 3
    assert np.array_equal(frame.target, expected.target, equal_nan=True)
    assert frame.links == expected.links
    np.testing.assert_allclose(frame.confidence, expected.confidence, rtol=1e-6)
    verify_causality(strategy, history, frame, cuts=[int(bar) + 1 for bar in frame.decisions()[:3]])
