"""Position sizing: how many units to hold, from equity, prices and past trades.

Three sizers, each a frozen configuration with a digest and one pure function:

- `FixedFraction`: a fixed fraction of equity (`size_fixed_fraction`);
- `VolatilityTarget`: the position whose ex-ante annualised volatility equals a target
  (`size_volatility_target`);
- `CappedKelly`: a fraction of the Kelly bet estimated from past trades, capped (`size_capped_kelly`).

`size_position` sizes with any of them. Every size is signed (+ long, - short, 0 for `Direction.NEUTRAL`),
in whole units rounded towards zero unless the configuration says ``fractional=True``, and its notional
``|units| * price`` never exceeds ``equity * allocation``, where the allocation is at most the fraction,
the Kelly cap, or the volatility target's `max_leverage` (default 1: no borrowing).

Every input is data known when the order is placed: the closes given end with the current price, and
the trade returns are those of trades already closed; nothing later is read.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from neuraltrade.canonical import digest
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.types import Direction

#: Slack under which ``budget / price`` counts as its whole number, so that 2.9999999999999996 units
#: (the rounding of an exact 3) is not floored to 2.
_WHOLE_UNIT_SLACK = 1e-9


@dataclass(frozen=True, kw_only=True)
class FixedFraction:
    """Hold ``fraction`` of equity: ``units = floor(equity * fraction / price)``."""

    fraction: float
    fractional: bool = False

    def __post_init__(self) -> None:
        _check_fraction("fixed fraction fraction", self.fraction, allow_zero=False)
        _check_flag("fixed fraction fractional", self.fractional)

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


@dataclass(frozen=True, kw_only=True)
class VolatilityTarget:
    """Hold the position whose annualised volatility is `annual_volatility`, at most `max_leverage` x equity.

    The volatility is the sample standard deviation of the last `lookback` simple close-to-close returns,
    times ``sqrt(periods_per_year)``; the allocation is ``annual_volatility / volatility`` of equity, capped
    at `max_leverage` (prices that did not move at all get the cap).
    """

    annual_volatility: float
    lookback: int = 20
    periods_per_year: int = 252
    max_leverage: float = 1.0
    fractional: bool = False

    def __post_init__(self) -> None:
        _check_positive("volatility target annual_volatility", self.annual_volatility)
        if not _is_integer(self.lookback) or self.lookback < 2:
            raise ConfigError(f"volatility target lookback must be an integer >= 2 returns, was {self.lookback!r}")
        if not _is_integer(self.periods_per_year) or self.periods_per_year < 1:
            raise ConfigError(
                f"volatility target periods_per_year must be a positive integer, was {self.periods_per_year!r}"
            )
        _check_positive("volatility target max_leverage", self.max_leverage)
        _check_flag("volatility target fractional", self.fractional)

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


@dataclass(frozen=True, kw_only=True)
class CappedKelly:
    """Allocate ``clip(fraction * kelly, 0, cap)`` of equity, Kelly estimated from past trade returns.

    ``kelly = W - (1 - W) / R`` as backtesting.py defines it: `W` the share of trades that won (returns
    above zero; a trade returning exactly zero counts as not won), `R` the mean winning return over the mean
    losing return's size. Only the last `lookback` trades count (None: all). With no losing trade, R is
    unbounded and kelly is `W`; with no winning trade, kelly is negative and the size is 0. W and R do not
    depend on the returns' scale, so percent and fractions give the same size.

    With fewer than `min_trades` trades the estimate is not trusted and `fallback_fraction` of equity is
    allocated instead (default 0: no position until enough trades have closed).
    """

    fraction: float = 0.5
    cap: float = 0.25
    lookback: int | None = 100
    min_trades: int = 20
    fallback_fraction: float = 0.0
    fractional: bool = False

    def __post_init__(self) -> None:
        _check_fraction("capped kelly fraction", self.fraction, allow_zero=False)
        _check_fraction("capped kelly cap", self.cap, allow_zero=False)
        if self.lookback is not None and (not _is_integer(self.lookback) or self.lookback < 1):
            raise ConfigError(f"capped kelly lookback must be a positive integer or None, was {self.lookback!r}")
        if not _is_integer(self.min_trades) or self.min_trades < 1:
            raise ConfigError(f"capped kelly min_trades must be a positive integer, was {self.min_trades!r}")
        if self.lookback is not None and self.min_trades > self.lookback:
            raise ConfigError(
                f"capped kelly min_trades {self.min_trades} exceeds lookback {self.lookback}: it could never be met"
            )
        _check_fraction("capped kelly fallback_fraction", self.fallback_fraction, allow_zero=True)
        if self.fallback_fraction > self.cap:
            raise ConfigError(f"capped kelly fallback_fraction {self.fallback_fraction!r} exceeds its cap {self.cap!r}")
        _check_flag("capped kelly fractional", self.fractional)

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


#: Any of the sizers `size_position` accepts.
Sizer = FixedFraction | VolatilityTarget | CappedKelly


def size_fixed_fraction(config: FixedFraction, *, equity: float, price: float, direction: Direction) -> float:
    """Return the signed units that put ``config.fraction`` of `equity` into the symbol at `price`.

    Raises
    ------
    ValidationError
        If `equity` or `price` is not a positive finite number, or `direction` is not a `Direction`.
    """
    equity, price = _check_account(equity, price)
    return _units(equity * config.fraction, price, direction, fractional=config.fractional)


def size_volatility_target(
    config: VolatilityTarget, *, equity: float, closes: Sequence[float] | npt.NDArray[np.floating], direction: Direction
) -> float:
    """Return the signed units whose ex-ante annualised volatility is ``config.annual_volatility``.

    `closes` are the symbol's closes up to now, oldest first; the last is the current price, at which the
    units are valued. Only the last ``config.lookback + 1`` closes are read. With fewer, there is no
    estimate yet and the size is 0.

    Raises
    ------
    ValidationError
        If `equity` or a close is not a positive finite number, or `direction` is not a `Direction`.
    """
    history = _check_closes(closes)
    equity = _positive_input("equity", equity)
    _check_direction(direction)
    if len(history) < config.lookback + 1:
        return 0.0
    recent = history[-(config.lookback + 1) :]
    returns = recent[1:] / recent[:-1] - 1.0
    volatility = float(np.std(returns, ddof=1)) * math.sqrt(config.periods_per_year)
    allocation = (
        config.max_leverage if volatility == 0 else min(config.max_leverage, config.annual_volatility / volatility)
    )
    return _units(equity * allocation, float(recent[-1]), direction, fractional=config.fractional)


def kelly_fraction(trade_returns: Sequence[float] | npt.NDArray[np.floating]) -> float:
    """Return the full Kelly fraction ``W - (1 - W) / R`` of `trade_returns`, negative when it says do not bet.

    No trades, or only trades returning exactly zero, give 0; losses without any win give -1.

    Raises
    ------
    ValidationError
        If a return is NaN or infinite.
    """
    returns = np.asarray(trade_returns, dtype=np.float64)
    if returns.ndim != 1 or not np.all(np.isfinite(returns)):
        raise ValidationError("trade returns must be a flat sequence of finite numbers")
    if len(returns) == 0:
        return 0.0
    wins, losses = returns[returns > 0], returns[returns < 0]
    win_rate = len(wins) / len(returns)
    if len(wins) == 0:
        # R is zero and the formula unbounded below; any negative value means "do not bet".
        return -1.0 if len(losses) else 0.0
    if len(losses) == 0:
        return win_rate
    payoff = float(np.mean(wins)) / -float(np.mean(losses))
    return win_rate - (1.0 - win_rate) / payoff


def size_capped_kelly(
    config: CappedKelly,
    *,
    equity: float,
    price: float,
    trade_returns: Sequence[float] | npt.NDArray[np.floating],
    direction: Direction,
) -> float:
    """Return the signed units for ``clip(config.fraction * kelly, 0, config.cap)`` of `equity`.

    `trade_returns` are the returns of the trades closed so far, oldest first; the last ``config.lookback``
    are read. With fewer than ``config.min_trades`` of them the allocation is ``config.fallback_fraction``.

    Raises
    ------
    ValidationError
        If `equity` or `price` is not a positive finite number, a return is not finite, or `direction` is
        not a `Direction`.
    """
    equity, price = _check_account(equity, price)
    returns = np.asarray(trade_returns, dtype=np.float64)
    if config.lookback is not None:
        returns = returns[-config.lookback :]
    kelly = kelly_fraction(returns)
    if len(returns) < config.min_trades:
        allocation = config.fallback_fraction
    else:
        allocation = min(config.cap, max(0.0, config.fraction * kelly))
    return _units(equity * allocation, price, direction, fractional=config.fractional)


def size_position(
    sizer: Sizer,
    *,
    equity: float,
    closes: Sequence[float] | npt.NDArray[np.floating],
    direction: Direction,
    trade_returns: Sequence[float] | npt.NDArray[np.floating] = (),
) -> float:
    """Size with any sizer: the price is the last of `closes`; `trade_returns` matter to `CappedKelly` only.

    Raises
    ------
    ValidationError
        If `closes` is empty or holds a non-positive or non-finite close, or another input is invalid.
    """
    history = _check_closes(closes)
    if len(history) == 0:
        raise ValidationError("sizing needs at least one close, the current price; was given none")
    if isinstance(sizer, FixedFraction):
        return size_fixed_fraction(sizer, equity=equity, price=float(history[-1]), direction=direction)
    if isinstance(sizer, VolatilityTarget):
        return size_volatility_target(sizer, equity=equity, closes=history, direction=direction)
    if isinstance(sizer, CappedKelly):
        return size_capped_kelly(
            sizer, equity=equity, price=float(history[-1]), trade_returns=trade_returns, direction=direction
        )
    raise ConfigError(f"sizer must be FixedFraction, VolatilityTarget or CappedKelly, was {type(sizer).__name__}")


# --- helpers ------------------------------------------------------------------------------------------------


def _units(budget: float, price: float, direction: Direction, *, fractional: bool) -> float:
    sign = {Direction.LONG: 1.0, Direction.SHORT: -1.0, Direction.NEUTRAL: 0.0}[_check_direction(direction)]
    if sign == 0.0 or budget <= 0.0:
        return 0.0
    if fractional:
        units = budget / price
        # Division rounds to nearest, which may land one ulp above what the budget buys.
        while units * price > budget:
            units = math.nextafter(units, 0.0)
    else:
        units = float(math.floor(budget / price + _WHOLE_UNIT_SLACK))
    return sign * units if units else 0.0


def _check_direction(direction: object) -> Direction:
    if not isinstance(direction, Direction):
        raise ValidationError(f"sizing direction must be a Direction, was {direction!r}")
    return direction


def _check_account(equity: object, price: object) -> tuple[float, float]:
    return _positive_input("equity", equity), _positive_input("price", price)


def _positive_input(name: str, value: object) -> float:
    number = _as_real(value)
    if number is None or number <= 0:
        raise ValidationError(f"sizing {name} must be a positive finite number, was {value!r}")
    return number


def _check_closes(closes: Sequence[float] | npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    try:
        history = np.asarray(closes, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValidationError(f"closes must be numbers, were {closes!r}") from error
    if history.ndim != 1:
        raise ValidationError(f"closes must be a flat sequence, had shape {history.shape}")
    bad = np.flatnonzero(~np.isfinite(history) | (history <= 0))
    if len(bad):
        raise ValidationError(f"closes must be positive finite prices; close {bad[0]} was {float(history[bad[0]])!r}")
    return history


def _as_real(value: object) -> float | None:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_positive(name: str, value: object) -> None:
    number = _as_real(value)
    if number is None or number <= 0:
        raise ConfigError(f"{name} must be a positive finite number, was {value!r}")


def _check_fraction(name: str, value: object, *, allow_zero: bool) -> None:
    number = _as_real(value)
    if number is None or not (0 <= number <= 1) or (number == 0 and not allow_zero):
        raise ConfigError(f"{name} must lie in {'[0' if allow_zero else '(0'}, 1], was {value!r}")


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, was {value!r}")
