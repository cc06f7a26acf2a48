"""Specification of the vector memory's questions (`neuraltrade.memory.query`): filters, queries, cache keys.

Pure: no database. What the store does with a filter is specified in tests/models/test_vector_db.py.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.errors import ConfigError, InvalidVector
from neuraltrade.memory.collection import Filter, Query

VECTOR = np.arange(16, dtype=np.float32)
AS_OF = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)

# Field names


@pytest.mark.parametrize(
    "name",
    ["symbol; DROP TABLE x", "a.b", "", 3, None, "1abc", "a b", "a-b", '$."x"', "symbol\n", "é", "a" * 65],
    ids=repr,
)
def test_a_filter_refuses_a_field_name_that_is_not_a_plain_identifier_naming_it(name: object) -> None:
    for build in (
        lambda: Filter.eq(name, 1),  # type: ignore[arg-type]
        lambda: Filter.in_(name, [1]),  # type: ignore[arg-type]
        lambda: Filter.lt(name, 1),  # type: ignore[arg-type]
        lambda: Filter.ge(name, 1),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigError, match="field name") as raised:
            build()
        assert repr(name) in str(raised.value)


@pytest.mark.parametrize("name", ["symbol", "_private", "Regime2", "a" * 64])
def test_a_filter_accepts_identifiers_up_to_64_characters(name: str) -> None:
    assert Filter.eq(name, "x").name == name


# Values


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, np.float64("nan"), None, object(), [1], {"a": 1}, b"AAPL", (1,)],
    # An object's repr holds its address, which differs between processes (pytest-xdist's workers).
    ids=lambda value: "object" if type(value) is object else repr(value),
)
def test_a_filter_refuses_a_value_that_is_not_a_finite_scalar_naming_it(value: object) -> None:
    with pytest.raises(ConfigError, match="not a string, a boolean, an integer or a finite number") as raised:
        Filter.eq("score", value)  # type: ignore[arg-type]
    assert repr(value) in str(raised.value) or isinstance(value, float | np.floating)
    with pytest.raises(ConfigError):
        Filter.in_("score", ["ok", value])  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        Filter.gt("score", value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["AAPL", "", 0, -3, 2**62, 1.5, -0.0, True, False, np.int64(7), np.float32(2.5)])
def test_a_filter_keeps_finite_scalars_as_python_values(value: object) -> None:
    kept = Filter.eq("field", value).value  # type: ignore[arg-type]
    assert kept == value
    assert type(kept) in (str, int, float, bool)


def test_an_in_filter_needs_at_least_one_value() -> None:
    with pytest.raises(ConfigError, match="no values"):
        Filter.in_("symbol", [])
    with pytest.raises(ConfigError, match="no values"):
        Filter.in_("symbol", iter(()))


def test_an_in_filter_refuses_a_bare_string_which_would_be_read_letter_by_letter() -> None:
    with pytest.raises(ConfigError, match="'AAPL'"):
        Filter.in_("symbol", "AAPL")
    with pytest.raises(ConfigError):
        Filter.in_("symbol", 3)  # type: ignore[arg-type]


def test_an_in_filter_keeps_each_value_once_in_the_order_given() -> None:
    assert Filter.in_("symbol", ["MSFT", "AAPL", "MSFT"]).value == ("MSFT", "AAPL")
    assert Filter.in_("symbol", (value for value in ["NVDA"])).value == ("NVDA",)


def test_an_in_filter_keeps_a_boolean_and_a_number_apart() -> None:
    assert Filter.in_("flag", [True, 1]).value == (True, 1)
    assert Filter.in_("flag", [0, False]).value == (0, False)


@pytest.mark.parametrize("build", [Filter.lt, Filter.le, Filter.gt, Filter.ge])
def test_booleans_cannot_be_ordered(build: object) -> None:
    with pytest.raises(ConfigError, match="cannot order booleans"):
        build("flag", True)  # type: ignore[operator]


# Combining


def test_and_and_or_flatten_nested_operands_of_the_same_kind() -> None:
    a, b, c, d = (Filter.eq(name, 1) for name in "abcd")
    assert ((a & b) & c).operands == (a, b, c)
    assert (a & (b & c)).operands == (a, b, c)
    assert ((a | b) | (c | d)).operands == (a, b, c, d)
    mixed = a & (b | c)
    assert mixed.operator == "and"
    assert mixed.operands == (a, Filter("or", operands=(b, c)))
    assert (a | b & c).operands == (a, Filter("and", operands=(b, c)))


def test_a_filter_combines_only_with_another_filter() -> None:
    with pytest.raises(ConfigError, match="only with another filter"):
        Filter.eq("a", 1) & "b = 2"  # type: ignore[operator]
    with pytest.raises(ConfigError):
        Filter.eq("a", 1) | None  # type: ignore[operator]


def test_a_filter_names_every_field_it_reads() -> None:
    where = Filter.eq("symbol", "AAPL") & (Filter.gt("volume", 10) | Filter.in_("regime", ["bull"]))
    assert where.fields() == {"symbol", "volume", "regime"}


def test_conjuncts_are_the_operands_of_a_top_level_and_or_the_filter_itself() -> None:
    a, b = Filter.eq("a", 1), Filter.eq("b", 2)
    assert list((a & b).conjuncts()) == [a, b]
    assert list((a | b).conjuncts()) == [a | b]
    assert list(a.conjuncts()) == [a]


def test_describe_reads_like_the_condition() -> None:
    assert Filter.eq("symbol", "NVDA").describe() == "symbol = 'NVDA'"
    assert Filter.in_("symbol", ["A", "B"]).describe() == "symbol in ('A', 'B')"
    assert [Filter.lt("v", 1).describe(), Filter.le("v", 1).describe()] == ["v < 1", "v <= 1"]
    assert [Filter.gt("v", 1.5).describe(), Filter.ge("v", 1.5).describe()] == ["v > 1.5", "v >= 1.5"]
    both = (Filter.eq("symbol", "NVDA") & Filter.gt("volume", 1000)).describe()
    assert "symbol = 'NVDA' and volume > 1000" in both
    nested = (Filter.eq("a", 1) & (Filter.eq("b", True) | Filter.eq("c", "x"))).describe()
    assert nested == "(a = 1 and (b = True or c = 'x'))"


def test_an_injection_attempt_as_a_value_is_described_as_a_quoted_value() -> None:
    attempt = "x' OR 1=1 --"
    where = Filter.eq("symbol", attempt)
    assert where.value == attempt
    assert where.describe() == f"symbol = {attempt!r}"


# Queries


def test_a_query_keeps_its_vector_as_float32_and_defaults_to_ten_neighbours() -> None:
    query = Query([1, 2, 3])  # type: ignore[arg-type]
    assert query.vector.dtype == np.float32
    assert query.vector.tolist() == [1.0, 2.0, 3.0]
    assert (query.k, query.where, query.as_of, query.exact) == (10, None, None, False)


@pytest.mark.parametrize("k", [0, -1, True, 2.0, "10", None])
def test_a_query_refuses_a_k_that_is_not_a_positive_integer_naming_it(k: object) -> None:
    with pytest.raises(ConfigError, match="k must be a positive integer") as raised:
        Query(VECTOR, k=k)  # type: ignore[arg-type]
    assert repr(k) in str(raised.value)


def test_a_query_refuses_a_naive_as_of() -> None:
    naive = datetime(2024, 3, 1, 14, 30)
    with pytest.raises(ConfigError, match=r"as_of .* is naive") as raised:
        Query(VECTOR, as_of=naive)
    assert "2024" in str(raised.value)
    with pytest.raises(ConfigError):
        Query(VECTOR, as_of="2024-03-01T14:30:00+00:00")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "vector",
    [
        [1.0, math.nan, 3.0],
        [1.0, math.inf],
        np.ones((2, 8), dtype=np.float32),
        np.ones((1, 8), dtype=np.float32),
        np.float32(1.0),
        [],
        ["a", "b"],
        [True, False],
    ],
    ids=["nan", "inf", "two-d", "one-row-matrix", "scalar", "empty", "strings", "booleans"],
)
def test_a_query_refuses_a_vector_that_is_not_a_flat_finite_array_of_numbers(vector: object) -> None:
    with pytest.raises(InvalidVector):
        Query(vector)  # type: ignore[arg-type]


def test_a_query_names_the_shape_of_a_matrix_given_as_its_vector() -> None:
    with pytest.raises(InvalidVector, match=r"\(2, 8\)"):
        Query(np.ones((2, 8)))


@pytest.mark.parametrize("name", ["oversample", "ef"])
@pytest.mark.parametrize("value", [0, -4, True, 1.5])
def test_a_query_refuses_an_oversample_or_ef_that_is_not_a_positive_integer(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be a positive integer"):
        Query(VECTOR, **{name: value})  # type: ignore[arg-type]


def test_a_query_refuses_a_where_that_is_not_a_filter() -> None:
    with pytest.raises(ConfigError, match="Filter"):
        Query(VECTOR, where="symbol = 'AAPL'")  # type: ignore[arg-type]


def test_a_query_vector_cannot_be_changed_through_the_query() -> None:
    query = Query(VECTOR.astype(np.float64))
    with pytest.raises(ValueError):
        query.vector[0] = 99.0


def test_building_a_query_leaves_the_callers_vector_writable_and_the_query_unchanged_by_it() -> None:
    mine = np.zeros(16, dtype=np.float32)
    query = Query(mine)
    key = query.cache_key
    mine[0] = 1.0
    assert query.vector[0] == 0.0
    assert query.cache_key == key


def test_query_filter_ands_a_condition_to_the_one_it_has_and_keeps_everything_else() -> None:
    symbol, volume, regime = Filter.eq("symbol", "AAPL"), Filter.gt("volume", 5), Filter.eq("regime", "bull")
    base = Query(VECTOR, k=7, as_of=AS_OF, oversample=3, ef=50, exact=True)
    once = base.filter(symbol)
    assert once.where == symbol
    twice = once.filter(volume).filter(regime)
    assert twice.where == Filter("and", operands=(symbol, volume, regime))
    assert (twice.k, twice.as_of, twice.oversample, twice.ef, twice.exact) == (7, AS_OF, 3, 50, True)
    assert np.array_equal(twice.vector, base.vector)
    assert base.where is None, "filter returns a new query and leaves the first as it was"


def test_query_filter_ands_onto_an_or() -> None:
    either = Filter.eq("symbol", "AAPL") | Filter.eq("symbol", "MSFT")
    query = Query(VECTOR, where=either).filter(Filter.gt("volume", 5))
    assert query.where == Filter("and", operands=(either, Filter.gt("volume", 5)))


# Cache keys


def test_equal_queries_share_a_cache_key() -> None:
    def build() -> Query:
        return Query(VECTOR.copy(), k=5, as_of=AS_OF, oversample=2).filter(
            Filter.eq("symbol", "AAPL") & Filter.in_("regime", ["bull", "bear"])
        )

    assert build().cache_key == build().cache_key
    assert hash(build().cache_key) == hash(build().cache_key)
    assert Query(np.array([1, 2, 3])).cache_key == Query(np.array([1.0, 2.0, 3.0])).cache_key


def test_the_same_instant_in_another_time_zone_is_the_same_question() -> None:
    elsewhere = AS_OF.astimezone(timezone(timedelta(hours=5)))
    assert Query(VECTOR, as_of=AS_OF).cache_key == Query(VECTOR, as_of=elsewhere).cache_key


REFERENCE = Query(VECTOR, k=10, where=Filter.eq("symbol", "AAPL"), as_of=AS_OF, oversample=4, ef=64, exact=True)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("vector", VECTOR + 1),
        ("k", 11),
        ("where", Filter.eq("symbol", "MSFT")),
        ("where", Filter.eq("regime", "AAPL")),
        ("where", Filter.ge("symbol", "AAPL")),
        ("where", Filter.in_("symbol", ["AAPL", "MSFT"])),
        ("where", Filter.eq("symbol", "AAPL") | Filter.eq("symbol", "MSFT")),
        ("where", None),
        ("as_of", AS_OF + timedelta(microseconds=1)),
        ("as_of", None),
        ("oversample", 8),
        ("oversample", None),
        ("ef", 200),
        ("exact", False),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_queries_that_differ_in_one_thing_have_different_cache_keys(attribute: str, value: Any) -> None:
    other = replace(REFERENCE, **{attribute: value})
    assert REFERENCE.cache_key != other.cache_key


def test_a_boolean_filter_and_a_numeric_filter_have_different_cache_keys() -> None:
    assert Query(VECTOR, where=Filter.eq("flag", True)).cache_key != Query(VECTOR, where=Filter.eq("flag", 1)).cache_key
    assert (
        Query(VECTOR, where=Filter.eq("flag", False)).cache_key != Query(VECTOR, where=Filter.eq("flag", 0)).cache_key
    )


@settings(max_examples=200, deadline=None)
@given(
    first=st.lists(st.floats(-1e6, 1e6, width=32), min_size=4, max_size=4),
    second=st.lists(st.floats(-1e6, 1e6, width=32), min_size=4, max_size=4),
    k=st.integers(1, 50),
)
def test_cache_keys_are_equal_exactly_when_vectors_and_k_are(first: list[float], second: list[float], k: int) -> None:
    left, right = np.array(first, dtype=np.float32), np.array(second, dtype=np.float32)
    same = np.array_equal(left, right) and all(
        math.copysign(1, a) == math.copysign(1, b) for a, b in zip(first, second, strict=True)
    )
    assert (Query(left, k=k).cache_key == Query(right, k=k).cache_key) == same
