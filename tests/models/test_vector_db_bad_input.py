"""Bad input to `VectorDB` (issue 14, point 7), on SQLite and on PostgreSQL: filters whose field names and
values carry SQL injection attempts, and vectors of the wrong dimension, dtype or shape, holding NaN,
infinities or norms float32 cannot measure. Each is answered or refused with one line, never executed as
SQL, and leaves every stored item and a sentinel table as they were.

One store per module and kind of database; every example checks that the store is intact after it, and
removes what it stored itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from models.engine import dispose_engines, get_engine
from models.migrations import upgrade_database
from models.vector_store import VectorDB
from neuraltrade.errors import ConfigError, DimensionMismatch, InvalidVector, NeuralTradeError
from neuraltrade.memory.collection import LARGEST_SQUARED_NORM, SMALLEST_SQUARED_NORM, Filter, Query
from neuraltrade.memory.query import FIELD_NAME, LARGEST_INTEGER, SMALLEST_INTEGER
from tests.bad_input import HOSTILE_TEXTS, assert_refusal, hostile_texts
from tests.models.vector_support import picks, random_vectors
from tests.postgresql import fresh_database

DIMENSION = 8
#: Partition values (symbols) and a second field's values: injection attempts stored as plain text.
STORED_TEXTS = tuple(value for value in HOSTILE_TEXTS if value and "\x00" not in value)
SENTINEL_ROWS = [(1, "still here"), (2, "'; DROP TABLE sentinel; --")]


@dataclass
class HostileStore:
    store: VectorDB
    keys: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any]]

    def assert_intact(self) -> None:
        """Every item, its vector and metadata, and the sentinel table are as they were stored."""
        assert self.store.count() == len(self.keys)
        with get_engine(self.store.database_url).connect() as connection:
            rows = connection.execute(text("SELECT id, note FROM sentinel ORDER BY id")).all()
        assert [tuple(row) for row in rows] == SENTINEL_ROWS
        for position in (0, len(self.keys) // 2, len(self.keys) - 1):
            item = self.store.get(self.keys[position])
            assert item is not None
            np.testing.assert_array_equal(item.vector, self.vectors[position])
            assert dict(item.metadata) == self.metadata[position]
        [nearest] = self.store.search(Query(self.vectors[3], k=1, exact=True))
        assert nearest.id == self.keys[3]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileStore]:
    """A store whose metadata holds injection attempts as values, beside a sentinel table."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile')}/store.db"
        yield from _hostile_store(url)
        return
    with fresh_database(request.getfixturevalue("postgresql_server")) as url:
        yield from _hostile_store(url)


def _hostile_store(url: str) -> Iterator[HostileStore]:
    upgrade_database(url)
    with get_engine(url).begin() as connection:
        connection.execute(text("CREATE TABLE sentinel (id INTEGER PRIMARY KEY, note TEXT)"))
        for row in SENTINEL_ROWS:
            connection.execute(
                text("INSERT INTO sentinel (id, note) VALUES (:id, :note)"), {"id": row[0], "note": row[1]}
            )
    keys = [f"{STORED_TEXTS[row % len(STORED_TEXTS)]}#{row}" for row in range(40)]
    vectors = random_vectors(len(keys), DIMENSION, seed=5)
    metadata = [
        {
            "symbol": STORED_TEXTS[row % len(STORED_TEXTS)],
            "regime": STORED_TEXTS[(row * 7) % len(STORED_TEXTS)],
            "volume": row,
            "flagged": row % 3 == 0,
        }
        for row in range(len(keys))
    ]
    store = VectorDB(DIMENSION, name="hostile", database_url=url)
    store.insert_many(keys, vectors, metadata)
    yield HostileStore(store=store, keys=keys, vectors=vectors, metadata=metadata)
    store.close()
    dispose_engines()


# -- filters ---------------------------------------------------------------------------------------------

field_names = st.one_of(st.sampled_from(["symbol", "regime", "volume", "flagged", "absent"]), hostile_texts)
filter_values = st.one_of(
    hostile_texts,
    st.sampled_from(STORED_TEXTS),
    st.booleans(),
    st.integers(min_value=-50, max_value=50),
    st.integers().filter(lambda value: not SMALLEST_INTEGER <= value <= LARGEST_INTEGER) | st.just(2**63),
    st.floats(),
)


def _valid_value(value: object, operator: str) -> bool:
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, bool):
        return operator in ("eq", "in")
    if isinstance(value, int):
        return SMALLEST_INTEGER <= value <= LARGEST_INTEGER
    return bool(np.isfinite(value))


@settings(max_examples=60, deadline=None)
@given(
    name=field_names,
    operator=st.sampled_from(["eq", "in", "lt", "le", "gt", "ge"]),
    values=st.lists(filter_values, min_size=1, max_size=3),
    built=st.booleans(),
    other=st.none() | st.sampled_from([Filter.eq("flagged", True), Filter.gt("volume", 10)]),
)
@example(name="symbol", operator="eq", values=["'; DROP TABLE sentinel; --"], built=True, other=None)
@example(name="regime", operator="in", values=["x') OR 1=1 --", "1"], built=False, other=None)
@example(name='x" OR 1=1 --', operator="eq", values=["a"], built=False, other=None)
@example(name="regime", operator="eq", values=["a\x00b"], built=True, other=None)
@example(name="volume", operator="lt", values=[10**30], built=True, other=None)
def test_a_filter_of_any_name_and_value_matches_what_python_picks_or_is_refused_and_breaks_nothing(
    hostile: HostileStore, name: str, operator: str, values: list[object], built: bool, other: Filter | None
) -> None:
    used = values if operator == "in" else values[:1]
    value: object = tuple(used) if operator == "in" else used[0]
    valid = FIELD_NAME.fullmatch(name) is not None and all(_valid_value(item, operator) for item in used)
    try:
        if built:
            where = Filter.in_(name, used) if operator == "in" else getattr(Filter, operator)(name, value)
        else:
            where = Filter(operator, name, value)
        if other is not None:
            where = where & other if len(name) % 2 else where | other
        counted = hostile.store.count(where)
        found = hostile.store.search(Query(hostile.vectors[0], k=5, where=where, exact=True))
    except NeuralTradeError as error:
        assert not valid, f"a valid filter was refused: {error}"
        assert isinstance(error, ConfigError)
        assert_refusal(error, embedded=[name, *map(str, used)])
    else:
        assert valid, f"filter {name!r} {operator} {value!r} was not refused"
        allowed = [picks(where, meta) for meta in hostile.metadata]
        assert counted == sum(allowed)
        assert len(found) == min(5, sum(allowed))
        assert {result.id for result in found} <= {key for key, ok in zip(hostile.keys, allowed, strict=True) if ok}
    hostile.assert_intact()


@settings(max_examples=25, deadline=None)
@given(stored=st.sampled_from(STORED_TEXTS))
def test_every_stored_injection_text_is_found_as_the_plain_value_it_is(hostile: HostileStore, stored: str) -> None:
    for where in (Filter.eq("symbol", stored), Filter.eq("regime", stored), Filter.in_("regime", [stored, "'"])):
        expected = {key for key, meta in zip(hostile.keys, hostile.metadata, strict=True) if picks(where, meta)}
        assert expected, where
        assert hostile.store.count(where) == len(expected)
        assert {result.id for result in hostile.store.search(Query(hostile.vectors[0], k=40, where=where))} == expected
    hostile.assert_intact()


# -- vectors ---------------------------------------------------------------------------------------------

wide_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e-30, 1e-45, 3e19, 1e38, 0.0])
vectors_of_numbers = st.lists(wide_floats, min_size=DIMENSION, max_size=DIMENSION)


@st.composite
def malformed_vectors(draw: st.DrawFn) -> object:
    """Something given as one vector that no collection of `DIMENSION`-d vectors may store."""
    numbers = draw(vectors_of_numbers)
    damage = draw(st.sampled_from(["nan", "dimension", "dtype", "shape", "empty", "ragged", "big_int"]))
    if damage == "nan":
        for position in draw(st.sets(st.integers(0, DIMENSION - 1), min_size=1)):
            numbers[position] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        with np.errstate(over="ignore"):  # a value beyond float16 is one more infinity
            return np.asarray(numbers, dtype=draw(st.sampled_from([np.float16, np.float32, np.float64])))
    if damage == "dimension":
        size = draw(st.integers(1, 3 * DIMENSION).filter(lambda size: size != DIMENSION))
        return np.ones(size) * draw(st.floats(0.5, 2.0))
    if damage == "dtype":
        dtype = draw(st.sampled_from([np.complex64, np.complex128, np.bool_, "U4", object, "datetime64[s]"]))
        return np.ones(DIMENSION).astype(dtype)
    if damage == "shape":
        return np.ones(draw(st.sampled_from([(2, DIMENSION), (1, 1, DIMENSION), (DIMENSION, 1, 2), ()])))
    if damage == "empty":
        return draw(st.sampled_from([[], np.zeros((0, DIMENSION)), None, "", "vector", {"a": 1}]))
    if damage == "ragged":
        return [numbers[:3], numbers]
    return [2**70, *numbers[1:]]


def _storable(values: list[float]) -> bool:
    with np.errstate(over="ignore"):
        single = np.asarray(values, dtype=np.float32)
    squared = float(np.einsum("i,i->", single, single, dtype=np.float64))
    return bool(np.isfinite(single).all()) and SMALLEST_SQUARED_NORM <= squared <= LARGEST_SQUARED_NORM


@settings(max_examples=60, deadline=None)
@given(
    vector=st.one_of(vectors_of_numbers, malformed_vectors()),
    action=st.sampled_from(["upsert", "insert_many", "upsert_many", "search"]),
)
@example(vector=[1e-30] + [0.0] * (DIMENSION - 1), action="search")
@example(vector=[3e19] + [0.0] * (DIMENSION - 1), action="upsert")
@example(vector=np.full(DIMENSION, 1 + 1j), action="upsert")
@example(vector=[[1.0], [1.0, 2.0]], action="upsert")
@example(vector=np.ones((1, 1, DIMENSION)), action="upsert")  # was flattened and stored as one vector
def test_a_vector_is_stored_or_searched_exactly_as_given_or_refused_and_breaks_nothing(
    hostile: HostileStore, vector: Any, action: str
) -> None:
    store = hostile.store
    key = "bad-input-probe"
    expected = isinstance(vector, list) and len(vector) == DIMENSION and _storable(vector)
    try:
        if action == "search":
            results = store.search(Query(vector, k=3))
        elif action == "upsert":
            store.upsert(key, vector, {"symbol": "probe"})
        else:
            getattr(store, action)([key], [vector], [{"symbol": "probe"}])
    except NeuralTradeError as error:
        assert not expected, f"a storable vector was refused: {error}"
        assert isinstance(error, InvalidVector | DimensionMismatch | ConfigError)
        assert_refusal(error)
    else:
        assert expected, f"{vector!r} was accepted by {action}"
        if action == "search":
            assert len(results) == 3
            assert all(np.isfinite(result.distance) for result in results)
        else:
            item = store.get(key)
            assert item is not None
            np.testing.assert_array_equal(item.vector, np.asarray(vector, dtype=np.float32))
            assert store.delete(key) == 1
    hostile.assert_intact()


def test_a_query_much_shorter_than_an_int8_collections_vectors_finds_its_nearest(
    hostile: HostileStore,
) -> None:
    # Its int8 code rounded to zero at the stored vectors' scale, whose cosine is undefined: every search
    # failed with a TypeError.
    store = VectorDB(DIMENSION, name="scaled_int8", quantization="int8", database_url=hostile.store.database_url)
    store.upsert_many([str(row) for row in range(20)], hostile.vectors[:20] * 1_000, [{"symbol": "x"}] * 20)
    query = hostile.vectors[7] / np.linalg.norm(hostile.vectors[7]) / 1_000

    [nearest] = store.search(Query(query, k=1))

    assert nearest.id == "7"
    assert nearest.distance == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("dimension", [4, 12, 63])
def test_a_binary_collection_of_a_dimension_that_is_no_multiple_of_8_stores_and_finds(
    hostile: HostileStore, dimension: int
) -> None:
    # sqlite-vec took as many bits as the dimension, while the packed codes come in whole bytes: every
    # write failed as an unavailable database.
    store = VectorDB(
        dimension, name=f"binary_{dimension}", quantization="binary", database_url=hostile.store.database_url
    )
    vectors = random_vectors(30, dimension, seed=dimension)
    store.upsert_many([str(row) for row in range(30)], vectors, [{"symbol": "x"}] * 30)

    [nearest] = store.search(Query(vectors[11], k=1))

    assert nearest.id == "11"
