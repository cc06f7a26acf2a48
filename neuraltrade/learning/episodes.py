"""Episodes: each closed trade with its entry state, lineage and outcome, known from a stated moment on.

An episode's outcome window runs from its entry bar to ``window_end_bar = max(exit_bar, entry_bar +
horizon_bars)`` (bars of the symbol's own history), and the episode becomes known at ``outcome_known_at``, the
timestamp of that bar: never before the exit, and never before a fixed horizon has passed, so that a trade
closed early is not settled before a judge looking `horizon_bars` ahead could be. A decision at time t may read
an episode only if ``outcome_known_at < t``. While the window has not closed (`window_end_bar` beyond the
history's last bar) `episode_from_trade` returns None: the episode is built on a later night.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.canonical import digest, parse_timestamp, stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.regime import STATE_FEATURES, state_features
from neuraltrade.market.history import PriceHistory
from neuraltrade.records import CausalLink, Record, unique_links
from neuraltrade.timestamps import from_microseconds, require_aware, to_microseconds

_EXIT_REASONS = tuple(reason.value for reason in ExitReason)


# -- field checks shared by the learning records ---------------------------------------------------------------


def _finite(name: str, value: object, *, minimum: float | None = None) -> float:
    """`value` as a float; `ValidationError` naming `name` unless it is a finite number (>= `minimum`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number, was {value!r}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, was {value!r}")
    return float(value)


def _integer(name: str, value: object, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValidationError(f"{name} must be an integer, was {value!r}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, was {value!r}")
    return int(value)


def _uuid(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, uuid.UUID):
        raise ValidationError(f"{name} must be a UUID, was {value!r}")


def _text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{name} must be a non-empty string, was {value!r}")


def _read_uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


def _bar_at(history: PriceHistory, moment: datetime, what: str) -> int:
    """The bar of `history` holding `moment`: the last bar whose timestamp is at or before it."""
    micros = to_microseconds(require_aware(what, moment))
    bar = int(np.searchsorted(history.timestamps, micros, side="right")) - 1
    if bar < 0:
        raise ValidationError(f"{what} {moment.isoformat()} lies before the first bar of {history.symbol}")
    return bar


# -- the episode -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EpisodeConfig:
    """How episodes are built: `horizon_bars`, the shortest outcome window after the entry bar."""

    horizon_bars: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.horizon_bars, bool) or not isinstance(self.horizon_bars, int) or self.horizon_bars < 1:
            raise ConfigError(f"episode horizon_bars must be an integer >= 1, was {self.horizon_bars!r}")

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of this configuration."""
        return digest(self)


_UUIDS = ("id", "trade_id", "entry_observation_id")
_OPTIONAL_UUIDS = ("run_id", "signal_id", "entry_order_id", "exit_order_id", "entry_fill_id", "exit_fill_id")
_TIMES = ("decision_time", "entry_time", "exit_time", "outcome_known_at")
_BARS = ("decision_bar", "entry_bar", "exit_bar", "window_end_bar")
_NUMBERS = ("size", "pnl", "net_return", "gross_return", "benchmark_return")
_NON_NEGATIVE = ("holding_seconds", "max_adverse_excursion", "max_favourable_excursion")


@dataclass(frozen=True, kw_only=True)
class Episode(Record):
    """One closed trade as the learning loop remembers it (see the module docstring for the window).

    Returns are fractions: `net_return` is the trade's return after costs (``ClosedTrade.return_pct / 100``),
    `gross_return` ``side · (exit_price / entry_price - 1)``. `max_adverse_excursion` and
    `max_favourable_excursion` are the worst and best side-adjusted moves from the entry price over bars
    ``entry_bar..exit_bar`` (lows and highs, and the exit fill itself, so ``-MAE <= gross_return <= MFE``).
    `benchmark_return` is buy-and-hold of the symbol over the same bars, from the close before the entry bar
    (what a market order decided then pays, before the gap) to the exit bar's close; for a trade entered on
    the first bar, from its open. `state_features` is the `STATE_FEATURES` row at the decision bar, NaN (too
    little history) written as 0.0, the neutral value of every feature but the range position.
    """

    KIND = "episode"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    trade_id: uuid.UUID
    run_id: uuid.UUID | None
    strategy: str
    strategy_id: str
    symbol: str
    side: int
    size: float
    signal_id: uuid.UUID | None
    signal_links: tuple[CausalLink, ...]
    entry_observation_id: uuid.UUID
    entry_order_id: uuid.UUID | None
    exit_order_id: uuid.UUID | None
    entry_fill_id: uuid.UUID | None
    exit_fill_id: uuid.UUID | None
    decision_time: datetime
    entry_time: datetime
    exit_time: datetime
    outcome_known_at: datetime
    decision_bar: int
    entry_bar: int
    exit_bar: int
    window_end_bar: int
    entry_price: float
    exit_price: float
    pnl: float
    net_return: float
    gross_return: float
    holding_bars: int
    holding_seconds: float
    max_adverse_excursion: float
    max_favourable_excursion: float
    benchmark_return: float
    exit_reason: str
    state_features: tuple[float, ...]
    horizon_bars: int

    def __post_init__(self) -> None:
        for name in _UUIDS:
            _uuid(f"episode {name}", getattr(self, name))
        for name in _OPTIONAL_UUIDS:
            _uuid(f"episode {name}", getattr(self, name), optional=True)
        expected = stable_id("episode", self.trade_id)
        if self.id != expected:
            raise ValidationError(f"episode of trade {self.trade_id} has id {self.id}; its id is {expected}")
        label = f"episode {self.id}"
        for name in ("strategy", "strategy_id", "symbol"):
            _text(f"{label} {name}", getattr(self, name))
        if self.exit_reason not in _EXIT_REASONS:
            raise ValidationError(f"{label} exit_reason {self.exit_reason!r} is not one of {', '.join(_EXIT_REASONS)}")
        if self.side not in (1, -1) or isinstance(self.side, bool):
            raise ValidationError(f"{label} side must be 1 (long) or -1 (short), was {self.side!r}")
        object.__setattr__(self, "side", int(self.side))
        for name in _TIMES:
            object.__setattr__(self, name, require_aware(f"{label} {name}", getattr(self, name)))
        for name in (*_BARS, "holding_bars"):
            object.__setattr__(self, name, _integer(f"{label} {name}", getattr(self, name), minimum=0))
        object.__setattr__(self, "horizon_bars", _integer(f"{label} horizon_bars", self.horizon_bars, minimum=1))
        for name in ("entry_price", "exit_price"):
            price = _finite(f"{label} {name}", getattr(self, name))
            if price <= 0:
                raise ValidationError(f"{label} {name} must be positive, was {price!r}")
            object.__setattr__(self, name, price)
        for name in _NUMBERS:
            object.__setattr__(self, name, _finite(f"{label} {name}", getattr(self, name)))
        for name in _NON_NEGATIVE:
            object.__setattr__(self, name, _finite(f"{label} {name}", getattr(self, name), minimum=0.0))
        if self.size == 0 or (self.size > 0) != (self.side > 0):
            raise ValidationError(f"{label} size {self.size!r} does not match side {self.side}")
        self._check_order(label)
        links = tuple(self.signal_links)
        if not all(isinstance(link, CausalLink) for link in links):
            raise ValidationError(f"{label} signal_links must be CausalLinks, were {links!r}")
        object.__setattr__(self, "signal_links", unique_links(links))
        values = tuple(_finite(f"{label} state feature", value) for value in self.state_features)
        if len(values) != len(STATE_FEATURES):
            raise ValidationError(f"{label} has {len(values)} state features, needs {len(STATE_FEATURES)}")
        object.__setattr__(self, "state_features", values)

    def _check_order(self, label: str) -> None:
        times = [getattr(self, name) for name in _TIMES]
        if times != sorted(times):
            shown = ", ".join(f"{name}={getattr(self, name).isoformat()}" for name in _TIMES)
            raise ValidationError(f"{label} times must not decrease: {shown}")
        bars = [getattr(self, name) for name in _BARS]
        if bars != sorted(bars):
            shown = ", ".join(f"{name}={getattr(self, name)}" for name in _BARS)
            raise ValidationError(f"{label} bars must not decrease: {shown}")
        if self.window_end_bar != max(self.exit_bar, self.entry_bar + self.horizon_bars):
            raise ValidationError(
                f"{label} window_end_bar {self.window_end_bar} is not max(exit_bar {self.exit_bar}, "
                f"entry_bar {self.entry_bar} + horizon_bars {self.horizon_bars})"
            )
        if self.holding_bars != self.exit_bar - self.entry_bar:
            raise ValidationError(f"{label} holding_bars {self.holding_bars} is not exit_bar - entry_bar")

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Episode:
        values = dict(plain)
        for name in _UUIDS:
            values[name] = uuid.UUID(values[name])
        for name in _OPTIONAL_UUIDS:
            values[name] = _read_uuid(values[name])
        for name in _TIMES:
            values[name] = parse_timestamp(values[name])
        values["signal_links"] = tuple(CausalLink.from_plain(link) for link in values["signal_links"])
        values["state_features"] = tuple(float(value) for value in values["state_features"])
        return cls(**values)

    @property
    def is_long(self) -> bool:
        """Whether the trade was long."""
        return self.side > 0


def _excursions(trade: ClosedTrade, history: PriceHistory, entry_bar: int, exit_bar: int) -> tuple[float, float]:
    """(adverse, favourable) excursions as fractions >= 0 over bars entry..exit, the exit fill included."""
    lowest = min(float(np.min(history.low[entry_bar : exit_bar + 1])), trade.exit_price)
    highest = max(float(np.max(history.high[entry_bar : exit_bar + 1])), trade.exit_price)
    entry = trade.entry_price
    if trade.size > 0:
        return max(0.0, 1.0 - lowest / entry), max(0.0, highest / entry - 1.0)
    return max(0.0, highest / entry - 1.0), max(0.0, 1.0 - lowest / entry)


def _decision_bar(trade: ClosedTrade, entry_bar: int, exit_bar: int, decision_bar: int | None) -> int:
    """The symbol bar whose decision opened the trade (see `episode_from_trade`)."""
    if decision_bar is not None:
        return decision_bar
    same_timeline = trade.entry_bar == entry_bar and trade.exit_bar == exit_bar
    if trade.decision_bar is not None and same_timeline and 0 <= trade.decision_bar <= entry_bar:
        return int(trade.decision_bar)
    return max(entry_bar - 1, 0)


def episode_from_trade(
    trade: ClosedTrade,
    history: PriceHistory,
    *,
    trade_id: uuid.UUID,
    run_id: uuid.UUID | None,
    strategy: str,
    strategy_id: str,
    signal_links: Sequence[CausalLink] = (),
    config: EpisodeConfig = EpisodeConfig(),
    decision_bar: int | None = None,
) -> Episode | None:
    """The episode of `trade` on `history` (its symbol's bars), or None while its outcome window is open.

    Entry and exit bars are the symbol's bars holding the trade's entry and exit times (a `ClosedTrade`'s
    `entry_bar` and `exit_bar` index the run's common timeline, which for several symbols is not the
    symbol's). The decision bar is, in order: `decision_bar` if given (a symbol bar, such as a run's
    ``Decision.symbol_bar``); the trade's own `decision_bar` when the run's timeline is the symbol's (its
    entry and exit bars agree with the symbol's), which covers limit entries and fills on the decision bar's
    close; else the bar before the entry bar (a decision after bar i's close fills on bar i + 1).
    """
    if not isinstance(config, EpisodeConfig):
        raise ConfigError(f"episode config must be an EpisodeConfig, was {config!r}")
    if trade.symbol != history.symbol:
        raise ValidationError(f"trade of {trade.symbol} was given the history of {history.symbol}")
    entry_bar = _bar_at(history, trade.entry_time, f"entry time of the {trade.symbol} trade")
    exit_bar = _bar_at(history, trade.exit_time, f"exit time of the {trade.symbol} trade")
    window_end = max(exit_bar, entry_bar + config.horizon_bars)
    if window_end >= len(history):
        return None
    decided = _decision_bar(trade, entry_bar, exit_bar, decision_bar)
    if not 0 <= decided <= entry_bar:
        raise ValidationError(f"decision bar {decided} of the {trade.symbol} trade is not in 0..{entry_bar}")
    adverse, favourable = _excursions(trade, history, entry_bar, exit_bar)
    close, open_ = history.close, history.open
    start = float(close[entry_bar - 1]) if entry_bar >= 1 else float(open_[entry_bar])
    side = 1 if trade.size > 0 else -1
    features = np.nan_to_num(state_features(history, decided), nan=0.0)
    decision_time = from_microseconds(int(history.timestamps[decided]))
    known_at = max(from_microseconds(int(history.timestamps[window_end])), trade.exit_time)
    return Episode(
        id=stable_id("episode", trade_id),
        trade_id=trade_id,
        run_id=run_id,
        strategy=strategy,
        strategy_id=strategy_id,
        symbol=trade.symbol,
        side=side,
        size=float(trade.size),
        signal_id=trade.signal_id,
        signal_links=tuple(signal_links),
        entry_observation_id=history.observation_id(decided),
        entry_order_id=trade.entry_order_id,
        exit_order_id=trade.exit_order_id,
        entry_fill_id=trade.entry_fill_id,
        exit_fill_id=trade.exit_fill_id,
        decision_time=decision_time,
        entry_time=trade.entry_time,
        exit_time=trade.exit_time,
        outcome_known_at=known_at,
        decision_bar=decided,
        entry_bar=entry_bar,
        exit_bar=exit_bar,
        window_end_bar=window_end,
        entry_price=float(trade.entry_price),
        exit_price=float(trade.exit_price),
        pnl=float(trade.pnl),
        net_return=trade.return_pct / 100.0,
        gross_return=side * (trade.exit_price / trade.entry_price - 1.0),
        holding_bars=exit_bar - entry_bar,
        holding_seconds=(trade.exit_time - trade.entry_time).total_seconds(),
        max_adverse_excursion=adverse,
        max_favourable_excursion=favourable,
        benchmark_return=float(close[exit_bar]) / start - 1.0,
        exit_reason=trade.exit_reason.value,
        state_features=tuple(float(value) for value in features),
        horizon_bars=config.horizon_bars,
    )


def unique_decisions(episodes: Sequence[Episode]) -> list[Episode]:
    """One episode per decision (symbol, decision time, side): runs of one strategy id under other sizing or
    risk limits, or on more bars, repeat its decisions, which must count once. The episode with the smallest
    id stands for each, so the choice does not depend on the order of runs; the result is in the order of
    `outcome_known_at`, then id."""
    chosen: dict[tuple[str, datetime, int], Episode] = {}
    for episode in sorted(episodes, key=lambda item: item.id.int):
        chosen.setdefault((episode.symbol, episode.decision_time, episode.side), episode)
    return sorted(chosen.values(), key=lambda item: (item.outcome_known_at, item.id.int))
