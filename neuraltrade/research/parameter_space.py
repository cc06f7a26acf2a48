"""Parameter spaces: every combination of a grid, or a reproducible random sample.

A space maps each parameter to its values: a list (or any sequence but a string) lists the choices; a
tuple of exactly two numbers ``(low, high)`` is a range, of integers when both are ``int`` (both ends
included) and of floats otherwise. `grid` expands integer ranges to every integer and refuses float
ranges; `random_sample` draws from either. Values come back as Python scalars (numpy ones are
converted), since strategy configurations check ``isinstance(value, int)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuraltrade.errors import ConfigError

Space = Mapping[str, Any]
Combination = dict[str, Any]
#: The most combinations a grid expands to or a sample draws: each becomes a backtest, and a million of
#: them is days of work; past it, expanding alone would exhaust the memory (``fast=1..10**20``).
MAX_COMBINATIONS = 1_000_000


@dataclass(frozen=True, slots=True)
class _Dimension:
    name: str
    choices: tuple[Any, ...] | None = None
    low: float = 0.0
    high: float = 0.0
    integer: bool = False

    @property
    def size(self) -> int | None:
        """How many values the dimension has (None: a continuous range)."""
        if self.choices is not None:
            return len(self.choices)
        return int(self.high - self.low) + 1 if self.integer else None

    def value(self, index: int) -> Any:
        return self.choices[index] if self.choices is not None else int(self.low) + index


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def _plain(value: Any) -> Any:
    # numpy scalars become Python ones: strategy configurations check `isinstance(value, int)`.
    return value.item() if isinstance(value, np.generic) else value


def _dimensions(space: Space) -> list[_Dimension]:
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"a parameter space must be a non-empty mapping of name to values, was {space!r}")
    dimensions = []
    for name, values in space.items():
        if not isinstance(name, str):
            raise ConfigError(f"parameter names must be strings, was {name!r}")
        if isinstance(values, tuple) and len(values) == 2 and all(_is_number(end) for end in values):
            low, high = (_plain(end) for end in values)
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ConfigError(f"parameter {name} range ({low!r}, {high!r}) needs finite ends with low <= high")
            integer = isinstance(low, int) and isinstance(high, int)
            dimensions.append(_Dimension(name, low=low, high=high, integer=integer))
            continue
        if isinstance(values, np.ndarray):
            values = values.tolist()
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise ConfigError(
                f"parameter {name} values must be a list of choices or a (low, high) range, was {values!r}"
            )
        if len(values) == 0:
            raise ConfigError(f"parameter {name} has no values")
        dimensions.append(_Dimension(name, choices=tuple(_plain(value) for value in values)))
    return dimensions


def grid(space: Space) -> list[Combination]:
    """Return every combination of `space`, the last parameter varying fastest.

    Integer ranges ``(low, high)`` contribute every integer from `low` to `high`; a float range has no
    grid and raises `ConfigError` (list its values, or use `random_sample`).
    """
    dimensions = _dimensions(space)
    sizes = []
    for dimension in dimensions:
        size = dimension.size
        if size is None:
            raise ConfigError(
                f"parameter {dimension.name} is the float range ({dimension.low!r}, {dimension.high!r}), "
                "which has no grid; list its values or sample it with random_sample"
            )
        sizes.append(size)
    if math.prod(sizes) > MAX_COMBINATIONS:
        raise ConfigError(
            f"the grid holds {math.prod(sizes):,} combinations, more than the {MAX_COMBINATIONS:,} a search "
            "runs; sample some with random_sample (--random COUNT)"
        )
    axes = [
        [dimension.value(index) for index in range(size)] for dimension, size in zip(dimensions, sizes, strict=True)
    ]
    names = [dimension.name for dimension in dimensions]
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes)]


def random_sample(
    space: Space, count: int, seed: int | None = None, *, rng: np.random.Generator | None = None
) -> list[Combination]:
    """Return `count` combinations drawn at random from `space`, reproducibly.

    Give exactly one of `seed` (a fresh ``numpy.random.default_rng(seed)``) or `rng`. When every
    parameter has finitely many values the combinations are distinct, drawn without replacement, and
    `count` may not exceed their number; a float range is drawn uniformly in ``[low, high)``.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"random_sample count must be a positive integer, was {count!r}")
    if count > MAX_COMBINATIONS:
        raise ConfigError(f"random_sample count {count:,} is more than the {MAX_COMBINATIONS:,} a search runs")
    if (seed is None) == (rng is None):
        raise ConfigError("random_sample needs exactly one of seed or rng, so that the sample can be drawn again")
    generator = rng if rng is not None else np.random.default_rng(seed)
    dimensions = _dimensions(space)
    sizes = [dimension.size for dimension in dimensions]
    finite = [size for size in sizes if size is not None]
    if len(finite) == len(sizes) and math.prod(finite) < 2**62:
        total = math.prod(finite)
        if count > total:
            raise ConfigError(f"the space holds {total} combinations, {count} were asked for; use grid")
        combinations = []
        for number in generator.choice(total, size=count, replace=False).tolist():
            combination = {}
            for dimension, size in zip(reversed(dimensions), reversed(finite), strict=True):
                number, index = divmod(number, size)
                combination[dimension.name] = dimension.value(index)
            combinations.append({dimension.name: combination[dimension.name] for dimension in dimensions})
        return combinations
    combinations = []
    for _ in range(count):
        combination = {}
        for dimension in dimensions:
            if dimension.choices is not None:
                combination[dimension.name] = dimension.choices[int(generator.integers(len(dimension.choices)))]
            elif dimension.integer:
                combination[dimension.name] = int(generator.integers(int(dimension.low), int(dimension.high) + 1))
            else:
                combination[dimension.name] = float(generator.uniform(dimension.low, dimension.high))
        combinations.append(combination)
    return combinations
