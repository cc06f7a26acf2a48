"""The simulated broker: working orders and open trades filled against bars, for backtests and paper trading.

Fill rules (backtesting.py 0.6's, so that results compare one for one; docs/backtesting.md):

- a market order fills at the open of the first bar after it was placed; with ``trade_on_close`` at the
  close of the bar it was placed on (the previous close);
- a stop order becomes a market order once a bar reaches its stop, filling at the worse of the open and
  the stop; a limit order fills at the better of the open and the limit once a bar reaches it; a
  stop-limit whose limit is reached on the bar that triggers the stop is assumed to need the limit
  *before* the stop and waits (it stays a limit order);
- an entry fills at the quoted price moved by the spread; the commission is charged on the notional at
  entry and again at exit and never folded into the price (the rules themselves live in
  `neuraltrade.backtest.fills`, shared with the fast path);
- stop-loss, take-profit and trailing stops are checked before any other order of the bar, from the bar
  after the entry (from the entry bar itself after a market entry); when one bar reaches both a stop
  and the take-profit, `SameBarExit` decides;
- a fill may take at most ``max_participation`` of the bar's volume; the rest keeps working.

Every order is named where it is made (`neuraltrade.backtest.identity.OrderName`: the client order id
its trader gave, or the one its decision derives) and carries its signal; its trades carry its name.
Exits the broker makes itself (stop loss, take profit, trailing stop, close at end, liquidation) are
orders too, placed and filled at once, so the events name every order a closed trade names. Each fill
is one execution of one order (a `Fill` record once its ids are read): an entry filled in parts opens
one trade per fill, and an order netting against open trades fills once per trade it closes and once
for the part it opens, each with its own commission. Closed trades and fills are kept as figures and
names, and become `ClosedTrade` and `Fill` records (ids derived) when read.

Unlike backtesting.py, which values open trades at the current bar's close while sizing an order filled
at its open, sizing here values them at prices known when the order fills (the fill price for the
symbol filled, the last close for the others).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

from neuraltrade.backtest.book import BrokerEvent, BrokerEventKind, OpenTrade, WorkingOrder
from neuraltrade.backtest.config import BacktestConfig, SameBarExit
from neuraltrade.backtest.fills import (
    ClosedPart,
    Execution,
    NamedLineage,
    affordable_units,
    affords,
    closed_trade_of,
    commission,
    end_price,
    entry_price,
    fill_of,
    free_margin,
    limit_price,
    market_price,
    settle,
    stop_price,
    trade_commission,
    unit_cost,
)
from neuraltrade.backtest.identity import OrderName, SignalName
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.errors import InvalidOrder
from neuraltrade.types import Fill

_CONTINGENT = (ExitReason.STOP_LOSS, ExitReason.TAKE_PROFIT, ExitReason.TRAILING_STOP)


@dataclass(eq=False)
class SimulatedBroker:
    """Cash, open trades and working orders of one account over `market`, filled by the rules above.

    `closed` and `executions` keep the closed trades and the fills as figures and names;
    `closed_trades` and `fill_records` give them as records.
    """

    config: BacktestConfig
    market: MarketData
    cash: float = field(init=False)
    trades: list[OpenTrade] = field(init=False, default_factory=list)
    orders: list[WorkingOrder] = field(init=False, default_factory=list)
    closed: list[ClosedPart[NamedLineage]] = field(init=False, default_factory=list)
    events: list[BrokerEvent] = field(init=False, default_factory=list)
    executions: list[Execution] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.cash = self.config.cash
        prices = self.market.lists
        self._open, self._high, self._low = prices["open"], prices["high"], prices["low"]
        self._close, self._volume, self._value = prices["close"], prices["volume"], prices["valuation"]
        self._times = self.market.datetimes
        self._spread = self.config.spread
        self._commission = self.config.commission
        self._fixed = self.config.fixed_commission
        self._leverage = self.config.leverage
        self._trades: list[ClosedTrade] = []
        self._fills: list[Fill] = []

    def closed_trades(self) -> list[ClosedTrade]:
        """The closed trades (and parts) so far, as records with their ids."""
        times = self._times
        self._trades.extend(closed_trade_of(part, part.lineage, times) for part in self.closed[len(self._trades) :])
        return list(self._trades)

    def fill_records(self) -> list[Fill]:
        """Every fill so far, as records with their ids."""
        times = self._times
        self._fills.extend(fill_of(execution, times) for execution in self.executions[len(self._fills) :])
        return list(self._fills)

    # -- placing -------------------------------------------------------------------------------------

    def submit(self, order: WorkingOrder) -> WorkingOrder:
        """Queue `order`; with exclusive orders an entry first cancels the symbol's orders and closes its trades."""
        if order.name is None:
            raise InvalidOrder(f"order of {order.symbol!r} for {order.size!r} has no name (no client order id)")
        if not math.isfinite(order.size) or order.size == 0:
            raise InvalidOrder(f"order {order.client_order_id!r} has size {order.size!r}")
        units = order.units if order.units is not None else (abs(order.size) if abs(order.size) >= 1 else None)
        if units is not None and not self.config.fractional and not float(units).is_integer():
            raise InvalidOrder(
                f"order {order.client_order_id!r} asks for {units!r} units, not a whole number; "
                "fractional units need BacktestConfig(fractional=True)"
            )
        self._check_levels(order)
        if order.parent is None and self.config.exclusive_orders:
            self.cancel_orders(order.symbol, order.placed_bar, "replaced by a new order (exclusive orders)")
            self.close_trades(order.symbol, order.placed_bar, order.name.signal)
        self.orders.append(order)
        self.events.append(BrokerEvent(order.placed_bar, BrokerEventKind.PLACED, order, abs(order.size)))
        return order

    def close_trades(self, symbol: str, bar: int, signal: SignalName | uuid.UUID | None) -> None:
        """Queue market orders closing every open trade of `symbol`, for the decision of `signal`."""
        for trade in self.trades:
            if trade.symbol == symbol:
                close = self._exit_order(trade, bar, -trade.size, ExitReason.SIGNAL, signal)
                self.orders.append(close)
                self.events.append(BrokerEvent(bar, BrokerEventKind.PLACED, close, abs(trade.size)))

    def _exit_order(
        self,
        trade: OpenTrade,
        bar: int,
        size: float,
        reason: ExitReason,
        signal: SignalName | uuid.UUID | None,
        *,
        stop: float | None = None,
        limit: float | None = None,
    ) -> WorkingOrder:
        """The order closing `size` units of `trade` for `reason`, named for `signal` and the trade's entry."""
        assert trade.entry is not None
        contingent = reason in _CONTINGENT
        earlier = trade.contingent_exits if contingent else 0
        if contingent:
            trade.contingent_exits += 1
        name = OrderName.exit(signal, reason, trade.entry, trade.entry_fill_sequence, earlier)
        return WorkingOrder(
            trade.symbol, trade.row, size, bar, limit=limit, stop=stop, parent=trade, name=name, triggered=True
        )

    def cancel_orders(self, symbol: str, bar: int, reason: str) -> None:
        """Cancel every working order of `symbol` that is not closing a trade."""
        kept = []
        for order in self.orders:
            if order.symbol == symbol and order.parent is None:
                self.events.append(BrokerEvent(bar, BrokerEventKind.CANCELLED, order, reason=reason))
            else:
                kept.append(order)
        self.orders = kept

    def expire_all(self, bar: int, reason: str) -> None:
        """Expire every working order (at the end of the data)."""
        for order in self.orders:
            self.events.append(BrokerEvent(bar, BrokerEventKind.EXPIRED, order, reason=reason))
        self.orders = []

    def _check_levels(self, order: WorkingOrder) -> None:
        reference = order.limit or order.stop
        if reference is None:
            return
        below, above = (order.stop_loss, order.take_profit) if order.is_long else (order.take_profit, order.stop_loss)
        if (below is not None and below >= reference) or (above is not None and above <= reference):
            side = "long" if order.is_long else "short"
            raise InvalidOrder(
                f"{side} order {order.client_order_id or order.symbol!r} needs stop-loss and take-profit on either "
                f"side of its price {reference}: stop_loss={order.stop_loss}, take_profit={order.take_profit}"
            )

    # -- valuing -------------------------------------------------------------------------------------

    def equity(self, bar: int) -> float:
        """Cash plus the open trades valued at each symbol's last close at `bar`."""
        value = self._value
        return self.cash + sum(trade.size * (value[trade.row][bar] - trade.entry_price) for trade in self.trades)

    def _margin_available(self, bar: int, row: int, price: float) -> float:
        if not self.trades:
            return free_margin(self.cash, (), self._leverage)
        value = self._value
        held = [
            (
                trade.size,
                trade.entry_price,
                price if trade.row == row else value[trade.row][bar - 1] if bar else trade.entry_price,
            )
            for trade in self.trades
        ]
        return free_margin(self.cash, held, self._leverage)

    def position(self, symbol: str) -> float:
        """Signed units of `symbol` held."""
        return sum(trade.size for trade in self.trades if trade.symbol == symbol)

    # -- filling -------------------------------------------------------------------------------------

    def process(self, bar: int) -> None:
        """Fill, at `bar`, the exits and orders its prices reach; expire orders past their last bar."""
        if self.trades:
            for trade in list(self.trades):
                if trade.stop_loss is not None or trade.take_profit is not None or trade.trailing_level is not None:
                    self._check_exits(trade, bar)
        for order in list(self.orders):
            if order not in self.orders:
                continue
            if order.expires_bar is not None and bar > order.expires_bar:
                self.orders.remove(order)
                self.events.append(BrokerEvent(bar, BrokerEventKind.EXPIRED, order, reason="time in force ended"))
                continue
            self._process_order(order, bar)

    def _process_order(self, order: WorkingOrder, bar: int) -> None:
        row = order.row
        open_price = self._open[row][bar]
        if open_price != open_price:  # NaN: the symbol has no bar here
            return
        high, low = self._high[row][bar], self._low[row][bar]
        long = order.is_long
        stop = None if order.triggered else order.stop
        if stop is not None:
            if not (high >= stop if long else low <= stop):
                return
            order.triggered = True  # a triggered stop order becomes a market (or limit) order for good
        market = order.limit is None and stop is None
        if order.limit is not None:
            limit = order.limit
            reached = low <= limit if long else high >= limit
            if not reached or (stop is not None and (limit <= stop if long else limit >= stop)):
                return
            price = limit_price(open_price if stop is None else stop, limit, long)
        else:
            price = market_price(self._open[row], self._value[row], bar, self.config.trade_on_close)
            if stop is not None:
                price = stop_price(price, stop, long)
        # A close-priced fill belongs to the bar whose close it took: the decision bar, then (for the rest of a
        # partly filled order) the bar before this one.
        on_close = market and self.config.trade_on_close
        fill_bar = (order.placed_bar if order.filled == 0 else bar - 1) if on_close else bar
        if order.parent is not None:
            self._fill_close(order, bar, fill_bar, price)
        else:
            self._fill_entry(order, bar, fill_bar, price, market)

    def _participation_cap(self, row: int, bar: int) -> float:
        share = self.config.max_participation
        if share is None:
            return math.inf
        cap = self._volume[row][bar] * share
        return cap if self.config.fractional else float(math.floor(cap))

    def _fill_close(self, order: WorkingOrder, bar: int, fill_bar: int, price: float) -> None:
        trade = order.parent
        assert trade is not None
        if trade not in self.trades:
            self.orders.remove(order)
            reason = "its trade was already closed"
            self.events.append(BrokerEvent(bar, BrokerEventKind.CANCELLED, order, reason=reason))
            return
        wanted = min(abs(trade.size), abs(order.size) - order.filled)
        quantity = min(wanted, self._participation_cap(order.row, bar))
        if quantity <= 0:
            return
        fill = self.reduce_trade(trade, quantity, price, fill_bar, ExitReason.SIGNAL, order)
        order.filled += quantity
        self._report(order, bar, [fill], done=quantity >= wanted)

    def _report(self, order: WorkingOrder, bar: int, fills: list[Execution], *, done: bool) -> None:
        """One event per fill of `order` at `bar`: the last one says whether the order is done."""
        for number, fill in enumerate(fills, 1):
            kind = BrokerEventKind.FILLED if done and number == len(fills) else BrokerEventKind.PARTIALLY_FILLED
            self.events.append(BrokerEvent(bar, kind, order, fill.quantity, fill.price, sequence=fill.sequence))
        if done:
            self.orders.remove(order)

    def _fill_entry(self, order: WorkingOrder, bar: int, fill_bar: int, price: float, market: bool) -> None:
        row, long = order.row, order.is_long
        adjusted = entry_price(price, self._spread, long)
        per_unit = unit_cost(price, adjusted, self._commission)
        units = order.units
        if units is None:
            if abs(order.size) < 1:
                buying_power = self._margin_available(bar, row, price) * self._leverage
                units = affordable_units(buying_power, abs(order.size), per_unit, self._fixed, self.config.fractional)
                if units <= 0:
                    self.orders.remove(order)
                    reason = "insufficient margin"
                    self.events.append(BrokerEvent(bar, BrokerEventKind.CANCELLED, order, reason=reason))
                    return
            else:
                units = abs(order.size)
            order.units = units
        remaining = units - order.filled
        quantity = min(remaining, self._participation_cap(row, bar))
        if quantity <= 0:
            return
        signed = quantity if long else -quantity
        # Netting: an order against open trades closes them first, oldest first, at the unadjusted price.
        need = signed
        fills = []
        for trade in list(self.trades):
            if trade.symbol != order.symbol or (trade.size > 0) == long:
                continue
            closing = min(abs(trade.size), abs(need))
            fills.append(self.reduce_trade(trade, closing, price, fill_bar, ExitReason.SIGNAL, order))
            need += closing if need < 0 else -closing
            if need == 0:
                break
        buying_power = self._margin_available(bar, row, price) * self._leverage if need else 0.0
        if need and not affords(abs(need), per_unit, self._fixed, buying_power):
            closed = quantity - abs(need)
            if closed > 0:  # the part that closed open trades did fill; only the rest is refused
                order.filled += closed
                self._report(order, bar, fills, done=False)
            self.orders.remove(order)
            self.events.append(BrokerEvent(bar, BrokerEventKind.CANCELLED, order, reason="insufficient margin"))
            return
        opened: OpenTrade | None = None
        if need:
            opened = self._open_trade(order, need, adjusted, fill_bar)
            fills.append(self.executions[-1])
        order.filled += quantity
        self._report(order, bar, fills, done=order.filled >= units)
        if (
            opened is not None
            and market
            and (opened.stop_loss is not None or opened.take_profit is not None or opened.trailing_level)
        ):
            self._check_exits(opened, bar)

    def _open_trade(self, order: WorkingOrder, size: float, price: float, bar: int) -> OpenTrade:
        long = size > 0
        stop_loss, take_profit = order.stop_loss, order.take_profit
        if order.stop_loss_distance is not None:
            stop_loss = price * (1.0 - order.stop_loss_distance if long else 1.0 + order.stop_loss_distance)
        if order.take_profit_distance is not None:
            take_profit = price * (1.0 + order.take_profit_distance if long else 1.0 - order.take_profit_distance)
        trailing = None
        if order.trailing_distance is not None:
            trailing = price * (1.0 - order.trailing_distance if long else 1.0 + order.trailing_distance)
        fee = commission(abs(size), price, self._commission, self._fixed)
        fill = self._execute(order, bar, abs(size), price, fee)
        trade = OpenTrade(
            order.symbol,
            order.row,
            size,
            price,
            bar,
            stop_loss,
            take_profit,
            order.trailing_distance,
            trailing,
            order.tag,
            order.name,
            self._fixed,
            order.decision_bar,
            fill.sequence,
        )
        self.trades.append(trade)
        self.cash -= fee
        return trade

    def _execute(self, order: WorkingOrder, bar: int, quantity: float, price: float, fee: float) -> Execution:
        """Record the next fill of `order`: `quantity` units at `price` on `bar`, paying `fee`."""
        assert order.name is not None
        fill = Execution(order.name, order.fills, bar, order.symbol, order.size > 0, quantity, price, fee)
        order.fills += 1
        self.executions.append(fill)
        return fill

    def reduce_trade(
        self, trade: OpenTrade, quantity: float, price: float, bar: int, reason: ExitReason, order: WorkingOrder
    ) -> Execution:
        """Close `quantity` units of `trade` at `price` by a fill of `order`; the rest of the trade stays open."""
        sign = 1.0 if trade.size > 0 else -1.0
        closed_size = sign * quantity
        exit_fee = commission(quantity, price, self._commission, self._fixed)
        # The entry's fixed fee was paid once, at the open: it goes with the first part closed.
        entry_fee = commission(quantity, trade.entry_price, self._commission, trade.entry_fee)
        trade.entry_fee = 0.0
        self.cash = settle(self.cash, closed_size, trade.entry_price, price, exit_fee)
        fill = self._execute(order, bar, quantity, price, exit_fee)
        assert trade.entry is not None and order.name is not None
        self.closed.append(
            ClosedPart(
                trade.symbol,
                trade.entry_bar,
                bar,
                closed_size,
                trade.entry_price,
                price,
                trade_commission(entry_fee, exit_fee),
                entry_fee,
                exit_fee,
                reason,
                trade.stop_loss,
                trade.take_profit,
                trade.tag,
                trade.decision_bar,
                (trade.entry, trade.entry_fill_sequence, order.name, fill.sequence),
            )
        )
        if quantity >= abs(trade.size):
            self.trades.remove(trade)
        else:
            trade.size -= closed_size
        return fill

    def exit_trade(
        self,
        trade: OpenTrade,
        bar: int,
        fill_bar: int,
        quantity: float,
        price: float,
        reason: ExitReason,
        *,
        stop: float | None = None,
        limit: float | None = None,
    ) -> None:
        """Close `quantity` units of `trade` at `price` by an exit order the broker places and fills at once.

        The order carries the entry's signal; `stop` or `limit` record the level that set it off.
        """
        assert trade.entry is not None
        sign = 1.0 if trade.size > 0 else -1.0
        order = self._exit_order(trade, bar, -sign * quantity, reason, trade.entry.signal, stop=stop, limit=limit)
        self.events.append(BrokerEvent(bar, BrokerEventKind.PLACED, order, quantity))
        fill = self.reduce_trade(trade, quantity, price, fill_bar, reason, order)
        order.filled = quantity
        self.events.append(BrokerEvent(bar, BrokerEventKind.FILLED, order, quantity, price, sequence=fill.sequence))

    def _check_exits(self, trade: OpenTrade, bar: int) -> None:
        row = trade.row
        open_price = self._open[row][bar]
        if open_price != open_price:
            return
        high, low = self._high[row][bar], self._low[row][bar]
        long = trade.size > 0
        stop, reason = trade.stop_loss, ExitReason.STOP_LOSS
        trailing = trade.trailing_level
        if trailing is not None and (stop is None or (trailing > stop if long else trailing < stop)):
            stop, reason = trailing, ExitReason.TRAILING_STOP
        target = trade.take_profit
        stop_hit = stop is not None and (low <= stop if long else high >= stop)
        target_hit = target is not None and (high >= target if long else low <= target)
        if not stop_hit and not target_hit:
            return
        if stop_hit and target_hit:
            assert stop is not None and target is not None
            stop_hit = self._stop_first(long, open_price, stop, target)
        quantity = min(abs(trade.size), self._participation_cap(row, bar))
        if quantity <= 0:
            return
        # The exit sells a long (buys back a short): a stop exit fills at the worse price for that side,
        # a take-profit at the better one.
        if stop_hit:
            assert stop is not None
            self.exit_trade(trade, bar, bar, quantity, stop_price(open_price, stop, not long), reason, stop=stop)
        else:
            assert target is not None
            price = limit_price(open_price, target, not long)
            self.exit_trade(trade, bar, bar, quantity, price, ExitReason.TAKE_PROFIT, limit=target)

    def _stop_first(self, long: bool, open_price: float, stop: float, target: float) -> bool:
        if (open_price <= stop) if long else (open_price >= stop):
            return True
        if (open_price >= target) if long else (open_price <= target):
            return False
        rule = self.config.same_bar_exit
        if rule is SameBarExit.STOP_LOSS_FIRST:
            return True
        if rule is SameBarExit.TAKE_PROFIT_FIRST:
            return False
        return abs(open_price - stop) <= abs(target - open_price)

    def trail(self, bar: int) -> None:
        """Move trailing stops after `bar`'s close: up (long) or down (short), never back."""
        for trade in self.trades:
            distance = trade.trailing_distance
            if distance is None:
                continue
            close = self._close[trade.row][bar]
            if close != close:
                continue
            level = trade.trailing_level
            assert level is not None
            trade.trailing_level = (
                max(level, close * (1.0 - distance)) if trade.size > 0 else min(level, close * (1.0 + distance))
            )

    def liquidate(self, bar: int) -> None:
        """Close every open trade at its symbol's last close at `bar` (out of money)."""
        for trade in list(self.trades):
            price = self._value[trade.row][bar]
            self.exit_trade(trade, bar, bar, abs(trade.size), price, ExitReason.OUT_OF_MONEY)

    def close_at_end(self, last: int) -> None:
        """Close every open trade after the last bar, newest first, as backtesting.py's ``finalize_trades``."""
        on_close = self.config.trade_on_close
        for trade in list(reversed(self.trades)):
            exit_bar, price = end_price(self._open[trade.row], self._value[trade.row], last, on_close)
            self.exit_trade(trade, last, exit_bar, abs(trade.size), price, ExitReason.END)
