"""Seeded synthetic markets with Markov regime switching, for scale tests and benchmarks.

Each symbol follows its own Markov chain over regimes (by default calm, volatile and trending). Within a
regime, close-to-close log returns are normal with the regime's drift and volatility, mixing a market factor
shared by all symbols with a symbol's own shock, so prices are log-normal and symbols move together. Volume
is log-normal, scaled by the regime and rising with the size of the bar's move; the relative spread is
log-normal and scaled by the regime. Everything is drawn from `numpy.random.default_rng` streams derived from
the seed, so one configuration always yields the same frame.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from neuraltrade.canonical import digest
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.market.bars import BAR_COLUMNS, TIMESTAMP_DTYPE
from neuraltrade.timestamps import require_aware

# Bumped whenever the same configuration would produce different numbers, so that digests stored with
# benchmark results never claim two different markets are the same.
GENERATOR_VERSION = 1

# Opening gaps and wicks (exponential in depth) are small next to the bar's move; scales in units of the
# regime's volatility.
_GAP_SCALE = 0.2
_WICK_SCALE = 0.5
_CSV_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume", "spread")
_REGIME_FIELDS = ("drift", "volatility", "volume_multiplier", "spread_multiplier")
# Scalar fields with whether zero is allowed and their largest allowed value.
_SCALAR_BOUNDS = (
    ("initial_price", False, math.inf),
    ("initial_price_dispersion", True, math.inf),
    ("market_correlation", True, 1.0),
    ("mean_volume", False, math.inf),
    ("volume_dispersion", True, math.inf),
    ("volume_sensitivity", True, math.inf),
    ("base_spread", False, 1.0),
    ("spread_dispersion", True, math.inf),
)


@dataclass(frozen=True, kw_only=True)
class MarketConfig:
    """What `generate_market` produces; every rate is per bar.

    Parameters
    ----------
    symbols, symbol_names
        Number of symbols, and optionally their names (as many); without names ``SYN000``, ``SYN001``, ...
    bars_per_symbol
        Bars generated for every symbol.
    start, interval
        Open time of the first bar (time-zone aware) and the positive spacing between bars.
    seed
        Non-negative seed of `numpy.random.default_rng`.
    regime_names
        One name per regime; the regime count is ``len(transition_matrix)``.
    transition_matrix
        Row ``i`` gives the probabilities of each regime on the bar after a bar in regime ``i``.
    drift, volatility
        Per regime, mean and standard deviation of the close-to-close log return.
    volume_multiplier, spread_multiplier
        Per regime, factors on `mean_volume` and `base_spread`.
    initial_price, initial_price_dispersion
        Median first price and the standard deviation of its logarithm across symbols.
    market_correlation
        Share of each return's variance that comes from the factor common to all symbols.
    mean_volume, volume_dispersion, volume_sensitivity
        Mean volume of a bar in a regime with multiplier 1, the log-normal volume noise, and how many log
        units volume rises per standard deviation of the bar's move.
    base_spread, spread_dispersion
        Mean relative bid-ask spread in a regime with multiplier 1, and its log-normal noise.
    """

    symbols: int = 10
    symbol_names: tuple[str, ...] = ()
    bars_per_symbol: int = 1_000
    start: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    interval: timedelta = timedelta(days=1)
    seed: int = 0
    regime_names: tuple[str, ...] = ("calm", "volatile", "trending")
    transition_matrix: tuple[tuple[float, ...], ...] = ((0.97, 0.01, 0.02), (0.06, 0.90, 0.04), (0.04, 0.02, 0.94))
    drift: tuple[float, ...] = (0.0003, -0.0010, 0.0010)
    volatility: tuple[float, ...] = (0.008, 0.028, 0.012)
    volume_multiplier: tuple[float, ...] = (1.0, 2.2, 1.4)
    spread_multiplier: tuple[float, ...] = (1.0, 3.0, 1.3)
    initial_price: float = 100.0
    initial_price_dispersion: float = 0.5
    market_correlation: float = 0.3
    mean_volume: float = 1_000_000.0
    volume_dispersion: float = 0.4
    volume_sensitivity: float = 0.3
    base_spread: float = 0.0005
    spread_dispersion: float = 0.25

    def __post_init__(self) -> None:
        for name in ("symbols", "bars_per_symbol"):
            value = getattr(self, name)
            if not _is_integer(value) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, was {value!r}")
        if not _is_integer(self.seed) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, was {self.seed!r}")
        self._check_symbol_names()
        self._check_time_axis()
        self._check_regimes()
        for name, zero_allowed, highest in _SCALAR_BOUNDS:
            value = _as_float(name, getattr(self, name))
            if (value < 0.0 if zero_allowed else value <= 0.0) or value > highest:
                bounds = f"{'[0' if zero_allowed else '(0'}, {highest}{']' if highest < math.inf else ')'}"
                raise ConfigError(f"{name} must lie in {bounds}, was {value!r}")
            object.__setattr__(self, name, value)

    def _check_symbol_names(self) -> None:
        names = tuple(self.symbol_names)
        if not names:
            return
        if any(not isinstance(name, str) or not name for name in names):
            raise ConfigError(f"symbol_names must be non-empty strings, were {names!r}")
        if len(set(names)) != len(names):
            raise ConfigError(f"symbol_names must be unique, were {names!r}")
        if len(names) != self.symbols:
            raise ConfigError(f"symbols is {self.symbols} but symbol_names holds {len(names)}: {names!r}")
        object.__setattr__(self, "symbol_names", names)

    def _check_time_axis(self) -> None:
        require_aware("start", self.start, error=ConfigError)
        if not isinstance(self.interval, timedelta) or self.interval <= timedelta(0):
            raise ConfigError(f"interval must be a positive timedelta, was {self.interval!r}")
        try:
            self.start + self.interval * (self.bars_per_symbol - 1)
        except OverflowError as error:
            raise ConfigError(
                f"{self.bars_per_symbol} bars of {self.interval} from {self.start.isoformat()} pass year 9999"
            ) from error

    def _check_regimes(self) -> None:
        rows = tuple(tuple(_as_float("transition_matrix", p) for p in row) for row in self.transition_matrix)
        count = len(rows)
        if count == 0 or any(len(row) != count for row in rows):
            raise ConfigError(f"transition_matrix must be square and non-empty, was {rows!r}")
        for index, row in enumerate(rows):
            if any(p < 0.0 or p > 1.0 for p in row) or abs(math.fsum(row) - 1.0) > 1e-9:
                raise ConfigError(
                    f"transition_matrix row {index} {row!r} must hold probabilities summing to 1, "
                    f"sums to {math.fsum(row)!r}"
                )
        object.__setattr__(self, "transition_matrix", rows)
        names = tuple(self.regime_names)
        if len(names) != count or len(set(names)) != count or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"regime_names must be {count} distinct strings, were {names!r}")
        object.__setattr__(self, "regime_names", names)
        for name in _REGIME_FIELDS:
            values = tuple(_as_float(name, value) for value in getattr(self, name))
            if len(values) != count:
                raise ConfigError(f"{name} needs one value per regime ({count}), was {values!r}")
            if name != "drift" and any(value <= 0.0 for value in values):
                raise ConfigError(f"{name} must be positive in every regime, was {values!r}")
            object.__setattr__(self, name, values)

    @property
    def names(self) -> tuple[str, ...]:
        """The symbol names, generated as ``SYN000``, ``SYN001``, ... when none were given."""
        if self.symbol_names:
            return self.symbol_names
        width = max(3, len(str(self.symbols - 1)))
        return tuple(f"SYN{index:0{width}d}" for index in range(self.symbols))

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of this configuration and the generator version."""
        plain = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        # Canonical JSON has no timedelta; whole microseconds are exact at a timedelta's resolution.
        plain["interval"] = self.interval // timedelta(microseconds=1)
        plain["generator_version"] = GENERATOR_VERSION
        return digest(plain)


def generate_regimes(config: MarketConfig) -> np.ndarray:
    """Return the regime index of every bar, shape ``(symbols, bars_per_symbol)``.

    These are the regimes `generate_market` uses for the same configuration; index ``i`` names
    ``config.regime_names[i]``. Each symbol starts from the chain's stationary distribution.
    """
    stream = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[0])
    transition = np.asarray(config.transition_matrix)
    count = transition.shape[0]
    symbols, bars = config.symbols, config.bars_per_symbol
    initial = stream.choice(count, size=symbols, p=_stationary_distribution(transition))
    # Uniformisation: a bar is a jump candidate with one probability for every regime, and a candidate moves
    # by `jump`; that is the same chain, but only candidates (a tenth of the bars by default) need the
    # sequential composition below.
    leave = float(np.max(1.0 - np.diag(transition)))
    identity = np.eye(count)
    jump = identity if leave == 0.0 else np.clip(identity + (transition - identity) / leave, 0.0, None)
    candidates = stream.random((symbols, bars)) < leave
    candidates[:, 0] = True
    positions = np.flatnonzero(candidates)
    draws = stream.random(positions.size)
    cumulative = np.cumsum(jump, axis=1)
    # maps[e, i] is the regime after candidate e when the regime before it was i.
    maps = np.stack([np.searchsorted(cumulative[i], draws, side="right") for i in range(count)], axis=-1)
    np.minimum(maps, count - 1, out=maps)  # a row summing to 1 - 1e-16 must not yield a regime past the end
    # A symbol's first bar maps every regime to its initial one, so composing across the flattened symbols
    # never leaks one symbol's past into the next.
    maps[positions % bars == 0] = initial[:, None]
    # Prefix compositions by doubling: log2(candidates per symbol) array passes, not a loop over bars.
    longest = int(candidates.sum(axis=1).max())
    shift = 1
    while shift < longest:
        maps[shift:] = np.take_along_axis(maps[shift:], maps[:-shift], axis=1)
        shift *= 2
    owner = np.cumsum(candidates.ravel()) - 1
    return maps[owner, 0].astype(np.int8).reshape(symbols, bars)


def generate_market(config: MarketConfig) -> pd.DataFrame:
    """Return a bar frame of ``symbols * bars_per_symbol`` rows, grouped by symbol in time order.

    Raises
    ------
    ConfigError
        If drift and volatility carry prices beyond the range of float64.
    """
    regimes = generate_regimes(config)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(2)[1])
    symbols, bars = regimes.shape
    shape = (symbols, bars)
    volatility = np.asarray(config.volatility)[regimes]
    loading = math.sqrt(config.market_correlation)
    market = rng.standard_normal(bars)
    shock = loading * market + math.sqrt(1.0 - loading**2) * rng.standard_normal(shape)
    price_dispersion = config.initial_price_dispersion
    log_start = math.log(config.initial_price) + price_dispersion * rng.standard_normal((symbols, 1))
    log_close = log_start + np.cumsum(np.asarray(config.drift)[regimes] + volatility * shock, axis=1)
    log_open = np.concatenate([log_start, log_close[:, :-1]], axis=1)
    log_open += _GAP_SCALE * volatility * rng.standard_normal(shape)
    with np.errstate(over="ignore", under="ignore"):
        close, open_ = np.exp(log_close), np.exp(log_open)
        # A factor >= 1 (<= 1) never rounds a product below (above) its input, so OHLC order is exact.
        high = np.maximum(open_, close) * np.exp(_WICK_SCALE * volatility * rng.standard_exponential(shape))
        low = np.minimum(open_, close) * np.exp(-_WICK_SCALE * volatility * rng.standard_exponential(shape))
    if not (np.isfinite(high).all() and (low > 0.0).all()):
        raise ConfigError(
            f"drift {config.drift} and volatility {config.volatility} over {bars} bars carry prices "
            "out of float64 range; use fewer bars or smaller rates"
        )

    sensitivity, dispersion = config.volume_sensitivity, config.volume_dispersion
    # E[exp(a|z|)] = 2 exp(a^2/2) Phi(a) for standard normal z; dividing it out keeps each regime's mean
    # volume at mean_volume * multiplier however strongly volume follows the move.
    move_mean = math.exp(sensitivity**2 / 2.0) * (1.0 + math.erf(sensitivity / math.sqrt(2.0)))
    volume_noise = sensitivity * np.abs(shock) + dispersion * rng.standard_normal(shape) - dispersion**2 / 2.0
    volume_scale = config.mean_volume / move_mean * np.asarray(config.volume_multiplier)
    volume = volume_scale[regimes] * np.exp(volume_noise)
    spread_dispersion = config.spread_dispersion
    spread_noise = spread_dispersion * rng.standard_normal(shape) - spread_dispersion**2 / 2.0
    spread = config.base_spread * np.asarray(config.spread_multiplier)[regimes] * np.exp(spread_noise)

    step = np.timedelta64(config.interval // timedelta(microseconds=1), "us")
    first = np.datetime64(config.start.astimezone(UTC).replace(tzinfo=None), "us")
    times = pd.DatetimeIndex(np.tile(first + step * np.arange(bars), symbols)).tz_localize(UTC)
    columns = {
        "symbol": pd.array(config.names, dtype="str").repeat(bars),
        "timestamp": times.astype(TIMESTAMP_DTYPE),
        "open": open_.ravel(),
        "high": high.ravel(),
        "low": low.ravel(),
        "close": close.ravel(),
        "volume": volume.ravel(),
        "spread": spread.ravel(),
    }
    # Every column is a fresh array nobody else holds, so the frame may own them without a copy.
    return pd.DataFrame(columns, columns=list(BAR_COLUMNS), copy=False)


def write_market_csv(frame: pd.DataFrame, path: str | os.PathLike[str], *, price_decimals: int | None = None) -> None:
    """Write a bar frame as CSV: ``timestamp,symbol,open,high,low,close,volume,spread``.

    Timestamps are ISO 8601 UTC with microseconds and a ``Z``; floats are written in their shortest
    round-tripping form, so ``pandas.read_csv`` gives back the very same values, unless
    `price_decimals` is given: then prices are rounded to that many decimals (rounding is monotone, so
    OHLC order holds), volumes to whole units and spreads to two decimals more, as real files are.

    Raises
    ------
    ValidationError
        If `frame` lacks a bar-frame column.
    """
    missing = [column for column in BAR_COLUMNS if column not in frame.columns]
    if missing:
        raise ValidationError(f"frame lacks bar-frame columns {missing}, has {list(frame.columns)}")
    out = frame.loc[:, list(_CSV_COLUMNS)].copy()
    if price_decimals is not None:
        for column in ("open", "high", "low", "close"):
            out[column] = out[column].round(price_decimals)
        out["volume"] = out["volume"].round(0)
        out["spread"] = out["spread"].round(price_decimals + 2)
    instants = pd.DatetimeIndex(out["timestamp"]).tz_convert(UTC).tz_localize(None).as_unit("us")
    out["timestamp"] = np.strings.add(np.datetime_as_string(instants.to_numpy(), unit="us"), "Z")
    out.to_csv(path, index=False, lineterminator="\n")


def _stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """Return a stationary distribution of `transition` (the least-norm one if there are several)."""
    count = transition.shape[0]
    system = np.vstack([transition.T - np.eye(count), np.ones(count)])
    target = np.concatenate([np.zeros(count), [1.0]])
    solution = np.clip(np.linalg.lstsq(system, target, rcond=None)[0], 0.0, None)
    return np.asarray(solution / solution.sum())


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _as_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, was {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be finite, was {value!r}")
    return number
