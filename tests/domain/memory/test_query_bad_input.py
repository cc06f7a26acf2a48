"""Bad input to filters and queries (issue 14, point 7): a `Filter` built directly, with any operator,
name, value and operands, and a `Query` of any vector, are either well formed or refused with one line
naming what is wrong. A store only ever sees well-formed ones (tests/models/test_vector_db_bad_input.py
shows what it does with them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as numpy_strategies

from neuraltrade.errors import NeuralTradeError
from neuraltrade.memory.query import (
    COMBINATIONS,
    COMPARISONS,
    FIELD_NAME,
    LARGEST_INTEGER,
    LEAF_OPERATORS,
    SMALLEST_INTEGER,
    Filter,
    Query,
)
from tests.bad_input import assert_refusal, hostile_texts

operators = st.one_of(st.sampled_from([*LEAF_OPERATORS, *COMBINATIONS]), hostile_texts, st.none(), st.integers())
names = st.one_of(st.sampled_from(["symbol", "regime", "_x9"]), hostile_texts, st.none(), st.integers())
scalars = st.one_of(
    hostile_texts,
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.none(),
    st.binary(max_size=3),
    st.sampled_from([np.int64(3), np.float32(0.5), np.bool_(True), np.float64(np.nan), [1], {"a": 1}]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3).map(tuple), st.lists(scalars, max_size=2))
leaves = st.builds(Filter.eq, st.just("symbol"), st.just("AAPL")) | st.builds(Filter.gt, st.just("volume"), st.just(1))
operand_lists = st.one_of(st.just(()), st.lists(leaves | scalars, max_size=3).map(tuple), st.lists(leaves, max_size=2))


def _plain_scalar(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, bool | np.bool_):
        return True
    if isinstance(value, int | np.integer):
        return SMALLEST_INTEGER <= int(value) <= LARGEST_INTEGER
    if isinstance(value, float | np.floating):
        return bool(np.isfinite(value))
    return False


def _well_formed(operator: object, name: object, value: object, operands: object) -> bool:
    if operator in COMBINATIONS:
        return (
            name is None
            and value is None
            and isinstance(operands, tuple)
            and len(operands) > 0
            and all(isinstance(operand, Filter) for operand in operands)
        )
    if not isinstance(operator, str) or operator not in LEAF_OPERATORS or operands != ():
        return False
    if not isinstance(name, str) or FIELD_NAME.fullmatch(name) is None:
        return False
    if operator == "in":
        return isinstance(value, tuple) and len(value) > 0 and all(_plain_scalar(item) for item in value)
    ordered = operator in COMPARISONS
    return _plain_scalar(value) and not (ordered and isinstance(value, bool | np.bool_))


@settings(max_examples=300, deadline=None)
@given(operator=operators, name=names, value=values, operands=operand_lists)
@example(operator="drop", name="x", value=1, operands=())
@example(operator="eq", name='x" OR 1=1 --', value="a", operands=())
@example(operator="or", name=None, value=None, operands=(1, 2))
@example(operator="eq", name=None, value=1, operands=())
@example(operator="lt", name="x", value=True, operands=())
@example(operator="eq", name="x", value=10**30, operands=())
@example(operator="in", name="x", value=(), operands=())
def test_a_filter_built_directly_is_well_formed_or_refused_in_one_line(
    operator: Any, name: Any, value: Any, operands: Any
) -> None:
    try:
        built = Filter(operator, name, value, operands)
    except NeuralTradeError as error:
        assert not _well_formed(operator, name, value, operands), f"a well-formed filter was refused: {error}"
        assert_refusal(error, embedded=[repr(operator), repr(name), repr(value), str(name), str(value)])
        return
    assert _well_formed(operator, name, value, operands), f"{built!r} was not refused"
    assert built.fields() <= {name} | {"symbol", "volume"}
    # What a store binds is plain Python: numpy's scalars were converted.
    shown = built.value if isinstance(built.value, tuple) else (built.value,)
    assert not any(isinstance(item, np.generic) for item in shown)
    assert built.describe()


vector_like = st.one_of(
    numpy_strategies.arrays(
        dtype=st.sampled_from(
            [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint64, np.complex64, np.bool_, "U2", "M8[s]"]
        ),
        shape=numpy_strategies.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    ),
    st.lists(st.floats() | st.integers(min_value=-(2**80), max_value=2**80), max_size=6),
    st.lists(st.lists(st.floats(-1, 1), max_size=3), max_size=3),
    st.sampled_from([None, "abc", b"abc", {"a": 1}, 3.0]),
)


@settings(max_examples=200, deadline=None)
@given(vector=vector_like)
@example(vector=np.array([1 + 2j, 3.0]))
@example(vector=[[1.0], [1.0, 2.0]])
@example(vector=[2**70, 1.0])
@example(vector=np.array([1e300, 1.0]))
def test_a_query_keeps_a_flat_finite_real_vector_as_float32_or_refuses_it_in_one_line(vector: Any) -> None:
    try:
        query = Query(vector)
    except NeuralTradeError as error:
        assert_refusal(error)
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                array = np.asarray(vector)
                acceptable = (
                    array.ndim == 1
                    and array.size > 0
                    and np.issubdtype(array.dtype, np.number)
                    and not np.issubdtype(array.dtype, np.complexfloating)
                    and bool(np.isfinite(array.astype(np.float32)).all())
                )
            except ValueError:  # ragged
                acceptable = False
        assert not acceptable, f"a flat finite real vector was refused: {error}"
        return
    assert query.vector.dtype == np.float32 and query.vector.ndim == 1
    assert np.isfinite(query.vector).all()
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(query.vector, np.asarray(vector).astype(np.float32))
