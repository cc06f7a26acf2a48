"""The event-driven backtest: decisions become orders, the broker fills them bar by bar, equity is tracked.

A bar is processed in the order a live account would see it: at its open the broker fills what earlier
decisions asked for (exits first), equity is marked at its close, then the strategy decides. Bars on
which nothing can happen (no order working, no exit level set, no decision due, no risk manager to
feed) are skipped and their equity filled in afterwards from the unchanged positions, which is where
most of the speed comes from; an account that runs out of money on a skipped bar is still caught on
that bar.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from neuraltrade.backtest.book import WorkingOrder
from neuraltrade.backtest.broker import SimulatedBroker
from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.fast import fast_path_applies, run_decisions
from neuraltrade.backtest.identity import OrderName, RunName, SignalName
from neuraltrade.backtest.ledger import Mark, equity_curve, record
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.result import BacktestResult, Decision, RunRecords
from neuraltrade.backtest.run_spec import run_spec
from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.base import SignalFrame, Strategy, verify_causality


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An entry the engine is about to order, as a sizer and a risk check see it: the decision's signal id
    and the client order id its entry order will carry (derived once, at the decision)."""

    symbol: str
    bar: int
    direction: int
    price: float
    confidence: float
    signal_id: uuid.UUID
    client_order_id: str


@dataclass(frozen=True, slots=True)
class Account:
    """The account as known at a decision: equity, signed units and last closes per symbol, and history."""

    equity: float
    positions: Mapping[str, float]
    prices: Mapping[str, float]
    peak_equity: float
    day_start_equity: float
    timestamp: datetime
    trade_returns: tuple[float, ...]


class Sizer(Protocol):
    """Turns an intent into signed units (0: do not trade), reading only the history up to the decision."""

    def __call__(self, intent: OrderIntent, history: PriceHistory, account: Account) -> float: ...


class PreTradeCheck(Protocol):
    """Returns the reasons to refuse an order that would leave `units` of the symbol held (empty: accepted)."""

    def __call__(self, intent: OrderIntent, units: float, account: Account) -> Sequence[Any]: ...


def run_backtest(
    market: MarketData,
    strategy: Strategy,
    config: BacktestConfig | None = None,
    *,
    sizer: Sizer | None = None,
    risk: PreTradeCheck | None = None,
    frames: Mapping[str, SignalFrame] | None = None,
    record_orders: bool = False,
    run_id: uuid.UUID | None = None,
) -> BacktestResult:
    """Backtest `strategy` on every symbol of `market` with one shared account.

    Parameters
    ----------
    market
        The bars, aligned on one timeline.
    strategy
        Computes each symbol's signals from that symbol's history.
    config
        Cash, costs and fill rules; the default matches backtesting.py's defaults with exclusive orders.
    sizer
        Units per entry; by default ``config.order_size`` (all in).
    risk
        Pre-trade check; refused entries are kept in `BacktestResult.rejections` with their reasons.
    frames
        Precomputed signals per symbol (a sweep computing them once); they are still checked.
    record_orders
        Keep every order's events (placed, filled, cancelled...), for the order manager; otherwise a run
        that only market orders can change takes the fast path and records trades and equity alone.
    run_id
        The run's id, from which every signal, order and fill id derives; by default that of
        ``run_spec(strategy, config, market)`` (a caller running with risk limits, a sizer or a memory
        gives the id of its full `RunSpec`).

    Returns
    -------
    BacktestResult
        Equity per bar, closed trades, fills, order events, decisions and, lazily, statistics.
    """
    config = config or BacktestConfig()
    computed = dict(frames) if frames is not None else {}
    for symbol in market.symbols:
        history = market.histories[symbol]
        frame = computed.get(symbol)
        if frame is None:
            frame = computed[symbol] = strategy.signals(history)
        frame.check(history, strategy.strategy_id)
        if config.verify_causality and frames is None:
            verify_causality(strategy, history, frame)
    run = RunName(run_id, lambda: run_spec(strategy, config, market).run_id)
    if sizer is None and risk is None and not record_orders and fast_path_applies(config, computed):
        outcome = run_decisions(market, config, computed, strategy.strategy_id)
        if outcome is not None:
            equity, ledger = outcome
            return BacktestResult(
                strategy=strategy,
                config=config,
                market=market,
                equity=equity,
                events=(),
                frames=computed,
                trade_figures=ledger.lots,
                lineage=ledger.records,
                run_name=run,
            )
    return _Simulation(market, strategy, config, computed, sizer, risk, run).run()


class _Simulation:
    def __init__(
        self,
        market: MarketData,
        strategy: Strategy,
        config: BacktestConfig,
        frames: Mapping[str, SignalFrame],
        sizer: Sizer | None,
        risk: PreTradeCheck | None,
        run: RunName,
    ) -> None:
        self.market, self.strategy, self.config, self.frames = market, strategy, config, frames
        self.sizer, self.risk, self.run_name = sizer, risk, run
        self.broker = SimulatedBroker(config, market)
        # (symbol, bar, symbol bar, target, confidence, signal): a `Decision` once its signal id is read.
        self.decisions: list[tuple[str, int, int, float, float, SignalName]] = []
        self.rejections: list[Any] = []
        self.marks: list[Mark] = []
        self.peak_equity = config.cash
        self.day_start_equity = config.cash
        self.previous_equity = config.cash
        self.day = -1
        self.out_of_money_bar: int | None = None
        self.strategy_id = strategy.strategy_id
        self.trade_returns: list[float] = []

    def _due(self) -> tuple[np.ndarray, dict[int, list[tuple[int, int]]]]:
        """Timeline bars carrying a decision, and per bar the (symbol row, symbol bar) decided there."""
        due: dict[int, list[tuple[int, int]]] = {}
        for row, symbol in enumerate(self.market.symbols):
            positions = self.market.bar_index[symbol]
            for index in self.frames[symbol].decisions().tolist():
                due.setdefault(int(positions[index]), []).append((row, index))
        return np.array(sorted(due), dtype=np.int64), due

    def run(self) -> BacktestResult:
        count = len(self.market)
        bars, due = self._due()
        broker = self.broker
        every_bar = self.risk is not None or self.sizer is not None
        bar = int(bars[0]) if len(bars) else count
        if every_bar:
            bar = 0
        while bar < count:
            if broker.orders or broker.trades:
                broker.process(bar)
                if broker.trades and self._out_of_money(bar):
                    break
                broker.trail(bar)
            self._mark(bar)
            if every_bar:
                self._follow_equity(bar)
            for row, index in due.get(bar, ()):
                self._decide(row, index, bar)
            # Everything that could change the account on the next bar: work, exit levels, a decision.
            busy = (
                every_bar
                or broker.orders
                or any(
                    trade.stop_loss is not None or trade.take_profit is not None or trade.trailing_level is not None
                    for trade in broker.trades
                )
            )
            if busy:
                following = bar + 1
            else:
                position = int(np.searchsorted(bars, bar, side="right"))
                following = int(bars[position]) if position < len(bars) else count
                if broker.trades and following > bar + 1:
                    broke = self._first_broke(bar + 1, following)
                    if broke is not None:
                        self._out_of_money(broke, force=True)
                        break
            bar = following
        if self.out_of_money_bar is None:
            self._finish(count)
        return self._result()

    def _decide(self, row: int, index: int, bar: int) -> None:
        symbol = self.market.symbols[row]
        frame = self.frames[symbol]
        target = float(frame.target[index])
        held = self.broker.position(symbol)
        working = any(order.symbol == symbol for order in self.broker.orders)
        if not working and (target > 0 < held or target < 0 > held or (target == 0 and held == 0)):
            return
        confidence = float(frame.confidence[index])
        # The decision's signal and its entry order are named here, once; their orders, trades and rejections
        # carry the names, whose ids are derived when first read.
        signal = SignalName(self.run_name, self.strategy_id, symbol, self.market.datetimes[bar])
        self.decisions.append((symbol, bar, index, target, confidence, signal))
        if target == 0:
            self._flatten(symbol, bar, "the strategy turned flat", signal)
            return
        name = OrderName.entry(signal)
        direction = 1 if target > 0 else -1
        size = direction * self.config.order_size
        units: float | None = None  # units a sizer asked for, however few: never read as a margin fraction
        close = self.market.lists["valuation"][row][bar]
        if self.sizer is not None or self.risk is not None:
            intent = OrderIntent(symbol, bar, direction, close, confidence, signal.id, name.client_order_id)
            account = self._account(bar)
            if self.sizer is not None:
                size = float(self.sizer(intent, self.market.histories[symbol].head(index + 1), account))
                if size == 0 or not math.isfinite(size):
                    self._leave(symbol, bar, "the sizer gave the new position no units", signal)
                    return
                units = abs(size)
            if self.risk is not None:
                # The position the order would leave, in units (a margin fraction valued at the close).
                fraction = units is None and abs(size) < 1
                after = size * account.equity * self.config.leverage / close if fraction else size
                if not self.config.exclusive_orders:
                    after += held
                reasons = list(self.risk(intent, after, account))
                if reasons:
                    self.rejections.extend(reasons)
                    self._leave(symbol, bar, "the new position was refused by the risk manager", signal)
                    return
        limit, stop = _at(frame.entry_limit, index), _at(frame.entry_stop, index)
        self.broker.submit(
            WorkingOrder(
                symbol,
                row,
                size,
                bar,
                limit=None if limit is None else close * (1.0 + limit),
                stop=None if stop is None else close * (1.0 + stop),
                expires_bar=None if frame.valid_bars is None else bar + frame.valid_bars,
                stop_loss_distance=_at(frame.stop_loss, index),
                take_profit_distance=_at(frame.take_profit, index),
                trailing_distance=_at(frame.trailing_stop, index),
                decision_bar=bar,
                name=name,
                units=units,
            )
        )

    def _flatten(self, symbol: str, bar: int, reason: str, signal: SignalName) -> None:
        self.broker.cancel_orders(symbol, bar, reason)
        self.broker.close_trades(symbol, bar, signal)

    def _leave(self, symbol: str, bar: int, reason: str, signal: SignalName) -> None:
        """Carry out the exit half of a decision whose entry will not be placed (exits always pass)."""
        if self.config.exclusive_orders:
            self._flatten(symbol, bar, reason, signal)

    def _account(self, bar: int) -> Account:
        value = self.market.lists["valuation"]
        prices = {symbol: value[row][bar] for row, symbol in enumerate(self.market.symbols)}
        positions = {symbol: self.broker.position(symbol) for symbol in self.market.symbols}
        closed = self.broker.closed_trades()
        self.trade_returns.extend(trade.return_pct for trade in closed[len(self.trade_returns) :])
        returns = tuple(self.trade_returns)
        return Account(
            self.broker.equity(bar),
            positions,
            prices,
            self.peak_equity,
            self.day_start_equity,
            self.market.datetimes[bar],
            returns,
        )

    def _follow_equity(self, bar: int) -> None:
        """Track the peak and the equity at the close before each day's first bar (the day's start)."""
        day = int(self.market.timestamps[bar]) // 86_400_000_000
        equity = self.broker.equity(bar)
        if day != self.day:
            self.day = day
            self.day_start_equity = self.previous_equity
        self.previous_equity = equity
        self.peak_equity = max(self.peak_equity, equity)

    def _mark(self, bar: int) -> None:
        rows = len(self.market.symbols)
        units = [0.0] * rows
        basis = [0.0] * rows
        for trade in self.broker.trades:
            units[trade.row] += trade.size
            basis[trade.row] += trade.size * trade.entry_price
        mark = (bar, self.broker.cash, tuple(units), tuple(basis))
        if not self.marks or self.marks[-1][1:] != mark[1:]:
            record(self.marks, mark)

    def _first_broke(self, start: int, stop: int) -> int | None:
        """The first bar in [start, stop) on which the unchanged positions leave no equity, if any."""
        _, cash, units, basis = self.marks[-1]
        floor = cash - sum(basis)
        valuation = self.market.valuation
        for row, held in enumerate(units):
            if held:
                segment = valuation[row, start:stop]
                floor += held * (segment.min() if held > 0 else segment.max())
        if floor > 0:  # a lower bound of equity over the segment; the exact curve only when it might break
            return None
        equity = np.full(stop - start, cash - sum(basis))
        for row, held in enumerate(units):
            if held:
                equity += held * valuation[row, start:stop]
        broke = np.flatnonzero(equity <= 0)
        return start + int(broke[0]) if len(broke) else None

    def _out_of_money(self, bar: int, *, force: bool = False) -> bool:
        if not force and self.broker.equity(bar) > 0:
            return False
        self.broker.liquidate(bar)
        self.broker.cash = 0.0
        self.broker.expire_all(bar, "the account ran out of money")
        self.out_of_money_bar = bar
        self._mark(bar)
        return True

    def _finish(self, count: int) -> None:
        last = count - 1
        self.broker.expire_all(last, "still working after the last bar")
        if not self.config.close_at_end or not self.broker.trades:
            return
        self.broker.close_at_end(last)
        self._mark(last)

    def _records(self, _run_id: uuid.UUID) -> RunRecords:
        """The run's records, their ids derived from the names the run made (under `self.run_name`)."""
        decisions = tuple(
            Decision(symbol, bar, index, target, confidence, signal.id)
            for symbol, bar, index, target, confidence, signal in self.decisions
        )
        broker = self.broker
        return RunRecords(decisions, tuple(broker.closed_trades()), tuple(broker.fill_records()), tuple(broker.trades))

    def _result(self) -> BacktestResult:
        return BacktestResult(
            strategy=self.strategy,
            config=self.config,
            market=self.market,
            equity=equity_curve(self.market, self.marks, self.config.cash, self.out_of_money_bar),
            events=tuple(self.broker.events),
            frames=self.frames,
            trade_figures=tuple(self.broker.closed),
            lineage=self._records,
            rejections=tuple(self.rejections),
            run_name=self.run_name,
        )


def _at(values: np.ndarray | None, index: int) -> float | None:
    if values is None:
        return None
    value = float(values[index])
    return None if math.isnan(value) else value


#: Signature of a callable that builds a strategy from parameters (used by sweeps).
StrategyFactory = Callable[[Mapping[str, Any]], Strategy]
