"""The market state at a bar as four numbers, and the regime (trend, volatility) they name.

Row ``i`` of `state_feature_matrix` reads only bars ``0..i`` (point in time), so the state recorded with an
episode's decision is what the strategy could have known. The features, in `STATE_FEATURES` order:

- ``trend``: the log return over the last `lookback` bars divided by ``σ_daily · √lookback``, where
  ``σ_daily`` is the standard deviation (``ddof=1``) of the same `lookback` bars' log returns: a t-statistic
  of the drift, comparable across symbols and volatility levels.
- ``volatility``: ``log(σ_lookback / σ_long_lookback)``, above zero when the recent bars move more than usual.
- ``momentum``: the log return over the last `MOMENTUM_BARS` bars divided by ``σ_daily · √MOMENTUM_BARS``.
- ``range_position``: where the close lies between the lowest and highest close of the last `long_lookback`
  bars, in [0, 1] (0.5 when they are equal).

A row is NaN where the history is too short for a feature: before bar `lookback` for trend and momentum,
before bar `long_lookback` for volatility and before bar ``long_lookback - 1`` for the range position. Flat
prices (σ = 0) give a trend and momentum of 0 and a volatility of 0 when both windows are flat.

Every window's statistics are computed on that window alone (`numpy.lib.stride_tricks.sliding_window_view`),
never by a running update, so `state_features` on one bar gives the matrix row's numbers exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.market.history import PriceHistory

#: The columns of `state_feature_matrix`, in order.
STATE_FEATURES: tuple[str, ...] = ("trend", "volatility", "momentum", "range_position")

#: Bars of the short momentum return.
MOMENTUM_BARS = 5

#: Standardised trend beyond which a regime trends up (or, negated, down).
TREND_THRESHOLD = 0.5
#: Log volatility ratio beyond which volatility is high (or, negated, low).
VOLATILITY_THRESHOLD = 0.25

# A floor on σ inside the volatility ratio, so that a flat recent window next to a moving long one gives a
# large negative (finite) number rather than minus infinity.
_SIGMA_FLOOR = 1e-12

_TRENDS = ("up", "down", "flat")
_VOLATILITIES = ("low", "normal", "high")


def _check_lookbacks(lookback: int, long_lookback: int) -> None:
    for name, value in (("lookback", lookback), ("long_lookback", long_lookback)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ConfigError(f"state feature {name} must be an integer >= 2, was {value!r}")
    if long_lookback <= lookback:
        raise ConfigError(f"state feature long_lookback ({long_lookback}) must exceed lookback ({lookback})")
    if lookback < MOMENTUM_BARS:
        raise ConfigError(f"state feature lookback must be >= {MOMENTUM_BARS} (the momentum bars), was {lookback}")


def _rolling_std(values: np.ndarray, window: int, count: int) -> np.ndarray:
    """Sample standard deviation of ``values[i - window + 1 .. i]`` at each ``i`` (NaN before a full window)."""
    result = np.full(count, np.nan)
    if len(values) >= window:
        windows = np.lib.stride_tricks.sliding_window_view(values, window)
        result[window - 1 :] = windows.std(axis=1, ddof=1)
    return result


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (flat prices), NaN where either is NaN."""
    safe = np.where(denominator > 0, denominator, 1.0)
    result = np.where(denominator > 0, numerator / safe, 0.0)
    return np.where(np.isnan(numerator) | np.isnan(denominator), np.nan, result)


def state_feature_matrix(history: PriceHistory, *, lookback: int = 20, long_lookback: int = 100) -> np.ndarray:
    """The (bars, 4) matrix of `STATE_FEATURES`; row ``i`` uses only bars ``<= i``, NaN where history is short."""
    _check_lookbacks(lookback, long_lookback)
    close = np.asarray(history.close, dtype=float)
    count = len(close)
    matrix = np.full((count, len(STATE_FEATURES)), np.nan)
    if count < 2:
        return matrix
    if not bool(np.all(close > 0)):
        raise ValidationError(f"{history.symbol} history: state features need positive closes")
    log_close = np.log(close)
    # returns[k] is the log return of bar k + 1.
    returns = np.diff(log_close)
    short_sigma = np.full(count, np.nan)
    short_sigma[1:] = _rolling_std(returns, lookback, count - 1)
    long_sigma = np.full(count, np.nan)
    long_sigma[1:] = _rolling_std(returns, long_lookback, count - 1)

    trend_return = np.full(count, np.nan)
    trend_return[lookback:] = log_close[lookback:] - log_close[:-lookback]
    momentum_return = np.full(count, np.nan)
    momentum_return[MOMENTUM_BARS:] = log_close[MOMENTUM_BARS:] - log_close[:-MOMENTUM_BARS]

    matrix[:, 0] = _ratio(trend_return, short_sigma * math.sqrt(lookback))
    matrix[:, 2] = _ratio(momentum_return, short_sigma * math.sqrt(MOMENTUM_BARS))
    both_flat = (short_sigma == 0) & (long_sigma == 0)
    with np.errstate(invalid="ignore"):
        volatility = np.log(np.maximum(short_sigma, _SIGMA_FLOOR) / np.maximum(long_sigma, _SIGMA_FLOOR))
    matrix[:, 1] = np.where(both_flat, 0.0, volatility)

    if count >= long_lookback:
        windows = np.lib.stride_tricks.sliding_window_view(close, long_lookback)
        lowest, highest = windows.min(axis=1), windows.max(axis=1)
        current = close[long_lookback - 1 :]
        spread = highest - lowest
        position = np.where(spread > 0, (current - lowest) / np.where(spread > 0, spread, 1.0), 0.5)
        matrix[long_lookback - 1 :, 3] = position
    return matrix


def state_features(history: PriceHistory, bar: int, *, lookback: int = 20, long_lookback: int = 100) -> np.ndarray:
    """Row `bar` of `state_feature_matrix` (the same numbers), computed from the bars it needs only."""
    if isinstance(bar, bool) or not isinstance(bar, (int, np.integer)) or not 0 <= bar < len(history):
        raise ValidationError(f"{history.symbol} history has no bar {bar!r} (it has {len(history)} bars)")
    _check_lookbacks(lookback, long_lookback)
    # Enough bars for every window ending at `bar`; leading bars the windows do not reach change nothing.
    first = max(0, int(bar) + 1 - (long_lookback + 1))
    window = PriceHistory(
        symbol=history.symbol,
        timestamps=history.timestamps[first : bar + 1],
        open=history.open[first : bar + 1],
        high=history.high[first : bar + 1],
        low=history.low[first : bar + 1],
        close=history.close[first : bar + 1],
        volume=history.volume[first : bar + 1],
    )
    row: np.ndarray = state_feature_matrix(window, lookback=lookback, long_lookback=long_lookback)[-1]
    return row


@dataclass(frozen=True, kw_only=True)
class Regime:
    """A market regime: the trend (``up``, ``down``, ``flat``) and the volatility (``low``, ``normal``, ``high``)."""

    trend: str
    volatility: str

    def __post_init__(self) -> None:
        if self.trend not in _TRENDS:
            raise ValidationError(f"regime trend {self.trend!r} is not one of {', '.join(_TRENDS)}")
        if self.volatility not in _VOLATILITIES:
            raise ValidationError(f"regime volatility {self.volatility!r} is not one of {', '.join(_VOLATILITIES)}")


def regime_of(features: np.ndarray) -> Regime:
    """The regime of one `STATE_FEATURES` row: trend beyond ±0.5 is up or down, volatility beyond ±0.25 high or
    low; a NaN feature (too little history) reads as flat and normal."""
    row = np.asarray(features, dtype=float).reshape(-1)
    if len(row) != len(STATE_FEATURES):
        raise ValidationError(f"a state feature row has {len(STATE_FEATURES)} values, was given {len(row)}")
    trend_value, volatility_value = float(row[0]), float(row[1])
    trend = "up" if trend_value > TREND_THRESHOLD else "down" if trend_value < -TREND_THRESHOLD else "flat"
    volatility = (
        "high"
        if volatility_value > VOLATILITY_THRESHOLD
        else "low"
        if volatility_value < -VOLATILITY_THRESHOLD
        else "normal"
    )
    return Regime(trend=trend, volatility=volatility)
