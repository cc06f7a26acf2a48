"""The one fill and cost rule of the engine: fill prices, the spread, commissions, affordable units, and
the closed trade a fill makes.

The event loop (`neuraltrade.backtest.broker`) and the fast path (`neuraltrade.backtest.fast`) both call
these functions, so the two cannot drift apart; a property test holds them equal trade for trade, ids
included. The rules are backtesting.py 0.6's (docs/backtesting.md), and the order in which each sum is
associated is part of the rule: floating-point addition is not associative, and results are compared
to the last bit.

The functions are small and take plain floats: the fast path calls them once or twice per fill.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

from neuraltrade.backtest.identity import OrderName
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.types import Fill, OrderSide

# -- fill prices ---------------------------------------------------------------------------------------


def market_price(opens: list[float], closes: list[float], bar: int, on_close: bool) -> float:
    """The price a market order fills at on `bar`: its open, or with `on_close` the close before it.

    `opens` and `closes` are one symbol's prices on the timeline (`closes` its last known close).
    """
    return closes[bar - 1] if on_close and bar > 0 else opens[bar]


def stop_price(price: float, stop: float, buying: bool) -> float:
    """A triggered stop fills at the worse of `price` (the open, or the market price) and the stop."""
    return max(price, stop) if buying else min(price, stop)


def limit_price(price: float, limit: float, buying: bool) -> float:
    """A reached limit fills at the better of `price` (the open, or a stop-limit's stop) and the limit."""
    return min(price, limit) if buying else max(price, limit)


def end_price(opens: list[float], closes: list[float], last: int, on_close: bool) -> tuple[int, float]:
    """The bar and price at which a trade still open after the last bar is closed (``close_at_end``).

    As backtesting.py's ``finalize_trades``: the last bar's open, or with `on_close` the close of the bar
    before it (the last close where the symbol has no last bar).
    """
    on_close = on_close and last > 0
    exit_bar = last - 1 if on_close else last
    price = opens[last]
    if on_close or price != price:
        price = closes[exit_bar]
    return exit_bar, price


def entry_price(price: float, spread: float, buying: bool) -> float:
    """The price an entry pays: the quote moved against the trader by the relative `spread`."""
    return price * (1.0 + spread) if buying else price * (1.0 - spread)


# -- costs ---------------------------------------------------------------------------------------------


def commission(quantity: float, price: float, rate: float, fixed: float) -> float:
    """The commission of one fill: `fixed` plus `rate` of the notional (associated as written)."""
    return fixed + quantity * price * rate


def unit_cost(price: float, paid: float, rate: float) -> float:
    """Cash one unit of an entry takes: the price `paid` (spread included) plus the commission on `price`."""
    return paid + price * rate


def trade_commission(entry_commission: float, exit_commission: float) -> float:
    """What a closed trade paid in all: exit commission plus entry commission, in that order."""
    return exit_commission + entry_commission


def settle(cash: float, size: float, entry: float, exit: float, exit_commission: float) -> float:
    """Cash after closing `size` units entered at `entry` at `exit` (as backtesting.py: cash += pl - fee)."""
    return cash + (size * (exit - entry) - exit_commission)


# -- sizing --------------------------------------------------------------------------------------------


def free_margin(cash: float, held: Iterable[tuple[float, float, float]], leverage: float) -> float:
    """Equity not tied up as margin: cash plus open profit less each position's margin, at least 0.

    `held` gives each open trade as (signed units, entry price, mark price).
    """
    equity, used = cash, 0.0
    for size, entry, mark in held:
        equity += size * (mark - entry)
        used += abs(size) * mark / leverage
    return max(0.0, equity - used)


def affordable_units(buying_power: float, fraction: float, per_unit: float, fixed: float, fractional: bool) -> float:
    """Units that `fraction` of `buying_power` buys at `per_unit` after the fixed fee (whole unless `fractional`)."""
    budget = buying_power * fraction - fixed
    return budget / per_unit if fractional else float(budget // per_unit)


def affords(units: float, per_unit: float, fixed: float, buying_power: float) -> bool:
    """Whether `units` at `per_unit`, plus the fixed fee, fit in `buying_power`."""
    return units * per_unit + fixed <= buying_power


# -- records -------------------------------------------------------------------------------------------


def closed_trade(
    symbol: str,
    entry_bar: int,
    exit_bar: int,
    entry_time: datetime,
    exit_time: datetime,
    size: float,
    entry_price: float,
    exit_price: float,
    entry_commission: float,
    exit_commission: float,
    signal_id: uuid.UUID | None,
    entry_order_id: uuid.UUID,
    exit_order_id: uuid.UUID,
    entry_fill_id: uuid.UUID,
    exit_fill_id: uuid.UUID,
    reason: ExitReason,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    tag: str | None = None,
    decision_bar: int | None = None,
) -> ClosedTrade:
    """The closed trade (or closed part) of `size` units entered and exited as given, with its lineage."""
    return ClosedTrade(
        symbol,
        entry_bar,
        exit_bar,
        entry_time,
        exit_time,
        size,
        entry_price,
        exit_price,
        trade_commission(entry_commission, exit_commission),
        signal_id,
        entry_order_id,
        exit_order_id,
        entry_fill_id,
        exit_fill_id,
        reason,
        stop_loss,
        take_profit,
        tag,
        decision_bar,
    )


def fill_record(
    order_id: uuid.UUID,
    sequence: int,
    timestamp: datetime,
    symbol: str,
    buying: bool,
    quantity: float,
    price: float,
    fee: float,
) -> Fill:
    """Fill `sequence` of order `order_id`: `quantity` units at `price`, paying `fee`."""
    return Fill(
        id=Fill.id_for(order_id, sequence),
        order_id=order_id,
        sequence=sequence,
        timestamp=timestamp,
        symbol=symbol,
        side=OrderSide.BUY if buying else OrderSide.SELL,
        quantity=quantity,
        price=price,
        commission=fee,
    )


LineageT = TypeVar("LineageT")
#: The broker's lineage of a closed part: the names of the orders that opened and closed it, each with the
#: sequence of its fill.
NamedLineage = tuple[OrderName, int, OrderName, int]


class ClosedPart(NamedTuple, Generic[LineageT]):
    """A closed trade (or part) as it is simulated: its figures (what statistics read, `TradeFigures`) and
    what its ids will derive from, `lineage` (the broker's `NamedLineage`; the fast path's own).
    `closed_trade_of` makes a broker's part a `ClosedTrade` record."""

    symbol: str
    entry_bar: int
    exit_bar: int
    size: float
    entry_price: float
    exit_price: float
    commission: float
    entry_fee: float
    exit_fee: float
    reason: ExitReason
    stop_loss: float | None
    take_profit: float | None
    tag: str | None
    decision_bar: int | None
    lineage: LineageT


class Execution(NamedTuple):
    """A fill as the broker records it: fill `sequence` of the order `name`, on timeline `bar`."""

    name: OrderName
    sequence: int
    bar: int
    symbol: str
    buying: bool
    quantity: float
    price: float
    fee: float


def closed_trade_of(part: ClosedPart[Any], lineage: NamedLineage, times: Sequence[datetime]) -> ClosedTrade:
    """The `ClosedTrade` record of `part`, its ids derived from `lineage` (the names of its orders)."""
    entry_name, entry_fill, exit_name, exit_fill = lineage
    entry, exit = entry_name.order_id, exit_name.order_id
    return closed_trade(
        part.symbol,
        part.entry_bar,
        part.exit_bar,
        times[part.entry_bar],
        times[part.exit_bar],
        part.size,
        part.entry_price,
        part.exit_price,
        part.entry_fee,
        part.exit_fee,
        entry_name.signal_id,
        entry,
        exit,
        Fill.id_for(entry, entry_fill),
        Fill.id_for(exit, exit_fill),
        part.reason,
        part.stop_loss,
        part.take_profit,
        part.tag,
        part.decision_bar,
    )


def fill_of(execution: Execution, times: Sequence[datetime]) -> Fill:
    """The `Fill` record of `execution`."""
    return fill_record(
        execution.name.order_id,
        execution.sequence,
        times[execution.bar],
        execution.symbol,
        execution.buying,
        execution.quantity,
        execution.price,
        execution.fee,
    )
