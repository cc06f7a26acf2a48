"""Checks of strategy parameters, shared by every strategy's configuration: one message shape for all."""

from __future__ import annotations

import math

from neuraltrade.errors import ConfigError


def require_integer(strategy: str, name: str, value: object, minimum: int) -> int:
    """Return `value` if it is an integer (not a boolean) of at least `minimum`, else raise `ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{strategy} parameter {name} must be an integer >= {minimum}, was {value!r}")
    return value


def require_number(
    strategy: str,
    name: str,
    value: object,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> float:
    """Return `value` as a float if it is a finite number within the given bounds, else raise `ConfigError`."""
    bounds = [
        (above, lambda number, bound: number > bound, ">"),
        (at_least, lambda number, bound: number >= bound, ">="),
        (below, lambda number, bound: number < bound, "<"),
        (at_most, lambda number, bound: number <= bound, "<="),
    ]
    parts = [f"{symbol} {bound!r}" for bound, _, symbol in bounds if bound is not None]
    wanted = " " + " and ".join(parts) if parts else ""
    problem = ConfigError(f"{strategy} parameter {name} must be a finite number{wanted}, was {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise problem
    if not all(holds(float(value), bound) for bound, holds, _ in bounds if bound is not None):
        raise problem
    return float(value)


def require_choice(strategy: str, name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return `value` if it is one of `choices`, else raise `ConfigError` listing them."""
    if value not in choices:
        raise ConfigError(f"{strategy} parameter {name} must be one of {', '.join(choices)}, was {value!r}")
    return str(value)
