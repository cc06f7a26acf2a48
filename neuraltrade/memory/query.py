"""Questions asked of the vector memory: filters over item metadata, queries, and what comes back.

A `Filter` is a small expression tree over metadata fields. Field names are checked here, against a
fixed pattern, and values are kept as Python values: the store turns a filter into SQL with every
value bound as a parameter, so no SQL is ever built from a user's string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from neuraltrade.errors import ConfigError, InvalidVector
from neuraltrade.timestamps import require_aware

#: A metadata field name: a letter or underscore, then letters, digits or underscores (at most 64).
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

Scalar = str | int | float | bool
COMPARISONS = ("lt", "le", "gt", "ge")
#: What a leaf of a filter does with its field, and how filters combine.
LEAF_OPERATORS = ("eq", "in", *COMPARISONS)
COMBINATIONS = ("and", "or")
#: The integers a database compares: SQLite's INTEGER and PostgreSQL's bigint are 64-bit.
SMALLEST_INTEGER, LARGEST_INTEGER = -(2**63), 2**63 - 1


def check_field_name(name: object, where: str = "filter") -> str:
    """Return `name` if it is a valid metadata field name, else raise `ConfigError` naming it."""
    if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
        raise ConfigError(
            f"{where} field {name!r} is not a field name (a letter or underscore, then up to 63 letters, "
            "digits or underscores)"
        )
    return name


def check_scalar(value: object, where: str) -> Scalar:
    """Return `value` if it is a string, a boolean, a 64-bit integer or a finite float, else raise `ConfigError`."""
    if isinstance(value, str) and "\x00" in value:
        raise ConfigError(f"{where} value {value!r} holds a NUL character (U+0000), which no stored value holds")
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not SMALLEST_INTEGER <= value <= LARGEST_INTEGER:
            raise ConfigError(f"{where} value {value} lies outside the 64-bit integers a database compares")
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, np.generic):
        return check_scalar(value.item(), where)
    raise ConfigError(f"{where} value {value!r} is not a string, a boolean, an integer or a finite number")


@dataclass(frozen=True)
class Filter:
    """A condition on an item's metadata; build one with `Filter.eq`, `Filter.in_`, `Filter.lt`, ...

    Conditions combine with ``&`` (and) and ``|`` (or). A field an item does not have never matches.
    Values compare within their kind: strings with strings, numbers with numbers, booleans with booleans.
    """

    operator: str
    name: str | None = None
    value: Scalar | tuple[Scalar, ...] | None = None
    operands: tuple[Filter, ...] = field(default=())

    def __post_init__(self) -> None:
        # The class is public, so a filter built directly is checked as the builders check theirs: no
        # unchecked field name, value or operator reaches the SQL a store makes of it.
        if not isinstance(self.operator, str) or self.operator not in (*LEAF_OPERATORS, *COMBINATIONS):
            raise ConfigError(
                f"filter operator {self.operator!r} is not one of {', '.join((*LEAF_OPERATORS, *COMBINATIONS))}"
            )
        if not isinstance(self.operands, tuple):
            raise ConfigError(f"a filter's operands are a tuple of filters, was given {self.operands!r}")
        if self.operator in COMBINATIONS:
            if self.name is not None or self.value is not None or not self.operands:
                raise ConfigError(f"a filter {self.operator!r} combines filters only, was given {self!r}")
            for operand in self.operands:
                if not isinstance(operand, Filter):
                    raise ConfigError(f"a filter {self.operator!r} combines filters only, was given {operand!r}")
            return
        if self.operands:
            raise ConfigError(f"a filter {self.operator!r} compares one field, was given operands {self.operands!r}")
        check_field_name(self.name)
        where = f"Filter.{'in_' if self.operator == 'in' else self.operator}({self.name!r})"
        if self.operator == "in":
            if not isinstance(self.value, tuple) or not self.value:
                raise ConfigError(f"{where} takes a non-empty tuple of values, was given {self.value!r}")
            object.__setattr__(self, "value", tuple(check_scalar(value, where) for value in self.value))
            return
        object.__setattr__(self, "value", check_scalar(self.value, where))
        if self.operator in COMPARISONS and isinstance(self.value, bool):
            raise ConfigError(f"{where} cannot order booleans; use Filter.eq")

    @classmethod
    def eq(cls, name: str, value: Scalar) -> Filter:
        """Match items whose field `name` equals `value`."""
        return cls("eq", check_field_name(name), check_scalar(value, f"Filter.eq({name!r})"))

    @classmethod
    def in_(cls, name: str, values: Iterable[Scalar]) -> Filter:
        """Match items whose field `name` equals one of `values` (at least one value)."""
        check_field_name(name)
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ConfigError(f"Filter.in_({name!r}) takes a collection of values, was given {values!r}")
        # Deduplicated by kind and value: True == 1 in Python, but they match different items here.
        kinds = {(type(value), value): value for value in (check_scalar(v, f"Filter.in_({name!r})") for v in values)}
        checked = tuple(kinds.values())
        if not checked:
            raise ConfigError(f"Filter.in_({name!r}) was given no values; it would match nothing")
        return cls("in", name, checked)

    @classmethod
    def lt(cls, name: str, value: Scalar) -> Filter:
        """Match items whose field `name` is less than `value`."""
        return cls._comparison("lt", name, value)

    @classmethod
    def le(cls, name: str, value: Scalar) -> Filter:
        """Match items whose field `name` is at most `value`."""
        return cls._comparison("le", name, value)

    @classmethod
    def gt(cls, name: str, value: Scalar) -> Filter:
        """Match items whose field `name` is greater than `value`."""
        return cls._comparison("gt", name, value)

    @classmethod
    def ge(cls, name: str, value: Scalar) -> Filter:
        """Match items whose field `name` is at least `value`."""
        return cls._comparison("ge", name, value)

    @classmethod
    def _comparison(cls, operator: str, name: str, value: Scalar) -> Filter:
        check_field_name(name)
        checked = check_scalar(value, f"Filter.{operator}({name!r})")
        if isinstance(checked, bool):
            raise ConfigError(f"Filter.{operator}({name!r}) cannot order booleans; use Filter.eq")
        return cls(operator, name, checked)

    def __and__(self, other: Filter) -> Filter:
        return _combine("and", self, other)

    def __or__(self, other: Filter) -> Filter:
        return _combine("or", self, other)

    def fields(self) -> frozenset[str]:
        """Return every field name the filter reads."""
        if self.name is not None:
            return frozenset({self.name})
        return frozenset().union(*(operand.fields() for operand in self.operands))

    def conjuncts(self) -> Iterator[Filter]:
        """Yield the conditions that must all hold (the operands of a top-level 'and', else itself)."""
        if self.operator == "and":
            yield from self.operands
        else:
            yield self

    def describe(self) -> str:
        """Return a readable form, e.g. ``symbol = 'NVDA' and volume > 1000``."""
        if self.operator in ("and", "or"):
            return "(" + f" {self.operator} ".join(operand.describe() for operand in self.operands) + ")"
        symbols = {"eq": "=", "in": "in", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
        return f"{self.name} {symbols[self.operator]} {self.value!r}"


def real_numbers(values: object, what: str) -> np.ndarray:
    """Return `values` as a numpy array of real numbers; raise `InvalidVector` naming `what` otherwise.

    Booleans, text, objects (integers beyond 64 bits among them), dates and complex numbers are refused:
    a cast to float32 would drop an imaginary part without a word.
    """
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as error:  # rows of different lengths
        raise InvalidVector(f"{what} must be an array of numbers, was a ragged sequence: {error}") from error
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise InvalidVector(f"{what} must be an array of real numbers, was given dtype {array.dtype}")
    return array


def flat_vector(values: object, what: str) -> np.ndarray:
    """Return `values` as a flat array of real numbers (see `real_numbers`); raise `InvalidVector` naming
    `what` and the shape otherwise (a matrix is never read as one vector)."""
    vector = real_numbers(values, what)
    if vector.ndim != 1 or vector.size == 0:
        raise InvalidVector(f"{what} must be a flat array of numbers, was shape {vector.shape}")
    return vector


def _combine(operator: str, left: object, right: object) -> Filter:
    if not isinstance(left, Filter) or not isinstance(right, Filter):
        raise ConfigError(f"a filter combines only with another filter, was given {right!r}")
    operands: list[Filter] = []
    for operand in (left, right):
        operands.extend(operand.operands if operand.operator == operator else (operand,))
    return Filter(operator, operands=tuple(operands))


@dataclass(frozen=True, eq=False)
class Query:
    """A nearest-neighbour question: the `k` stored vectors closest to `vector`.

    Parameters
    ----------
    vector
        The query vector (any numeric 1-d array; it is kept as float32).
    k
        How many neighbours to return.
    where
        A metadata `Filter` every result must satisfy (see also `Query.filter`).
    as_of
        Only items whose timestamp is strictly before this aware datetime are seen, so a backtest at
        time t never reads what the memory learned at or after t.
    oversample
        Candidates fetched per result before full-precision rescoring, for quantized collections
        (default: the store's).
    ef
        HNSW search breadth for this query (default: the index's); ignored by exact search.
    exact
        Always search exactly, even when the store has an HNSW index.
    """

    vector: np.ndarray
    k: int = 10
    where: Filter | None = None
    as_of: datetime | None = None
    oversample: int | None = None
    ef: int | None = None
    exact: bool = False

    def __post_init__(self) -> None:
        vector = flat_vector(self.vector, "a query vector")
        # A private copy: the caller's array stays theirs (and writable).
        with np.errstate(over="ignore"):  # a value beyond float32 becomes infinity, refused just below
            vector = np.array(vector, dtype=np.float32, order="C", copy=True)
        if not np.isfinite(vector).all():
            raise InvalidVector("the query vector holds NaN or infinity, or a value beyond float32's range (3.4e38)")
        vector.setflags(write=False)
        object.__setattr__(self, "vector", vector)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"query k must be a positive integer, was {self.k!r}")
        if self.where is not None and not isinstance(self.where, Filter):
            raise ConfigError(f"query where must be a Filter, was {self.where!r}")
        if self.as_of is not None:
            require_aware("query as_of", self.as_of, error=ConfigError)
        for name in ("oversample", "ef"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"query {name} must be a positive integer, was {value!r}")

    def filter(self, condition: Filter) -> Query:
        """Return this query with `condition` added (and-ed to any filter it has)."""
        where = condition if self.where is None else self.where & condition
        return Query(self.vector, self.k, where, self.as_of, self.oversample, self.ef, self.exact)

    @property
    def cache_key(self) -> tuple[Any, ...]:
        """A hashable key that equal queries share (the result cache's key)."""
        # The filter by its description, which tells True from 1 (Filter equality, like Python's, does not).
        where = None if self.where is None else self.where.describe()
        return (self.vector.tobytes(), self.k, where, self.as_of, self.oversample, self.ef, self.exact)


class SearchResult(NamedTuple):
    """One neighbour: the item's id, its distance to the query, its metadata and timestamp.

    A named tuple, not a dataclass: a search builds k of them, and a frozen dataclass costs three times
    as long to build (it is on the path whose latency the benchmark compares with hnswlib's).
    """

    id: str
    distance: float
    metadata: Mapping[str, Any]
    timestamp: datetime


@dataclass(frozen=True, eq=False)
class Item:
    """A stored item: its id, full-precision vector, metadata and timestamp."""

    id: str
    vector: np.ndarray
    metadata: Mapping[str, Any]
    timestamp: datetime
