"""What a backtest produces: equity per bar, closed trades, fills, order events, decisions, and their statistics."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from neuraltrade.backtest.book import BrokerEvent, OpenTrade
from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.identity import RunName
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.trade import ClosedTrade, TradeFigures
from neuraltrade.canonical import format_timestamp
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.strategies.base import SignalFrame, Strategy
from neuraltrade.trading.risk import RiskRejection
from neuraltrade.types import Direction, Fill, Signal

if TYPE_CHECKING:
    from neuraltrade.backtest.statistics import Statistics


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision that reached the order book: the symbol, the timeline bar, the symbol's own bar, and the
    id of its signal (`neuraltrade.backtest.identity.signal_id_for`), named at the decision and carried by
    its orders and trades."""

    symbol: str
    bar: int
    symbol_bar: int
    target: float
    confidence: float
    signal_id: uuid.UUID


class RunRecords(NamedTuple):
    """What a run recorded that carries ids: decisions, closed trades, fills and the trades still open."""

    decisions: tuple[Decision, ...]
    trades: tuple[ClosedTrade, ...]
    fills: tuple[Fill, ...]
    open_trades: tuple[OpenTrade, ...]


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """The outcome of one backtest; statistics are computed on first use.

    `run_id` is the run's one id (`RunSpec.run_id` unless the caller gave one); the decisions, closed
    trades, fills and open trades carry ids derived from it. Deriving them (a hash each) is put off to
    their first reader (`lineage` makes the records), since a sweep reads only the statistics, which
    `trade_figures` serve without ids.
    """

    strategy: Strategy
    config: BacktestConfig
    market: MarketData
    equity: np.ndarray
    events: tuple[BrokerEvent, ...]
    frames: Mapping[str, SignalFrame]
    trade_figures: Sequence[TradeFigures]
    lineage: Callable[[uuid.UUID], RunRecords]
    run_name: RunName
    rejections: tuple[RiskRejection, ...] = ()

    @property
    def run_id(self) -> uuid.UUID:
        """The run's one id: the one `run_backtest` was given, or that of the run's specification (`run_spec`)."""
        return self.run_name.id

    @cached_property
    def records(self) -> RunRecords:
        """The decisions, closed trades, fills and open trades of the run, with their ids."""
        return self.lineage(self.run_id)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """The decisions that reached the order book, in the order they were taken."""
        return self.records.decisions

    @property
    def trades(self) -> tuple[ClosedTrade, ...]:
        """The closed trades (and closed parts), in the order they were closed."""
        return self.records.trades

    @property
    def fills(self) -> tuple[Fill, ...]:
        """Every fill of every order, in the order they happened."""
        return self.records.fills

    @property
    def open_trades(self) -> tuple[OpenTrade, ...]:
        """The trades still open after the last bar, oldest first."""
        return self.records.open_trades

    @cached_property
    def statistics(self) -> Statistics:
        """The backtesting.py statistics of this run (see docs/statistics.md)."""
        from neuraltrade.backtest.statistics import compute_statistics

        prices = self.market.close[0] if len(self.market.symbols) == 1 else self.market.close.T
        return compute_statistics(
            equity=self.equity,
            timestamps=self.market.timestamps,
            trades=self.trade_figures,
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

    def signals(self) -> list[Signal]:
        """Return each decision as a `Signal` (its id the decision's) whose causal links name the bar's
        observation and then what the decision used."""
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
                id=decision.signal_id,
                strategy_id=self.strategy.strategy_id,
                timestamp=timestamp,
                symbol=decision.symbol,
                direction=direction,
                confidence=min(1.0, max(0.0, decision.confidence if np.isfinite(decision.confidence) else 0.0)),
                features=features,
                reasoning=f"target {decision.target:+.0f} after the close of {format_timestamp(timestamp)}",
                causal_links=(
                    CausalLink(cause_id=observation, cause_kind=CauseKind.OBSERVATION, relation=Relation.OBSERVED),
                    *frame.links.get(decision.symbol_bar, ()),
                ),
            )
            signals.append(signal)
        return signals

    def trade_rows(self) -> list[dict[str, Any]]:
        """The closed trades as JSON-ready rows (the CLI contract's keys, plus symbol, commission, exit reason and
        the ids of the signal, orders and fills)."""
        return [trade.to_row() for trade in self.trades]
