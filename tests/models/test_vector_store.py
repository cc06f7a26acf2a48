"""Specification of the vector store on observations: collections, item ids, replacement, exact search."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select

from models import collections, memory_items, repositories
from models.dialects import vector_backend_for
from models.engine import dispose_engines, session_scope
from models.migrations import upgrade_database
from models.tables import CollectionRecord, MemoryItemRecord
from models.vector_store import VectorDB
from neuraltrade.clock import FixedClock
from neuraltrade.errors import ConfigError, DimensionMismatch, FingerprintMismatch, InvalidVector, StorageError
from neuraltrade.market.bars import conform_bar_frame, timestamps_to_microseconds
from neuraltrade.memory.collection import CollectionSpec, Filter, Query
from neuraltrade.memory.embedding import EmbedderFingerprint
from neuraltrade.types import Observation

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
START = datetime(2024, 1, 2, tzinfo=UTC)
DIMENSION = 32
FINGERPRINT = EmbedderFingerprint(name="test", version="1", dimension=DIMENSION, parameters={"seed": 1})
OTHER_FINGERPRINT = EmbedderFingerprint(name="test", version="1", dimension=DIMENSION, parameters={"seed": 2})
SPEC = CollectionSpec(name="memory", fingerprint=FINGERPRINT)


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's stores run on SQLite and on PostgreSQL."""
    return storage_url


@dataclass(frozen=True)
class Observations:
    """Observations stored in a database, in insertion order, ready to receive vectors."""

    ids: list[uuid.UUID]
    symbols: list[str]
    timestamps: list[int]


def store_observations(url: str, symbols: list[str], per_symbol: int) -> Observations:
    """Store `per_symbol` bars and their observations for each of `symbols` (embeddings need both)."""
    ids: list[uuid.UUID] = []
    names: list[str] = []
    stamps: list[int] = []
    with session_scope(url, write=True) as session:
        for symbol in symbols:
            frame = conform_bar_frame(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "timestamp": [START + timedelta(minutes=i) for i in range(per_symbol)],
                        "open": 10.0,
                        "high": 11.0,
                        "low": 9.0,
                        "close": 10.5,
                        "volume": 100.0,
                    }
                )
            )
            repositories.upsert_bars(session, frame, source="test", now=NOW)
            _, bar_ids = repositories.load_bars(session, symbol)
            moments = timestamps_to_microseconds(frame["timestamp"]).tolist()
            observation_ids = Observation.ids_for(symbol, moments)
            repositories.upsert_observations(
                session,
                {
                    "id": observation_ids,
                    "bar_id": bar_ids.tolist(),
                    "symbol": [symbol] * per_symbol,
                    "timestamp": moments,
                    "price": [10.5] * per_symbol,
                    "volume": [100.0] * per_symbol,
                    "spread": [0.01] * per_symbol,
                    "metadata": [{}] * per_symbol,
                    "created_at": [NOW] * per_symbol,
                },
            )
            ids += observation_ids
            names += [symbol] * per_symbol
            stamps += moments
    return Observations(ids, names, stamps)


def memory(url: str, *, fingerprint: EmbedderFingerprint = FINGERPRINT, spec: CollectionSpec = SPEC) -> VectorDB:
    return VectorDB(
        fingerprint.dimension,
        name=spec.name,
        metric=spec.metric,
        fingerprint=fingerprint,
        database_url=url,
        clock=FixedClock(NOW),
    )


def insert(
    url: str,
    observations: Observations,
    vectors: np.ndarray,
    *,
    fingerprint: EmbedderFingerprint = FINGERPRINT,
    spec: CollectionSpec = SPEC,
) -> list[int]:
    """Store one vector per observation, as the embed task does (keyed by observation id); return item ids."""
    store = memory(url, fingerprint=fingerprint, spec=spec)
    keys = [str(observation) for observation in observations.ids]
    store.upsert_many(
        keys,
        vectors,
        [{"symbol": symbol} for symbol in observations.symbols],
        timestamps=observations.timestamps,
        observation_ids=observations.ids,
    )
    return [memory_items.item_id(store.collection_id, key) for key in keys]


def counts(url: str, name: str = SPEC.name) -> tuple[int, int]:
    with session_scope(url) as session:
        collection = collections.get_collection(session, name)
        vectors = vector_backend_for(session).count(session.connection(), name)
        return vectors, memory_items.count(session, collection.id)


def stored_vector(url: str, item: int, name: str = SPEC.name) -> np.ndarray:
    with session_scope(url) as session:
        spec = collections.spec_of(collections.get_collection(session, name))
        ids, matrix = vector_backend_for(session).full_vectors(session.connection(), spec, [item])
    assert ids.tolist() == [item]
    return matrix[0]


def random_vectors(count: int, seed: int = 0, dimension: int = DIMENSION) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)


# -- collections ------------------------------------------------------------------------------------


def test_ensuring_a_collection_creates_it_and_then_returns_the_same_record(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        created = collections.ensure_collection(session, SPEC, NOW)
    with session_scope(database_url, write=True) as session:
        again = collections.ensure_collection(session, SPEC, NOW + timedelta(days=1))
        has_table = inspect(session.connection()).has_table("vec_memory")
        records = session.scalars(select(CollectionRecord)).all()

    assert again.id == created.id
    assert (again.name, again.dimension, again.metric) == ("memory", DIMENSION, "cosine")
    assert again.fingerprint_digest == FINGERPRINT.digest
    assert again.created_at == NOW
    assert has_table
    assert len(records) == 1
    assert collections.spec_of(again) == SPEC


def test_a_collection_of_another_embedder_is_a_fingerprint_mismatch_naming_both(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        collections.ensure_collection(session, SPEC, NOW)

    other = CollectionSpec(name=SPEC.name, fingerprint=OTHER_FINGERPRINT)
    with pytest.raises(FingerprintMismatch) as raised, session_scope(database_url, write=True) as session:
        collections.ensure_collection(session, other, NOW)

    message = str(raised.value)
    assert FINGERPRINT.describe() in message
    assert OTHER_FINGERPRINT.describe() in message
    assert "'memory'" in message


def test_an_unknown_collection_is_not_found_by_name(database_url: str) -> None:
    with pytest.raises(collections.CollectionNotFound, match="'nowhere'"):
        VectorDB.open("nowhere", database_url=database_url)


# -- inserting --------------------------------------------------------------------------------------


def test_inserted_vectors_are_counted_in_both_stores_and_keep_their_values(database_url: str) -> None:
    observations = store_observations(database_url, ["AAA", "BBB"], 30)
    vectors = random_vectors(60)

    ids = insert(database_url, observations, vectors)

    assert counts(database_url) == (60, 60)
    assert len(set(ids)) == 60
    np.testing.assert_array_equal(stored_vector(database_url, ids[17]), vectors[17])


def test_embedding_ids_are_derived_from_collection_and_observation_and_stable(database_url: str) -> None:
    observations = store_observations(database_url, ["AAA"], 10)

    ids = insert(database_url, observations, random_vectors(10))
    again = insert(database_url, observations, random_vectors(10, seed=1))

    with session_scope(database_url) as session:
        collection = collections.get_collection(session, SPEC.name)
        records = session.scalars(select(MemoryItemRecord)).all()
    expected = [memory_items.item_id(collection.id, str(observation)) for observation in observations.ids]
    assert ids == again == expected
    assert {(record.id, record.observation_id) for record in records} == set(zip(ids, observations.ids, strict=True))
    assert all(0 <= value < 2**63 for value in ids)
    key = str(observations.ids[0])
    assert memory_items.item_id(1, key) != memory_items.item_id(2, key)
    assert (
        memory_items.item_id(1, "plain-key") == memory_items.item_id(1, "plain-key") != memory_items.item_id(1, "other")
    )


def test_reinserting_the_same_observations_replaces_their_vectors(database_url: str) -> None:
    observations = store_observations(database_url, ["AAA", "BBB"], 25)
    insert(database_url, observations, random_vectors(50, seed=1))
    replacement = random_vectors(50, seed=2)

    ids = insert(database_url, observations, replacement)

    assert counts(database_url) == (50, 50)
    np.testing.assert_array_equal(stored_vector(database_url, ids[30]), replacement[30])
    [nearest] = memory(database_url).search(Query(replacement[30], k=1))
    assert memory_items.item_id(memory(database_url).collection_id, nearest.id) == ids[30]
    assert nearest.id == str(observations.ids[30])
    assert nearest.distance == pytest.approx(0.0, abs=1e-5)


def test_reinserting_part_of_a_collection_keeps_the_rest(database_url: str) -> None:
    observations = store_observations(database_url, ["AAA"], 20)
    first = random_vectors(20, seed=1)
    ids = insert(database_url, observations, first)
    part = Observations(observations.ids[5:8], observations.symbols[5:8], observations.timestamps[5:8])

    insert(database_url, part, random_vectors(3, seed=2))

    assert counts(database_url) == (20, 20)
    np.testing.assert_array_equal(stored_vector(database_url, ids[0]), first[0])


def bad_batches() -> list[tuple[str, np.ndarray, EmbedderFingerprint, type[Exception]]]:
    with_nan = random_vectors(10, seed=3)
    with_nan[4, 2] = np.nan
    with_infinity = random_vectors(10, seed=3)
    with_infinity[9, 0] = np.inf
    return [
        ("wrong-dimension", random_vectors(10, seed=3, dimension=DIMENSION + 1), FINGERPRINT, DimensionMismatch),
        ("nan", with_nan, FINGERPRINT, InvalidVector),
        ("infinity", with_infinity, FINGERPRINT, InvalidVector),
        ("other-fingerprint", random_vectors(10, seed=3), OTHER_FINGERPRINT, FingerprintMismatch),
        ("not-numbers", np.full((10, DIMENSION), "x"), FINGERPRINT, InvalidVector),
        ("three-dimensional", np.zeros((10, 2, DIMENSION)), FINGERPRINT, InvalidVector),
    ]


@pytest.mark.parametrize(
    ("vectors", "fingerprint", "error"),
    [batch[1:] for batch in bad_batches()],
    ids=[batch[0] for batch in bad_batches()],
)
def test_a_refused_batch_writes_nothing(
    database_url: str, vectors: np.ndarray, fingerprint: EmbedderFingerprint, error: type[Exception]
) -> None:
    observations = store_observations(database_url, ["AAA"], 20)
    first = random_vectors(20, seed=1)
    ids = insert(database_url, observations, first)
    # The refused batch re-embeds stored observations, so a partial write would replace their vectors.
    part = Observations(observations.ids[:10], observations.symbols[:10], observations.timestamps[:10])

    with pytest.raises(error):
        insert(database_url, part, vectors, fingerprint=fingerprint)

    assert counts(database_url) == (20, 20)
    for position in (0, 4, 9):
        np.testing.assert_array_equal(stored_vector(database_url, ids[position]), first[position])


def test_a_batch_whose_parts_do_not_pair_up_is_refused_and_writes_nothing(database_url: str) -> None:
    observations = store_observations(database_url, ["AAA"], 10)
    first = random_vectors(10, seed=1)
    ids = insert(database_url, observations, first)
    short = Observations(observations.ids, observations.symbols, observations.timestamps[:-1])

    with pytest.raises(ConfigError, match="do not pair up"):
        insert(database_url, short, random_vectors(10, seed=2))

    assert counts(database_url) == (10, 10)
    np.testing.assert_array_equal(stored_vector(database_url, ids[0]), first[0])


def test_vectors_of_observations_never_stored_are_refused_and_write_nothing(database_url: str) -> None:
    observations = store_observations(database_url, ["AAA"], 5)
    insert(database_url, observations, random_vectors(5))
    unknown = Observations(
        [*observations.ids[:2], Observation.id_for("AAA", START - timedelta(days=1))],
        ["AAA"] * 3,
        [*observations.timestamps[:2], observations.timestamps[0] - 86_400_000_000],
    )

    with pytest.raises(StorageError, match=r"(?i)foreign key"):
        insert(database_url, unknown, random_vectors(3, seed=9))

    assert counts(database_url) == (5, 5)


def test_an_empty_batch_writes_nothing(database_url: str) -> None:
    assert insert(database_url, Observations([], [], []), np.empty((0, DIMENSION), dtype=np.float32)) == []
    assert counts(database_url) == (0, 0)
    assert memory(database_url).upsert_many([], np.empty((0, DIMENSION), dtype=np.float32)) == 0


# -- searching --------------------------------------------------------------------------------------

SEARCH_SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]
SEARCH_PER_SYMBOL = 500
K = 10


@dataclass(frozen=True)
class SearchStore:
    url: str
    observations: Observations
    vectors: np.ndarray
    ids: np.ndarray


@pytest.fixture(scope="module")
def search_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchStore]:
    """2,000 random vectors over four symbols, shared by the search properties (they only read)."""
    folder: Path = tmp_path_factory.mktemp("search")
    url = f"sqlite:///{folder}/search.db"
    upgrade_database(url)
    observations = store_observations(url, SEARCH_SYMBOLS, SEARCH_PER_SYMBOL)
    vectors = random_vectors(len(observations.ids), seed=20_240_506)
    insert(url, observations, vectors)
    yield SearchStore(url, observations, vectors, np.asarray([str(observation) for observation in observations.ids]))
    dispose_engines()


def brute_force_cosine(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    matrix = vectors.astype(np.float64)
    target = query.astype(np.float64)
    return 1.0 - matrix @ target / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(target))


def queries() -> st.SearchStrategy[tuple[int, float, int]]:
    # (seed, how far from a stored vector, which stored vector); scale 0 asks for a stored vector itself.
    return st.tuples(
        st.integers(0, 2**32 - 1),
        st.sampled_from([0.0, 0.05, 0.5, 1e6]),
        st.integers(0, len(SEARCH_SYMBOLS) * SEARCH_PER_SYMBOL - 1),
    )


def make_query(store: SearchStore, seed: int, scale: float, anchor: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(DIMENSION)
    return (store.vectors[anchor] + scale * noise).astype(np.float32)


def assert_exact(store: SearchStore, query: np.ndarray, rows: np.ndarray, symbol: str | None) -> None:
    distances = brute_force_cosine(store.vectors[rows], query)
    order = np.argsort(distances, kind="stable")
    # float32 (sqlite-vec) and float64 (here) may only disagree on a near tie at the cut.
    assume(distances[order[K]] - distances[order[K - 1]] > 1e-5)
    question = Query(query, k=K)
    found = memory(store.url).search(question if symbol is None else question.filter(Filter.eq("symbol", symbol)))

    assert [neighbour.id for neighbour in found] == store.ids[rows][order[:K]].tolist()
    np.testing.assert_allclose([n.distance for n in found], distances[order[:K]], atol=1e-5)
    for neighbour in found:
        position = int(np.flatnonzero(store.ids == neighbour.id)[0])
        assert neighbour.metadata == {"symbol": store.observations.symbols[position]}
        assert neighbour.timestamp == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=store.observations.timestamps[position]
        )


@settings(max_examples=25, deadline=None)
@given(query=queries())
def test_search_returns_the_exact_nearest_neighbours(search_store: SearchStore, query: tuple[int, float, int]) -> None:
    vector = make_query(search_store, *query)

    assert_exact(search_store, vector, np.arange(len(search_store.vectors)), symbol=None)


@settings(max_examples=15, deadline=None)
@given(query=queries(), symbol=st.sampled_from(SEARCH_SYMBOLS))
def test_search_within_a_symbol_returns_its_exact_nearest_neighbours_only(
    search_store: SearchStore, query: tuple[int, float, int], symbol: str
) -> None:
    vector = make_query(search_store, *query)
    rows = np.flatnonzero(np.asarray(search_store.observations.symbols) == symbol)

    assert_exact(search_store, vector, rows, symbol=symbol)


def test_a_stored_vector_is_its_own_nearest_neighbour(search_store: SearchStore) -> None:
    [nearest] = memory(search_store.url).search(Query(search_store.vectors[1234], k=1))

    assert nearest.id == search_store.ids[1234]
    assert nearest.distance == pytest.approx(0.0, abs=1e-6)


def test_search_in_a_symbol_without_vectors_finds_nothing(search_store: SearchStore) -> None:
    query = Query(search_store.vectors[0]).filter(Filter.eq("symbol", "ZZZ"))
    assert memory(search_store.url).search(query) == []


def test_search_refuses_a_query_of_another_embedder_or_a_bad_k(search_store: SearchStore) -> None:
    query = search_store.vectors[0]
    with pytest.raises(FingerprintMismatch):
        memory(search_store.url, fingerprint=OTHER_FINGERPRINT)
    with pytest.raises(DimensionMismatch):
        memory(search_store.url).search(Query(query[:-1]))
    for bad_k in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="k must be a positive integer"):
            Query(query, k=bad_k)  # type: ignore[arg-type]
