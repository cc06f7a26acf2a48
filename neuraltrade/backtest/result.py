"""What a backtest produces: equity per bar, closed trades, order events, decisions, and their statistics."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from neuraltrade.backtest.broker import OpenTrade, OrderEvent
from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.canonical import digest, format_timestamp, stable_id
from neuraltrade.strategies.base import SignalFrame, Strategy
from neuraltrade.types import Direction, Signal

if TYPE_CHECKING:
    from neuraltrade.backtest.statistics import Statistics


def configuration_digest(strategy: Strategy, config: BacktestConfig, **controls: str | None) -> str:
    """SHA-256 of what shapes a run besides its bars: the strategy, its parameters, the backtest
    configuration, and any `controls` (digests of risk limits, sizing, the memory read) that are given."""
    parts = {"strategy": strategy.name, "strategy_config": strategy.config.digest, "backtest_config": config.digest}
    parts.update({name: value for name, value in controls.items() if value is not None})
    return digest(parts)


def market_digest(market: MarketData) -> str:
    """SHA-256 of the bars of `market` (symbols, timestamps and OHLCV)."""
    hasher = hashlib.sha256()
    for symbol in market.symbols:
        history = market.histories[symbol]
        hasher.update(symbol.encode() + b"\x1f")
        for values in (history.timestamps, history.open, history.high, history.low, history.close, history.volume):
            hasher.update(np.ascontiguousarray(values).tobytes())
    return hasher.hexdigest()


def run_id_for(config_digest: str, data_digest: str) -> uuid.UUID:
    """The stable id of the run of configuration `config_digest` on bars `data_digest`."""
    return stable_id("backtest_run", config_digest, data_digest)


def signal_id_for(run_id: uuid.UUID, strategy_id: str, symbol: str, moment: datetime) -> uuid.UUID:
    """The stable id of the signal of run `run_id` for `symbol` after the bar at `moment`."""
    return stable_id("signal", run_id, strategy_id, symbol, moment)


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision that reached the order book: the symbol, the timeline bar, the symbol's own bar."""

    symbol: str
    bar: int
    symbol_bar: int
    target: float
    confidence: float


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """The outcome of one backtest; statistics are computed on first use."""

    strategy: Strategy
    config: BacktestConfig
    market: MarketData
    equity: np.ndarray
    trades: tuple[ClosedTrade, ...]
    open_trades: tuple[OpenTrade, ...]
    events: tuple[OrderEvent, ...]
    decisions: tuple[Decision, ...]
    frames: Mapping[str, SignalFrame]
    rejections: tuple[Any, ...] = ()

    @cached_property
    def statistics(self) -> Statistics:
        """The backtesting.py statistics of this run (see docs/statistics.md)."""
        from neuraltrade.backtest.statistics import compute_statistics

        prices = self.market.close[0] if len(self.market.symbols) == 1 else self.market.close.T
        return compute_statistics(
            equity=self.equity,
            timestamps=self.market.timestamps,
            trades=self.trades,
            prices=prices,
            warmup_bars=self.warmup_bars,
        )

    @property
    def warmup_bars(self) -> int:
        """The bar before the first one any symbol could decide on: where backtesting.py starts Buy & Hold."""
        starts = []
        for symbol, frame in self.frames.items():
            positions = self.market.bar_index[symbol]
            starts.append(int(positions[min(max(frame.warmup, 0), len(positions) - 1)]))
        return max(0, min(starts, default=0) - 1)

    @property
    def drawdown_pct(self) -> np.ndarray:
        """Drawdown from the running peak of equity, in percent (positive)."""
        peak = np.maximum.accumulate(self.equity)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(peak > 0, 100.0 * (1.0 - self.equity / peak), 0.0)

    @cached_property
    def config_digest(self) -> str:
        """SHA-256 of the strategy's name and parameters and of the backtest configuration."""
        return configuration_digest(self.strategy, self.config)

    @cached_property
    def data_digest(self) -> str:
        """SHA-256 of the bars the run read (symbols, timestamps and OHLCV)."""
        return market_digest(self.market)

    @cached_property
    def run_id(self) -> str:
        """A stable id: the same strategy, configuration and bars give the same run id."""
        return str(run_id_for(self.config_digest, self.data_digest))

    def signals(self, run_id: uuid.UUID | None = None) -> list[Signal]:
        """Return each decision as a `Signal` whose causal links name the bar's observation and what it used.

        Signal ids belong to the run (`signal_id_for`), `run_id` or by default this result's own.
        """
        run = uuid.UUID(self.run_id) if run_id is None else run_id
        signals = []
        for decision in self.decisions:
            history = self.market.histories[decision.symbol]
            frame = self.frames[decision.symbol]
            timestamp = self.market.datetimes[decision.bar]
            observation = history.observation_id(decision.symbol_bar)
            direction = (
                Direction.LONG if decision.target > 0 else Direction.SHORT if decision.target < 0 else Direction.NEUTRAL
            )
            features = {
                name: float(values[decision.symbol_bar])
                for name, values in frame.features.items()
                if np.isfinite(values[decision.symbol_bar])
            }
            signal = Signal(
                id=signal_id_for(run, self.strategy.strategy_id, decision.symbol, timestamp),
                strategy_id=self.strategy.strategy_id,
                timestamp=timestamp,
                symbol=decision.symbol,
                direction=direction,
                confidence=min(1.0, max(0.0, decision.confidence if np.isfinite(decision.confidence) else 0.0)),
                features=features,
                reasoning=f"target {decision.target:+.0f} after the close of {format_timestamp(timestamp)}",
                causal_links=[observation],
            )
            for link in frame.links.get(decision.symbol_bar, ()):
                signal.add_causal_link(link)
            signals.append(signal)
        return signals

    def trade_rows(self) -> list[dict[str, Any]]:
        """The closed trades as JSON-ready rows (the CLI contract's keys, plus symbol, commission and exit reason)."""
        return [trade.to_row() for trade in self.trades]
