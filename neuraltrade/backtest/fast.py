"""The engine's fast path: market orders from signals with exclusive orders, decision by decision.

When nothing but the strategy's decisions can change the account (market orders, exclusive orders, no
exit levels, no volume cap, no sizer or risk check), the event loop has work only on the bar after each
decision. This path walks those decisions alone with plain floats, under the fill and cost rules of
`neuraltrade.backtest.fills` (the event loop's broker calls the same functions); a property test holds
it equal to the event loop, trade for trade (ids included), fill for fill and bar for bar. It returns
None, and the event loop runs instead, when an account runs out of money.

Ids cost more than the simulation itself (a hash per signal, order and fill), and a sweep reads only
the statistics: so the path keeps what it simulated as a `FastLedger` and derives the ids, by the rules
of `neuraltrade.backtest.identity`, only when the run's decisions, trades or fills are first read.
"""

from __future__ import annotations

import heapq
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from neuraltrade.backtest.book import OpenTrade
from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.fills import (
    ClosedPart,
    Execution,
    affordable_units,
    affords,
    closed_trade_of,
    commission,
    end_price,
    entry_price,
    fill_of,
    free_margin,
    market_price,
    settle,
    trade_commission,
    unit_cost,
)
from neuraltrade.backtest.identity import OrderName, RunName, SignalName
from neuraltrade.backtest.ledger import Mark, equity_curve, record
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.result import Decision, RunRecords
from neuraltrade.backtest.trade import ExitReason
from neuraltrade.strategies.base import SignalFrame

#: A closed trade as the fast path simulates it: its figures and, as lineage, (row, the bar of the decision that
#: closed it, -1 after the last bar); its `decision_bar` is that of the decision that opened it.
Lot = ClosedPart[tuple[int, int]]


#: A fill as the fast path simulates it, in the order fills happen: (what the order was: _ENTRY, _CLOSE or
#: _END; row; fill bar; units; price; commission; buying; the bar of the decision that placed the order;
#: the bar of the decision that opened the trade it closes).
RawFill = tuple[int, int, int, float, float, float, bool, int, int]
_ENTRY, _CLOSE, _END = 0, 1, 2
#: (row, placed bar, symbol bar, target, confidence) of a decision that reached the order book.
RawDecision = tuple[int, int, int, float, float]


def fast_path_applies(config: BacktestConfig, frames: Mapping[str, SignalFrame]) -> bool:
    """Whether `run_decisions` reproduces the event loop for this configuration and these signals."""
    if not config.exclusive_orders or config.max_participation is not None:
        return False
    for frame in frames.values():
        for exits in (frame.stop_loss, frame.take_profit, frame.trailing_stop, frame.entry_limit, frame.entry_stop):
            if exits is not None and not bool(np.isnan(exits).all()):
                return False
    return True


@dataclass(frozen=True, eq=False)
class FastLedger:
    """What the fast path simulated, before ids: closed lots, fills, decisions and the lots still open.

    `records` derives every id from the run id, as the event loop derives them while it runs.
    """

    market: MarketData
    strategy_id: str
    fixed_commission: float
    lots: list[Lot]
    fills: list[RawFill]
    decisions: list[RawDecision]
    still_open: list[tuple[int, int, float, float, int]]  # (row, entry bar, size, entry price, decision bar)

    def records(self, run_id: uuid.UUID) -> RunRecords:
        """The run's decisions, closed trades, fills and open trades, with their ids under `run_id`.

        The names are the ones the event loop makes at each decision (`neuraltrade.backtest.identity`),
        and the records are made from them as the broker's are (`closed_trade_of`, `fill_of`).
        """
        symbols, times = self.market.symbols, self.market.datetimes
        run = RunName(run_id, lambda: run_id)
        signals: dict[tuple[int, int], SignalName] = {}
        entries: dict[tuple[int, int], OrderName] = {}
        exits: dict[tuple[int, int, int], OrderName] = {}

        def signal(row: int, bar: int) -> SignalName:
            found = signals.get((row, bar))
            if found is None:
                found = signals[row, bar] = SignalName(run, self.strategy_id, symbols[row], times[bar])
            return found

        def entry(row: int, bar: int) -> OrderName:
            found = entries.get((row, bar))
            if found is None:
                found = entries[row, bar] = OrderName.entry(signal(row, bar))
            return found

        def exit(row: int, closing: int, opened: int) -> OrderName:
            # Closed by the decision on bar `closing`, or (-1) after the last bar, for the entry's own signal.
            found = exits.get((row, closing, opened))
            if found is None:
                if closing < 0:
                    found = OrderName.exit(signal(row, opened), ExitReason.END, entry(row, opened))
                else:
                    found = OrderName.exit(signal(row, closing), ExitReason.SIGNAL, entry(row, opened))
                exits[row, closing, opened] = found
            return found

        decisions = tuple(
            Decision(symbols[row], bar, symbol_bar, target, confidence, signal(row, bar).id)
            for row, bar, symbol_bar, target, confidence in self.decisions
        )
        # Every order of the fast path fills at once: each fill is its order's first (sequence 0).
        trades = []
        for lot in self.lots:
            row, closing = lot.lineage
            opened = lot.decision_bar
            assert opened is not None
            lineage = (entry(row, opened), 0, exit(row, closing, opened), 0)
            trades.append(closed_trade_of(lot, lineage, times))
        fills = []
        for kind, row, bar, quantity, price, fee, buying, placed, opened in self.fills:
            name = entry(row, placed) if kind == _ENTRY else exit(row, placed, opened)
            fills.append(fill_of(Execution(name, 0, bar, symbols[row], buying, quantity, price, fee), times))
        open_trades = [
            OpenTrade(
                symbols[row],
                row,
                size,
                price,
                bar,
                entry=entry(row, decided),
                entry_fee=self.fixed_commission,
                decision_bar=decided,
            )
            for row, bar, size, price, decided in self.still_open
        ]
        return RunRecords(decisions, tuple(trades), tuple(fills), tuple(open_trades))


def run_decisions(
    market: MarketData, config: BacktestConfig, frames: Mapping[str, SignalFrame], strategy_id: str
) -> tuple[np.ndarray, FastLedger] | None:
    """Simulate the decisions of `frames`; return equity and what was simulated, or None.

    None means the account ran out of money, which only the event loop handles.
    """
    symbols = market.symbols
    rows = len(symbols)
    count = len(market)
    prices = market.lists
    opens, values = prices["open"], prices["valuation"]
    # (fill bar, placed bar, row, symbol bar, target, confidence), in the order the event loop places them.
    pending: list[tuple[int, int, int, int, float, float]] = []
    for row, symbol in enumerate(symbols):
        frame = frames[symbol]
        positions = market.bar_index[symbol]
        indices = frame.decisions()
        if not len(indices):
            continue
        placed = positions[indices]
        following = np.append(positions[1:], count)[indices]
        targets, confidence = frame.target[indices], frame.confidence[indices]
        pending.extend(
            zip(
                following.tolist(),
                placed.tolist(),
                [row] * len(indices),
                indices.tolist(),
                targets.tolist(),
                confidence.tolist(),
                strict=True,
            )
        )
    if rows == 1:
        single = _run_single(market, config, pending)
        if single is None:
            return None
        equity, lots, fills, taken, still_open = single
        return equity, FastLedger(market, strategy_id, config.fixed_commission, lots, fills, taken, still_open)
    pending.sort(key=lambda item: (item[1], item[2]))
    account = _Account(config, symbols, opens, values)
    decisions: list[RawDecision] = []
    # Process placements and fills in time order: an order placed on bar d fills on its symbol's next bar.
    # Orders awaiting their fill as (fill bar, placement, row, placed bar, target); a symbol has at most one,
    # because its next decision comes no earlier than its next bar, where the order fills.
    queue: list[tuple[int, int, int, int, float]] = []
    working = [False] * rows
    for sequence, (fill_bar, placed_bar, row, symbol_bar, target, confidence) in enumerate(pending):
        # Fills due before this placement happen first (they are on earlier bars).
        while queue and queue[0][0] <= placed_bar:
            item = heapq.heappop(queue)
            working[item[2]] = False
            account.fill(item)
        held = account.open_trade[row]
        side = 0.0 if held is None else held[0]
        if not working[row] and ((target > 0 and side > 0) or (target < 0 and side < 0) or (target == 0 and side == 0)):
            continue
        decisions.append((row, placed_bar, symbol_bar, target, confidence))
        if fill_bar >= count:
            continue  # decided on the symbol's last bar: it never fills
        heapq.heappush(queue, (fill_bar, sequence, row, placed_bar, target))
        working[row] = True
    while queue:
        item = heapq.heappop(queue)
        working[item[2]] = False
        account.fill(item)
    if config.close_at_end:
        account.close_at_end(count - 1)
    equity = equity_curve(market, account.marks, config.cash)
    if bool((equity <= 0).any()):
        return None
    still_open = [
        (row, int(trade[2]), trade[0], trade[1], int(trade[4]))
        for row, trade in sorted(enumerate(account.open_trade), key=lambda item: _opened(item[1]))
        if trade is not None
    ]
    ledger = FastLedger(
        market, strategy_id, config.fixed_commission, account.lots, account.fills, decisions, still_open
    )
    return equity, ledger


def _run_single(
    market: MarketData, config: BacktestConfig, pending: list[tuple[int, int, int, int, float, float]]
) -> tuple[np.ndarray, list[Lot], list[RawFill], list[RawDecision], list[tuple[int, int, float, float, int]]] | None:
    """`run_decisions` for one symbol, where each order fills before the next decision: one flat loop.

    With one symbol the bookkeeping of `_Account` was a quarter of the run, and sweeps run this thousands
    of times; the rules are the same functions of `neuraltrade.backtest.fills`.
    """
    symbol = market.symbols[0]
    count = len(market)
    opens, values = market.lists["open"][0], market.lists["valuation"][0]
    rate, fixed, spread = config.commission, config.fixed_commission, config.spread
    leverage, order_size, fractional, on_close = (
        config.leverage,
        config.order_size,
        config.fractional,
        config.trade_on_close,
    )
    cash = config.cash
    size = entry = 0.0  # the open trade: signed units (0: none) and entry price
    entry_bar = decided = 0
    lots: list[Lot] = []
    fills: list[RawFill] = []
    decisions: list[RawDecision] = []
    marks: list[Mark] = []
    waiting: tuple[int, int, float] | None = None  # (fill bar, placed bar, target)
    for fill_bar, placed_bar, _, symbol_bar, target, confidence in [*pending, (count, count, 0, 0, math.nan, 0.0)]:
        if waiting is not None and waiting[0] <= placed_bar:
            bar, placed, wanted = waiting
            waiting = None
            price = market_price(opens, values, bar, on_close)
            filled_at = placed if on_close else bar
            if size:
                trade = (0, size, entry, entry_bar, decided)
                fee = _close(lots, fills, symbol, trade, price, filled_at, ExitReason.SIGNAL, placed, rate, fixed)
                cash = settle(cash, size, entry, price, fee)
                size = 0.0
            if wanted != 0:
                long = wanted > 0
                adjusted = entry_price(price, spread, long)
                per_unit = unit_cost(price, adjusted, rate)
                buying_power = free_margin(cash, (), leverage) * leverage
                units = (
                    affordable_units(buying_power, order_size, per_unit, fixed, fractional)
                    if order_size < 1
                    else order_size
                )
                if units > 0 and affords(units, per_unit, fixed, buying_power):
                    size, entry, entry_bar, decided = (units if long else -units), adjusted, filled_at, placed
                    fee = commission(units, adjusted, rate, fixed)
                    fills.append((_ENTRY, 0, filled_at, units, adjusted, fee, long, placed, placed))
                    cash -= fee
            record(marks, (bar, cash, (size,), (size * entry,)))
        if target != target:  # the sentinel after the last decision
            break
        if waiting is None and ((target > 0 and size > 0) or (target < 0 and size < 0) or (target == 0 and size == 0)):
            continue
        decisions.append((0, placed_bar, symbol_bar, target, confidence))
        if fill_bar < count:
            waiting = (fill_bar, placed_bar, target)
    last = count - 1
    if config.close_at_end and size:
        exit_bar, price = end_price(opens, values, last, on_close)
        trade = (0, size, entry, entry_bar, decided)
        fee = _close(lots, fills, symbol, trade, price, exit_bar, ExitReason.END, -1, rate, fixed)
        cash = settle(cash, size, entry, price, fee)
        size = 0.0
        record(marks, (last, cash, (0.0,), (0.0,)))
    equity = equity_curve(market, marks, config.cash)
    if bool((equity <= 0).any()):
        return None
    still_open = [(0, entry_bar, size, entry, decided)] if size else []
    return equity, lots, fills, decisions, still_open


class _Account:
    """The account of the fast path over several symbols: cash, one open trade per symbol, what happened."""

    def __init__(
        self, config: BacktestConfig, symbols: tuple[str, ...], opens: list[list[float]], values: list[list[float]]
    ) -> None:
        self.config, self.symbols, self.opens, self.values = config, symbols, opens, values
        self.cash = config.cash
        # Per row: open trade as [size, entry price, entry bar, opening order, decision bar] or None.
        self.open_trade: list[list[float] | None] = [None] * len(symbols)
        self.opened = 0  # trades opened so far: open trades are kept and closed in that order
        self.lots: list[Lot] = []
        self.fills: list[RawFill] = []
        self.marks: list[Mark] = []

    def fill(self, item: tuple[int, int, int, int, float]) -> None:
        """Fill the order `item` (fill bar, placement, row, placed bar, target): close, then open."""
        bar, _, row, placed, target = item
        config = self.config
        on_close = config.trade_on_close
        price = market_price(self.opens[row], self.values[row], bar, on_close)
        fill_bar = placed if on_close else bar
        trade = self.open_trade[row]
        if trade is not None:
            self._close(row, trade, price, fill_bar, ExitReason.SIGNAL, placed)
            self.open_trade[row] = None
        if target != 0:
            long = target > 0
            adjusted = entry_price(price, config.spread, long)
            per_unit = unit_cost(price, adjusted, config.commission)
            # Margin: cash plus other symbols' open trades at their last close before this bar, minus their margin.
            held = [
                (other[0], other[1], self.values[number][bar - 1] if bar else other[1])
                for number, other in enumerate(self.open_trade)
                if other is not None
            ]
            buying_power = free_margin(self.cash, held, config.leverage) * config.leverage
            fixed = config.fixed_commission
            units = (
                affordable_units(buying_power, config.order_size, per_unit, fixed, config.fractional)
                if config.order_size < 1
                else config.order_size
            )
            if units > 0 and affords(units, per_unit, fixed, buying_power):
                self.opened += 1
                signed = units if long else -units
                self.open_trade[row] = [signed, adjusted, float(fill_bar), float(self.opened), float(placed)]
                fee = commission(units, adjusted, config.commission, fixed)
                self.fills.append((_ENTRY, row, fill_bar, units, adjusted, fee, long, placed, placed))
                self.cash -= fee
        self._mark(bar)

    def close_at_end(self, last: int) -> None:
        """Close the trades still open after the last bar, newest first, as the event loop (and backtesting.py)."""
        open_trade = self.open_trade
        if all(trade is None for trade in open_trade):
            return
        for row in sorted(range(len(open_trade)), key=lambda row: -_opened(open_trade[row])):
            trade = open_trade[row]
            if trade is None:
                continue
            exit_bar, price = end_price(self.opens[row], self.values[row], last, self.config.trade_on_close)
            self._close(row, trade, price, exit_bar, ExitReason.END, -1)
            open_trade[row] = None
        self._mark(last)

    def _close(self, row: int, trade: list[float], price: float, bar: int, reason: ExitReason, closing: int) -> None:
        config = self.config
        size, entry = trade[0], trade[1]
        lot = (row, size, entry, int(trade[2]), int(trade[4]))
        args = (price, bar, reason, closing, config.commission, config.fixed_commission)
        fee = _close(self.lots, self.fills, self.symbols[row], lot, *args)
        self.cash = settle(self.cash, size, entry, price, fee)

    def _mark(self, bar: int) -> None:
        units = tuple(trade[0] if trade is not None else 0.0 for trade in self.open_trade)
        basis = tuple(trade[0] * trade[1] if trade is not None else 0.0 for trade in self.open_trade)
        record(self.marks, (bar, self.cash, units, basis))


def _opened(trade: list[float] | None) -> float:
    """When `trade` was opened, as a count of account changes before it (open trades sort by it)."""
    return -1.0 if trade is None else trade[3]


def _close(
    lots: list[Lot],
    fills: list[RawFill],
    symbol: str,
    trade: tuple[int, float, float, int, int],
    price: float,
    bar: int,
    reason: ExitReason,
    closing: int,
    rate: float,
    fixed: float,
) -> float:
    """Record the close of `trade` (row, size, entry price, entry bar, decision bar) at `price` on `bar`, for
    the decision on bar `closing` (-1: after the last bar); return the exit's commission."""
    row, size, entry, entry_bar, decided = trade
    quantity = abs(size)
    exit_fee = commission(quantity, price, rate, fixed)
    entry_fee = commission(quantity, entry, rate, fixed)
    total = trade_commission(entry_fee, exit_fee)
    lineage = (row, closing)
    # ClosedPart, not its alias Lot: calling a subscripted generic goes through typing, several times slower.
    part = ClosedPart(
        symbol,
        entry_bar,
        bar,
        size,
        entry,
        price,
        total,
        entry_fee,
        exit_fee,
        reason,
        None,
        None,
        None,
        decided,
        lineage,
    )
    lots.append(part)
    fills.append((_END if closing < 0 else _CLOSE, row, bar, quantity, price, exit_fee, size < 0, closing, decided))
    return exit_fee
