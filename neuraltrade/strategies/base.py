"""The contract between strategies and the engine: a symbol's bar history in, a frame of signals out.

A strategy sees one symbol's bars as arrays (`PriceHistory`) and returns, for every bar, what it wants
to hold after seeing that bar's close (`SignalFrame.target`: +1 long, -1 short, 0 flat, NaN "no new
decision"). The engine turns a decision on bar i into an order that fills on bar i+1 (or at bar i's
close with ``trade_on_close``); a decision on the last bar never fills. A decision for the side
already held, with no order working, changes nothing.

Signals are computed over the whole history at once, which is what makes parameter sweeps fast, so
causality is a property the engine *checks*: `verify_causality` recomputes the frame on prefixes of the
history and refuses a strategy whose decision on any bar changes once later bars exist
(`LookAheadError`). Strategies that need per-bar state compute it in a loop over the arrays, reading
only indices <= i.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from neuraltrade.canonical import digest
from neuraltrade.errors import ConfigError, LookAheadError, ValidationError
from neuraltrade.market.history import PriceHistory
from neuraltrade.records import CausalLink
from neuraltrade.strategies.needs import Need, Products, Supplies


@dataclass(frozen=True, kw_only=True, eq=False)
class SignalFrame:
    """A strategy's decisions over every bar of one history.

    `target` is +1 (be long), -1 (be short), 0 (be flat) or NaN (no new decision) after each bar's close;
    `confidence` lies in [0, 1] where a decision is taken. The optional exit arrays are distances from the
    fill price as fractions (0.02 = 2%), NaN where none. `entry_limit` and `entry_stop` turn an entry into
    a limit, stop or stop-limit order priced relative to the decision bar's close (-0.01: 1% below), NaN
    for a market order; `valid_bars` cancels an entry still unfilled that many bars after its decision.
    `links` maps a bar to the typed edges (`CausalLink`) to the records that decision used besides the
    bar's own observation (memory items recalled, model versions predicted by, patterns); `features` holds
    per-bar values worth recording with each signal. `warmup` is the first bar whose decision can be
    defined at all. `details` carries run-level facts (a model version, an out-of-sample hit rate).
    """

    target: np.ndarray
    confidence: np.ndarray
    stop_loss: np.ndarray | None = None
    take_profit: np.ndarray | None = None
    trailing_stop: np.ndarray | None = None
    entry_limit: np.ndarray | None = None
    entry_stop: np.ndarray | None = None
    valid_bars: int | None = None
    links: Mapping[int, tuple[CausalLink, ...]] = field(default_factory=dict)
    features: Mapping[str, np.ndarray] = field(default_factory=dict)
    warmup: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)

    def check(self, history: PriceHistory, strategy: str) -> None:
        """Raise `ValidationError` unless every array has one value per bar and targets are -1, 0, 1 or NaN."""
        count = len(history)
        arrays = {"target": self.target, "confidence": self.confidence, **self._exits(), **self._entries()}
        arrays.update({f"feature {name!r}": values for name, values in self.features.items()})
        for name, values in arrays.items():
            if values.shape != (count,):
                raise ValidationError(
                    f"strategy {strategy!r} on {history.symbol}: {name} has shape {values.shape}, needs ({count},)"
                )
        decided = ~np.isnan(self.target)
        bad = decided & ~np.isin(self.target, (-1.0, 0.0, 1.0))
        if bad.any():
            bar = int(np.flatnonzero(bad)[0])
            raise ValidationError(
                f"strategy {strategy!r} on {history.symbol}: target at bar {bar} is {float(self.target[bar])!r}; "
                "use -1, 0, 1 or NaN"
            )
        confidence = self.confidence[decided]
        if confidence.size and not bool(np.all((confidence >= 0.0) & (confidence <= 1.0))):
            raise ValidationError(f"strategy {strategy!r} on {history.symbol}: confidence outside [0, 1]")
        for name, values in self._exits().items():
            given = values[~np.isnan(values)]
            if given.size and not bool(np.all(given > 0.0)):
                raise ValidationError(f"strategy {strategy!r} on {history.symbol}: {name} distances must be > 0")

        for name, values in self._entries().items():
            given = values[~np.isnan(values)]
            if given.size and not bool(np.all(np.isfinite(given) & (given > -1.0))):
                raise ValidationError(f"strategy {strategy!r} on {history.symbol}: {name} offsets must be > -1")
        if self.valid_bars is not None and self.valid_bars < 1:
            raise ValidationError(f"strategy {strategy!r}: valid_bars must be >= 1, was {self.valid_bars!r}")

    def _entries(self) -> dict[str, np.ndarray]:
        named = {"entry_limit": self.entry_limit, "entry_stop": self.entry_stop}
        return {name: values for name, values in named.items() if values is not None}

    def _exits(self) -> dict[str, np.ndarray]:
        named = {"stop_loss": self.stop_loss, "take_profit": self.take_profit, "trailing_stop": self.trailing_stop}
        return {name: values for name, values in named.items() if values is not None}

    def decisions(self) -> np.ndarray:
        """Return the indices of the bars that carry a decision."""
        return np.flatnonzero(~np.isnan(self.target))


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """Base of every strategy's parameters: frozen, keyword-only, with a digest stored with each run."""

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the parameters."""
        return digest(self)

    def to_plain(self) -> dict[str, Any]:
        """Return the parameters as a plain dict."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


def strategy_id(name: str, config: StrategyConfig) -> str:
    """The id of strategy `name` under `config`: the name and the first 12 hex digits of the config's digest,
    e.g. ``sma_cross-3f2a9c1b0d4e``."""
    return f"{name}-{config.digest[:12]}"


class Strategy(abc.ABC):
    """A named rule from bar history to signals; `name` is registered, `config` identifies the version.

    A strategy that needs more than bars declares it in `needs` and takes it from `supplies`; the
    registry fills them (see `neuraltrade.strategies.needs`). What it makes besides signals (the model
    versions its signals link to) it returns from `products`.
    """

    name: ClassVar[str]
    #: What the strategy needs besides its bars, which the registry fills from a context.
    needs: ClassVar[frozenset[Need]] = frozenset()
    #: What the strategy was given for its needs (set by the registry; nothing when built directly).
    supplies: Supplies = Supplies()

    def __init__(self, config: StrategyConfig) -> None:
        self.config = config

    @classmethod
    def from_supplies(cls, config: StrategyConfig, supplies: Supplies) -> Strategy:
        """Build the strategy from its configuration and what its `needs` were filled with."""
        del supplies  # a strategy that needs nothing is built from its configuration alone
        return cls(config)

    @functools.cached_property
    def strategy_id(self) -> str:
        """The strategy's name and the first 12 hex digits of its config digest, e.g. ``sma_cross-3f2a9c1b0d4e``.

        Computed once: the configuration is frozen, and the engine reads the id at every decision.
        """
        return strategy_id(self.name, self.config)

    @abc.abstractmethod
    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return one decision per bar of `history`, each using only bars up to its own."""

    def products(self, history: PriceHistory, frame: SignalFrame) -> Products:
        """Return what the strategy made of `history` besides `frame`, its signals over it (nothing by default)."""
        del history, frame
        return Products()


def verify_causality(
    strategy: Strategy, history: PriceHistory, frame: SignalFrame, *, cuts: Sequence[int] | None = None
) -> None:
    """Raise `LookAheadError` if `strategy`'s decisions on bars up to some bar depend on the bars after it.

    Two probes. A prefix: the decisions on a history cut after bar c must equal those the whole history
    gave up to c. A changed future: with every price after bar c scaled up, then down, the decisions up
    to c must not move; a decision that reads the next bar changes under one of the two, whichever way
    that bar really went. By default the prefix ends on the bar after the middle decision and the
    future changes after the last decision but one bar (without decisions: the middle of the history);
    `cuts` gives the prefix lengths instead and skips the changed-future probe.
    """
    count = len(history)
    decided = frame.decisions()
    decided = decided[decided < count - 1]
    if cuts is None:
        middle = int(decided[len(decided) // 2]) + 1 if len(decided) else max(2, count // 2)
        last = int(decided[-1]) if len(decided) else max(1, count // 2) - 1
        probes = [(history.head(middle), middle)] if middle < count else []
        probes += [(_future_scaled(history, last, factor), last + 1) for factor in (1.25, 0.8)]
    else:
        for cut in cuts:
            if not 0 < cut <= count:
                raise ConfigError(f"causality cut {cut} lies outside the history of {count} bars")
        probes = [(history.head(cut), cut) for cut in cuts]
    for probe, cut in probes:
        partial = strategy.signals(probe)
        for name in ("target", "confidence", "stop_loss", "take_profit", "trailing_stop", "entry_limit", "entry_stop"):
            full_values, cut_values = getattr(frame, name), getattr(partial, name)
            if full_values is None and cut_values is None:
                continue
            if full_values is None or cut_values is None:
                differs = np.ones(cut, dtype=bool)
            elif np.array_equal(full_values[:cut], cut_values[:cut], equal_nan=True):
                continue  # the usual case, and ten times cheaper to establish than closeness
            else:
                differs = ~np.isclose(full_values[:cut], cut_values[:cut], rtol=1e-9, atol=1e-12, equal_nan=True)
            if differs.any():
                bar = int(np.flatnonzero(differs)[0])
                when = pd.Timestamp(int(history.timestamps[bar]), unit="us", tz="UTC").isoformat()
                raise LookAheadError(strategy.strategy_id, history.symbol, bar, when)


def _future_scaled(history: PriceHistory, last: int, factor: float) -> PriceHistory:
    """`history` with every price after bar `last` multiplied by `factor` (volumes unchanged)."""
    scale = np.ones(len(history))
    scale[last + 1 :] = factor
    return PriceHistory(
        symbol=history.symbol,
        timestamps=history.timestamps,
        open=history.open * scale,
        high=history.high * scale,
        low=history.low * scale,
        close=history.close * scale,
        volume=history.volume,
    )
