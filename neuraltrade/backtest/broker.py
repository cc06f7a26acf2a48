"""The simulated broker: working orders and open trades filled against bars, for backtests and paper trading.

Fill rules (backtesting.py 0.6's, so that results compare one for one; docs/backtesting.md):

- a market order fills at the open of the first bar after it was placed; with ``trade_on_close`` at the
  close of the bar it was placed on (the previous close);
- a stop order becomes a market order once a bar reaches its stop, filling at the worse of the open and
  the stop; a limit order fills at the better of the open and the limit once a bar reaches it; a
  stop-limit whose limit is reached on the bar that triggers the stop is assumed to need the limit
  *before* the stop and waits (it stays a limit order);
- an entry fills at the quoted price moved by the spread; the commission is charged on the notional at
  entry and again at exit and never folded into the price;
- stop-loss, take-profit and trailing stops are checked before any other order of the bar, from the bar
  after the entry (from the entry bar itself after a market entry); when one bar reaches both a stop
  and the take-profit, `SameBarExit` decides;
- a fill may take at most ``max_participation`` of the bar's volume; the rest keeps working.

Unlike backtesting.py, which values open trades at the current bar's close while sizing an order filled
at its open, sizing here values them at prices known when the order fills (the fill price for the
symbol filled, the last close for the others).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime

from neuraltrade.backtest.config import BacktestConfig, SameBarExit
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.errors import InvalidOrder


class OrderEventKind(enum.Enum):
    """What happened to a working order."""

    PLACED = "placed"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(slots=True, eq=False)
class OpenTrade:
    """A position lot: opened by one fill, closed in one or more parts."""

    symbol: str
    row: int
    size: float
    entry_price: float
    entry_bar: int
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_distance: float | None = None
    trailing_level: float | None = None
    tag: str | None = None
    client_order_id: str = ""
    entry_fee: float = 0.0
    decision_bar: int | None = None


@dataclass(slots=True, eq=False)
class WorkingOrder:
    """An order the broker holds until it fills, is cancelled or expires.

    `size` is signed: whole (or fractional) units, or, when its magnitude is below 1, a fraction of the
    available margin resolved into units at the first fill. Exit levels are absolute prices
    (`stop_loss`, `take_profit`) or distances from the fill price as fractions (`*_distance`).
    A close order names the trade it closes in `parent`.
    """

    symbol: str
    row: int
    size: float
    placed_bar: int
    limit: float | None = None
    stop: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    stop_loss_distance: float | None = None
    take_profit_distance: float | None = None
    trailing_distance: float | None = None
    parent: OpenTrade | None = None
    expires_bar: int | None = None
    tag: str | None = None
    client_order_id: str = ""
    units: float | None = None
    filled: float = 0.0
    triggered: bool = False
    decision_bar: int | None = None

    @property
    def is_long(self) -> bool:
        return self.size > 0


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One step of a working order's life, at a timeline bar."""

    bar: int
    kind: OrderEventKind
    order: WorkingOrder
    quantity: float = 0.0
    price: float | None = None
    reason: str = ""


@dataclass(eq=False)
class SimulatedBroker:
    """Cash, open trades and working orders of one account over `market`, filled by the rules above."""

    config: BacktestConfig
    market: MarketData
    cash: float = field(init=False)
    trades: list[OpenTrade] = field(init=False, default_factory=list)
    orders: list[WorkingOrder] = field(init=False, default_factory=list)
    closed: list[ClosedTrade] = field(init=False, default_factory=list)
    events: list[OrderEvent] = field(init=False, default_factory=list)

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

    # -- placing -------------------------------------------------------------------------------------

    def submit(self, order: WorkingOrder) -> WorkingOrder:
        """Queue `order`; with exclusive orders an entry first cancels the symbol's orders and closes its trades."""
        if not math.isfinite(order.size) or order.size == 0:
            raise InvalidOrder(f"order {order.client_order_id or order.symbol!r} has size {order.size!r}")
        units = order.units if order.units is not None else (abs(order.size) if abs(order.size) >= 1 else None)
        if units is not None and not self.config.fractional and not float(units).is_integer():
            raise InvalidOrder(
                f"order {order.client_order_id or order.symbol!r} asks for {units!r} units, not a whole number; "
                "fractional units need BacktestConfig(fractional=True)"
            )
        self._check_levels(order)
        if order.parent is None and self.config.exclusive_orders:
            self.cancel_orders(order.symbol, order.placed_bar, "replaced by a new order (exclusive orders)")
            self.close_trades(order.symbol, order.placed_bar)
        self.orders.append(order)
        self.events.append(OrderEvent(order.placed_bar, OrderEventKind.PLACED, order, abs(order.size)))
        return order

    def close_trades(self, symbol: str, bar: int) -> None:
        """Queue market orders closing every open trade of `symbol`."""
        for trade in self.trades:
            if trade.symbol == symbol:
                close = WorkingOrder(symbol, trade.row, -trade.size, bar, parent=trade)
                close.client_order_id = f"{trade.client_order_id}:close@{bar}" if trade.client_order_id else ""
                self.orders.append(close)
                self.events.append(OrderEvent(bar, OrderEventKind.PLACED, close, abs(trade.size)))

    def cancel_orders(self, symbol: str, bar: int, reason: str) -> None:
        """Cancel every working order of `symbol` that is not closing a trade."""
        kept = []
        for order in self.orders:
            if order.symbol == symbol and order.parent is None:
                self.events.append(OrderEvent(bar, OrderEventKind.CANCELLED, order, reason=reason))
            else:
                kept.append(order)
        self.orders = kept

    def expire_all(self, bar: int, reason: str) -> None:
        """Expire every working order (at the end of the data)."""
        for order in self.orders:
            self.events.append(OrderEvent(bar, OrderEventKind.EXPIRED, order, reason=reason))
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
        equity, used = self.cash, 0.0
        for trade in self.trades:
            mark = price if trade.row == row else self._value[trade.row][bar - 1] if bar else trade.entry_price
            equity += trade.size * (mark - trade.entry_price)
            used += abs(trade.size) * mark / self._leverage
        return max(0.0, equity - used)

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
                self.events.append(OrderEvent(bar, OrderEventKind.EXPIRED, order, reason="time in force ended"))
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
            start = open_price if stop is None else stop
            price = min(start, limit) if long else max(start, limit)
        else:
            price = self._value[row][bar - 1] if self.config.trade_on_close and bar > 0 else open_price
            if stop is not None:
                price = max(price, stop) if long else min(price, stop)
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
            self.events.append(OrderEvent(bar, OrderEventKind.CANCELLED, order, reason="its trade was already closed"))
            return
        wanted = min(abs(trade.size), abs(order.size) - order.filled)
        quantity = min(wanted, self._participation_cap(order.row, bar))
        if quantity <= 0:
            return
        self.reduce_trade(trade, quantity, price, fill_bar, ExitReason.SIGNAL)
        order.filled += quantity
        self._finish(order, bar, quantity, price, done=quantity >= wanted)

    def _finish(self, order: WorkingOrder, bar: int, quantity: float, price: float, *, done: bool) -> None:
        kind = OrderEventKind.FILLED if done else OrderEventKind.PARTIALLY_FILLED
        self.events.append(OrderEvent(bar, kind, order, quantity, price))
        if done:
            self.orders.remove(order)

    def _fill_entry(self, order: WorkingOrder, bar: int, fill_bar: int, price: float, market: bool) -> None:
        row, long = order.row, order.is_long
        adjusted = price * (1.0 + self._spread) if long else price * (1.0 - self._spread)
        per_unit = adjusted + price * self._commission
        units = order.units
        if units is None:
            if abs(order.size) < 1:
                budget = self._margin_available(bar, row, price) * self._leverage * abs(order.size) - self._fixed
                units = budget / per_unit if self.config.fractional else float(budget // per_unit)
                if units <= 0:
                    self.orders.remove(order)
                    self.events.append(OrderEvent(bar, OrderEventKind.CANCELLED, order, reason="insufficient margin"))
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
        for trade in list(self.trades):
            if trade.symbol != order.symbol or (trade.size > 0) == long:
                continue
            closing = min(abs(trade.size), abs(need))
            self.reduce_trade(trade, closing, price, fill_bar, ExitReason.SIGNAL)
            need += closing if need < 0 else -closing
            if need == 0:
                break
        if need and abs(need) * per_unit + self._fixed > self._margin_available(bar, row, price) * self._leverage:
            closed = quantity - abs(need)
            if closed > 0:  # the part that closed open trades did fill; only the rest is refused
                order.filled += closed
                self.events.append(OrderEvent(bar, OrderEventKind.PARTIALLY_FILLED, order, closed, price))
            self.orders.remove(order)
            self.events.append(OrderEvent(bar, OrderEventKind.CANCELLED, order, reason="insufficient margin"))
            return
        if need:
            trade = self._open_trade(order, need, adjusted, fill_bar)
            if market and (trade.stop_loss is not None or trade.take_profit is not None or trade.trailing_level):
                self._check_exits(trade, bar)
        order.filled += quantity
        self._finish(order, bar, quantity, price, done=order.filled >= units)

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
            order.client_order_id,
            self._fixed,
            order.decision_bar,
        )
        self.trades.append(trade)
        self.cash -= self._fixed + abs(size) * price * self._commission
        return trade

    def reduce_trade(self, trade: OpenTrade, quantity: float, price: float, bar: int, reason: ExitReason) -> None:
        """Close `quantity` units of `trade` at `price`; the rest of the trade stays open."""
        sign = 1.0 if trade.size > 0 else -1.0
        closed_size = sign * quantity
        exit_commission = self._fixed + quantity * price * self._commission
        # The entry's fixed fee was paid once, at the open: it goes with the first part closed.
        entry_commission = trade.entry_fee + quantity * trade.entry_price * self._commission
        trade.entry_fee = 0.0
        self.cash += closed_size * (price - trade.entry_price) - exit_commission
        self.closed.append(
            ClosedTrade(
                symbol=trade.symbol,
                entry_bar=trade.entry_bar,
                exit_bar=bar,
                entry_time=self._time(trade.entry_bar),
                exit_time=self._time(bar),
                size=closed_size,
                entry_price=trade.entry_price,
                exit_price=price,
                commission=exit_commission + entry_commission,
                exit_reason=reason,
                stop_loss=trade.stop_loss,
                take_profit=trade.take_profit,
                tag=trade.tag,
                decision_bar=trade.decision_bar,
            )
        )
        if quantity >= abs(trade.size):
            self.trades.remove(trade)
        else:
            trade.size -= closed_size

    def _time(self, bar: int) -> datetime:
        return self._times[bar]

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
        if stop_hit:
            assert stop is not None
            price = min(open_price, stop) if long else max(open_price, stop)
        else:
            assert target is not None
            price, reason = (max(open_price, target) if long else min(open_price, target)), ExitReason.TAKE_PROFIT
        quantity = min(abs(trade.size), self._participation_cap(row, bar))
        if quantity > 0:
            self.reduce_trade(trade, quantity, price, bar, reason)

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

    def liquidate(self, bar: int, reason: ExitReason) -> None:
        """Close every open trade at its symbol's last close at `bar` (out of money)."""
        for trade in list(self.trades):
            self.reduce_trade(trade, abs(trade.size), self._value[trade.row][bar], bar, reason)
