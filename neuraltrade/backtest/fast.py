"""The engine's fast path: market orders from signals with exclusive orders, decision by decision.

When nothing but the strategy's decisions can change the account (market orders, exclusive orders, no
exit levels, no volume cap, no sizer or risk check), the event loop has work only on the bar after each
decision. This path walks those decisions alone with plain floats, under exactly the fill and sizing
rules of `neuraltrade.backtest.broker`; a property test holds it equal to the event loop, trade for trade
and bar for bar. It returns None, and the event loop runs instead, when an account runs out of money.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from datetime import datetime

import numpy as np

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.ledger import Mark, equity_curve, record
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.result import Decision
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.strategies.base import SignalFrame

#: A closed trade before it becomes a `ClosedTrade`: (row, entry bar, exit bar, size, entry price, exit price,
#: commission, exit reason, decision bar).
Closed = tuple[int, int, int, float, float, float, float, ExitReason, int]


def fast_path_applies(config: BacktestConfig, frames: Mapping[str, SignalFrame]) -> bool:
    """Whether `run_decisions` reproduces the event loop for this configuration and these signals."""
    if not config.exclusive_orders or config.max_participation is not None:
        return False
    for frame in frames.values():
        for exits in (frame.stop_loss, frame.take_profit, frame.trailing_stop, frame.entry_limit, frame.entry_stop):
            if exits is not None and not bool(np.isnan(exits).all()):
                return False
    return True


def run_decisions(
    market: MarketData, config: BacktestConfig, frames: Mapping[str, SignalFrame]
) -> tuple[np.ndarray, list[ClosedTrade], list[tuple[int, int, float, float]], list[Decision]] | None:
    """Simulate the decisions of `frames`; return equity, closed trades, open trades and decisions.

    Open trades come back as (row, entry bar, size, entry price). None means the account ran out of
    money, which only the event loop handles.
    """
    symbols = market.symbols
    rows = len(symbols)
    count = len(market)
    prices = market.lists
    opens, values = prices["open"], prices["valuation"]
    times = market.datetimes
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
        return _run_single(market, config, pending)
    pending.sort(key=lambda item: (item[1], item[2]))
    cash = config.cash
    # Per row: open trade as [size, entry price, entry bar, opening order] or None.
    open_trade: list[list[float] | None] = [None] * rows
    closed: list[Closed] = []
    decisions: list[Decision] = []
    marks: list[Mark] = []
    # Process placements and fills in time order: an order placed on bar d fills on its symbol's next bar.
    # Orders awaiting their fill as (fill bar, placement, row, placed bar, target); a symbol has at most one,
    # because its next decision comes no earlier than its next bar, where the order fills.
    queue: list[tuple[int, int, int, int, float]] = []
    working = [False] * rows
    opened = [0]  # trades opened so far: open trades are kept and closed in that order
    for sequence, (fill_bar, placed_bar, row, symbol_bar, target, confidence) in enumerate(pending):
        # Fills due before this placement happen first (they are on earlier bars).
        while queue and queue[0][0] <= placed_bar:
            cash = _fill(heapq.heappop(queue), cash, open_trade, closed, marks, opens, values, config, working, opened)
        held = open_trade[row]
        side = 0.0 if held is None else held[0]
        if not working[row] and ((target > 0 and side > 0) or (target < 0 and side < 0) or (target == 0 and side == 0)):
            continue
        decisions.append(Decision(symbols[row], placed_bar, symbol_bar, target, confidence))
        if fill_bar >= count:
            continue  # decided on the symbol's last bar: it never fills
        heapq.heappush(queue, (fill_bar, sequence, row, placed_bar, target))
        working[row] = True
    while queue:
        cash = _fill(heapq.heappop(queue), cash, open_trade, closed, marks, opens, values, config, working, opened)
    last = count - 1
    if config.close_at_end and any(trade is not None for trade in open_trade):
        exit_bar = last - 1 if config.trade_on_close and last > 0 else last
        # Newest first, as the event loop (and backtesting.py) close them.
        for row in sorted(range(rows), key=lambda row: -_opened(open_trade[row])):
            trade = open_trade[row]
            if trade is None:
                continue
            price = opens[row][last]
            if config.trade_on_close or price != price:
                price = values[row][exit_bar]
            cash = _close(row, trade, price, exit_bar, ExitReason.END, cash, closed, config)
            open_trade[row] = None
        _mark(marks, last, cash, open_trade)
    equity = equity_curve(market, marks, config.cash)
    if bool((equity <= 0).any()):
        return None
    trades = [_closed_trade(market, item, times) for item in closed]
    still_open = [
        (row, int(trade[2]), trade[0], trade[1])
        for row, trade in sorted(enumerate(open_trade), key=lambda item: _opened(item[1]))
        if trade is not None
    ]
    return equity, trades, still_open, decisions


def _run_single(
    market: MarketData, config: BacktestConfig, pending: list[tuple[int, int, int, int, float, float]]
) -> tuple[np.ndarray, list[ClosedTrade], list[tuple[int, int, float, float]], list[Decision]] | None:
    """`run_decisions` for one symbol, where each order fills before the next decision: one flat loop.

    The fill and close rules are `_fill`'s and `_close`'s, written out in the loop: with one symbol a call
    per fill was a quarter of the run, and sweeps run this thousands of times. The property test against
    the event loop covers both copies.
    """
    symbol = market.symbols[0]
    count = len(market)
    opens, values = market.lists["open"][0], market.lists["valuation"][0]
    commission, fixed, spread = config.commission, config.fixed_commission, config.spread
    leverage, order_size, fractional, on_close = (
        config.leverage,
        config.order_size,
        config.fractional,
        config.trade_on_close,
    )
    cash = config.cash
    size = entry = 0.0  # the open trade: signed units (0: none) and entry price
    entry_bar = decided = 0
    closed: list[Closed] = []
    decisions: list[Decision] = []
    marks: list[Mark] = []
    waiting: tuple[int, int, float] | None = None  # (fill bar, placed bar, target)
    for fill_bar, placed_bar, _, symbol_bar, target, confidence in [*pending, (count, count, 0, 0, math.nan, 0.0)]:
        if waiting is not None and waiting[0] <= placed_bar:
            bar, placed, wanted = waiting
            waiting = None
            price = values[bar - 1] if on_close and bar > 0 else opens[bar]
            filled_at = placed if on_close else bar
            if size:
                quantity = abs(size)
                exit_commission = fixed + quantity * price * commission
                total = exit_commission + fixed + quantity * entry * commission
                closed.append((0, entry_bar, filled_at, size, entry, price, total, ExitReason.SIGNAL, decided))
                cash = cash + (size * (price - entry) - exit_commission)
                size = 0.0
            if wanted != 0:
                long = wanted > 0
                adjusted = price * (1.0 + spread) if long else price * (1.0 - spread)
                per_unit = adjusted + price * commission
                available = max(0.0, cash) * leverage
                if order_size < 1:
                    budget = available * order_size - fixed
                    units = budget / per_unit if fractional else float(budget // per_unit)
                else:
                    units = order_size
                if units > 0 and units * per_unit + fixed <= available:
                    size, entry, entry_bar, decided = (units if long else -units), adjusted, filled_at, placed
                    cash -= fixed + units * adjusted * commission
            record(marks, (bar, cash, (size,), (size * entry,)))
        if target != target:  # the sentinel after the last decision
            break
        if waiting is None and ((target > 0 and size > 0) or (target < 0 and size < 0) or (target == 0 and size == 0)):
            continue
        decisions.append(Decision(symbol, placed_bar, symbol_bar, target, confidence))
        if fill_bar < count:
            waiting = (fill_bar, placed_bar, target)
    last = count - 1
    if config.close_at_end and size:
        exit_bar = last - 1 if on_close and last > 0 else last
        price = opens[last]
        if on_close or price != price:
            price = values[exit_bar]
        quantity = abs(size)
        exit_commission = fixed + quantity * price * commission
        total = exit_commission + fixed + quantity * entry * commission
        closed.append((0, entry_bar, exit_bar, size, entry, price, total, ExitReason.END, decided))
        cash = cash + (size * (price - entry) - exit_commission)
        size = 0.0
        record(marks, (last, cash, (0.0,), (0.0,)))
    equity = equity_curve(market, marks, config.cash)
    if bool((equity <= 0).any()):
        return None
    times = market.datetimes
    trades = [_closed_trade(market, item, times) for item in closed]
    still_open = [(0, entry_bar, size, entry)] if size else []
    return equity, trades, still_open, decisions


def _fill(
    item: tuple[int, int, int, int, float],
    cash: float,
    open_trade: list[list[float] | None],
    closed: list[Closed],
    marks: list[Mark],
    opens: list[list[float]],
    values: list[list[float]],
    config: BacktestConfig,
    working: list[bool],
    opened: list[int],
) -> float:
    bar, _, row, placed, target = item
    working[row] = False
    on_close = config.trade_on_close
    price = values[row][bar - 1] if on_close and bar > 0 else opens[row][bar]
    fill_bar = placed if on_close else bar
    trade = open_trade[row]
    if trade is not None:
        cash = _close(row, trade, price, fill_bar, ExitReason.SIGNAL, cash, closed, config)
        open_trade[row] = None
    if target != 0:
        long = target > 0
        adjusted = price * (1.0 + config.spread) if long else price * (1.0 - config.spread)
        per_unit = adjusted + price * config.commission
        # Margin: cash plus other symbols' open trades at their last close before this bar, minus their margin.
        equity, used = cash, 0.0
        for other, held in enumerate(open_trade):
            if held is not None:
                mark = values[other][bar - 1] if bar else held[1]
                equity += held[0] * (mark - held[1])
                used += abs(held[0]) * mark / config.leverage
        available = max(0.0, equity - used) * config.leverage
        size = config.order_size
        if size < 1:
            budget = available * size - config.fixed_commission
            units = budget / per_unit if config.fractional else float(budget // per_unit)
        else:
            units = size
        if units > 0 and units * per_unit + config.fixed_commission <= available:
            signed = units if long else -units
            opened[0] += 1
            open_trade[row] = [signed, adjusted, float(fill_bar), float(opened[0]), float(placed)]
            cash -= config.fixed_commission + units * adjusted * config.commission
    _mark(marks, bar, cash, open_trade)
    return cash


def _opened(trade: list[float] | None) -> float:
    """When `trade` was opened, as a count of account changes before it (open trades sort by it)."""
    return -1.0 if trade is None else trade[3]


def _close(
    row: int,
    trade: list[float],
    price: float,
    bar: int,
    reason: ExitReason,
    cash: float,
    closed: list[Closed],
    config: BacktestConfig,
) -> float:
    size, entry, entry_bar, decided = trade[0], trade[1], trade[2], int(trade[4])
    quantity = abs(size)
    exit_commission = config.fixed_commission + quantity * price * config.commission
    entry_commission = config.fixed_commission + quantity * entry * config.commission
    closed.append((row, int(entry_bar), bar, size, entry, price, exit_commission + entry_commission, reason, decided))
    # Associated as backtesting.py does (cash += pl - commission), so equity agrees to the last bit.
    return cash + (size * (price - entry) - exit_commission)


def _mark(marks: list[Mark], bar: int, cash: float, open_trade: list[list[float] | None]) -> None:
    units = tuple(trade[0] if trade is not None else 0.0 for trade in open_trade)
    basis = tuple(trade[0] * trade[1] if trade is not None else 0.0 for trade in open_trade)
    record(marks, (bar, cash, units, basis))


def _closed_trade(market: MarketData, item: Closed, times: list[datetime]) -> ClosedTrade:
    row, entry_bar, exit_bar, size, entry, price, commission, reason, decided = item
    return ClosedTrade(
        symbol=market.symbols[row],
        entry_bar=entry_bar,
        exit_bar=exit_bar,
        entry_time=times[entry_bar],
        exit_time=times[exit_bar],
        size=size,
        entry_price=entry,
        exit_price=price,
        commission=commission,
        exit_reason=reason,
        decision_bar=decided,
    )
