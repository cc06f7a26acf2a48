"""Paper trading, and the order records of a backtest: the simulated broker's fills as managed orders.

`PaperBroker` takes bars one at a time, as a live feed delivers them, and fills orders by exactly the
rules of the backtester (it drives the same `SimulatedBroker`); every order goes through the
`OrderManager`'s lifecycle, so paper orders and backtest orders are stored alike. `managed_orders`
turns the order events a backtest recorded into the same lifecycle records.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from neuraltrade.backtest.broker import OrderEvent, OrderEventKind, SimulatedBroker, WorkingOrder
from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.result import BacktestResult, signal_id_for
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.errors import InvalidOrder, ValidationError
from neuraltrade.trading.orders import ManagedOrder, OrderManager, client_order_id_for, order_id_for
from neuraltrade.types import Bar, Order, OrderSide, OrderType, TimeInForce


class _SettableClock:
    """The event time of a replay: set to each bar's time before the events of that bar."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment


def _order_type(order: WorkingOrder) -> OrderType:
    if order.limit is not None and order.stop is not None:
        return OrderType.STOP_LIMIT
    if order.limit is not None:
        return OrderType.LIMIT
    if order.stop is not None:
        return OrderType.STOP
    return OrderType.MARKET


def _domain_order(order: WorkingOrder, client_order_id: str, quantity: float) -> Order:
    return Order(
        id=order_id_for(client_order_id),
        client_order_id=client_order_id,
        symbol=order.symbol,
        side=OrderSide.BUY if order.size > 0 else OrderSide.SELL,
        type=_order_type(order),
        quantity=quantity,
        limit_price=order.limit,
        stop_price=order.stop,
        time_in_force=TimeInForce.GTC,
    )


def managed_orders(result: BacktestResult, run_id: uuid.UUID) -> list[ManagedOrder]:
    """Return every order of a backtest recorded with ``record_orders=True`` as a managed order.

    Client order ids derive from the strategy, symbol, bar time, run and the order's place in the run,
    so replaying the night gives the same ids. An entry sized as a fraction of margin that was cancelled
    before it could be sized carries the units that fraction bought at the decision bar's close.
    """
    if not result.events and (result.trades or result.open_trades):
        raise ValidationError("the backtest kept no order events; run it with record_orders=True")
    times = result.market.datetimes
    clock = _SettableClock(times[0])
    manager = OrderManager(clock)
    identities: dict[int, str] = {}
    for event in result.events:
        order = event.order
        clock.moment = times[event.bar]
        if event.kind is OrderEventKind.PLACED:
            sequence = len(identities)
            purpose = f"{run_id}:{sequence}:{'close' if order.parent is not None else 'entry'}"
            client_order_id = client_order_id_for(
                strategy_id=result.strategy.strategy_id,
                symbol=order.symbol,
                timestamp=times[order.placed_bar],
                purpose=purpose,
            )
            identities[id(order)] = client_order_id
            quantity = _quantity(result, order)
            signal = signal_id_for(run_id, result.strategy.strategy_id, order.symbol, times[order.placed_bar])
            manager.submit(_domain_order(order, client_order_id, quantity), signal_id=signal)
            manager.accept(client_order_id, "accepted by the simulated broker")
            continue
        apply_event(manager, identities[id(order)], event)
    return manager.orders()


def apply_event(manager: OrderManager, client_order_id: str, event: OrderEvent) -> ManagedOrder | None:
    """Move order `client_order_id` through its lifecycle as the broker's `event` says; return it if it moved.

    A fill never exceeds what is left of the order; an order the broker reports done with units left
    (a close order whose trade was smaller) has the rest cancelled.
    """
    if event.kind in (OrderEventKind.FILLED, OrderEventKind.PARTIALLY_FILLED):
        assert event.price is not None
        quantity = min(event.quantity, manager.get(client_order_id).remaining_quantity)
        managed = manager.fill(client_order_id, quantity, event.price)
        if event.kind is OrderEventKind.FILLED and managed.remaining_quantity > 0:
            managed = manager.cancel(client_order_id, "the rest was not needed: the position was already closed")
        return managed
    if event.kind is OrderEventKind.CANCELLED:
        return manager.cancel(client_order_id, event.reason)
    if event.kind is OrderEventKind.EXPIRED:
        return manager.expire(client_order_id, event.reason)
    return None


def _quantity(result: BacktestResult, order: WorkingOrder) -> float:
    if abs(order.size) >= 1 or (order.parent is not None):
        return abs(order.size)
    if order.units:
        return order.units
    price = float(result.market.valuation[order.row, order.placed_bar])
    equity = float(result.equity[order.placed_bar])
    estimate = equity * result.config.leverage * abs(order.size) / price
    return max(1.0, math.floor(estimate)) if not result.config.fractional else max(estimate, 1e-9)


@dataclass(eq=False)
class _LiveMarket:
    """A market that grows by one bar at a time, read by the simulated broker like a backtest's."""

    symbols: tuple[str, ...]
    lists: dict[str, list[list[float]]] = field(init=False)
    datetimes: list[datetime] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        names = ("open", "high", "low", "close", "volume", "valuation")
        self.lists = {name: [[] for _ in self.symbols] for name in names}

    def append(self, bars: Mapping[str, Bar]) -> int:
        moments = {bar.timestamp for bar in bars.values()}
        if len(moments) != 1:
            raise ValidationError(f"one step of the feed must hold bars of one moment, was {sorted(moments)}")
        (moment,) = moments
        if self.datetimes and moment <= self.datetimes[-1]:
            raise ValidationError(f"bar time {moment.isoformat()} is not after {self.datetimes[-1].isoformat()}")
        unknown = sorted(set(bars) - set(self.symbols))
        if unknown:
            raise ValidationError(f"the paper broker trades {list(self.symbols)}, was given bars of {unknown}")
        for row, symbol in enumerate(self.symbols):
            bar = bars.get(symbol)
            values = (bar.open, bar.high, bar.low, bar.close, bar.volume) if bar else (math.nan,) * 5
            for name, value in zip(("open", "high", "low", "close", "volume"), values, strict=True):
                self.lists[name][row].append(value)
            previous = self.lists["valuation"][row][-1] if self.datetimes else math.nan
            self.lists["valuation"][row].append(bar.close if bar else previous)
        self.datetimes.append(moment)
        return len(self.datetimes) - 1


class PaperBroker:
    """Fills orders against bars as they arrive, by the backtester's rules, through the order lifecycle.

    Orders placed after the bar at index i fill from bar i+1 (its open for a market order), exactly as a
    backtest decision on bar i would. An order is taken as given: a sell against a long position closes
    it, oldest trade first (netting, as backtesting.py without hedging), so the configuration's
    exclusive-orders switch does not apply here.
    """

    def __init__(self, symbols: Iterable[str], config: BacktestConfig | None = None) -> None:
        self.config = replace(config or BacktestConfig(), exclusive_orders=False)
        self.market = _LiveMarket(tuple(symbols))
        self.broker = SimulatedBroker(self.config, self.market)  # type: ignore[arg-type]
        start = datetime(1970, 1, 1, tzinfo=UTC)
        self._clock = _SettableClock(start)
        self.orders = OrderManager(self._clock)
        self._identities: dict[int, str] = {}
        self._seen_events = 0

    @property
    def cash(self) -> float:
        """Cash after realised profits and commissions."""
        return self.broker.cash

    @property
    def closed_trades(self) -> list[ClosedTrade]:
        """Trades closed so far."""
        return list(self.broker.closed)

    def position(self, symbol: str) -> float:
        """Signed units of `symbol` held."""
        return self.broker.position(symbol)

    def equity(self) -> float:
        """Cash plus open trades at the last close."""
        return self.broker.equity(len(self.market.datetimes) - 1) if self.market.datetimes else self.broker.cash

    def submit(
        self,
        order: Order,
        *,
        signal_id: uuid.UUID | None = None,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
    ) -> ManagedOrder:
        """Accept `order` (idempotently, by client order id) and work it from the next bar."""
        if order.client_order_id in self.orders:
            return self.orders.submit(order, signal_id=signal_id)
        if order.symbol not in self.market.symbols:
            raise InvalidOrder(f"order {order.client_order_id!r}: the paper broker does not trade {order.symbol!r}")
        if not self.market.datetimes:
            raise InvalidOrder(f"order {order.client_order_id!r} came before the first bar; nothing to fill it at")
        if order.time_in_force is not TimeInForce.GTC:
            raise InvalidOrder(
                f"order {order.client_order_id!r} is {order.time_in_force.value}; the paper broker works orders until "
                "filled or cancelled (gtc) and does not simulate day, ioc or fok orders"
            )
        sign = 1.0 if order.side is OrderSide.BUY else -1.0
        working = WorkingOrder(
            order.symbol,
            self.market.symbols.index(order.symbol),
            sign * order.quantity,
            len(self.market.datetimes) - 1,
            limit=order.limit_price,
            stop=order.stop_price,
            stop_loss=stop_loss,
            take_profit=take_profit,
            trailing_distance=trailing_stop,
            client_order_id=order.client_order_id,
            units=order.quantity,
        )
        # The broker checks the order first: one it refuses must not be left in the lifecycle as new.
        self.broker.submit(working)
        self._clock.moment = self.market.datetimes[-1]
        self.orders.submit(order, signal_id=signal_id)
        self._identities[id(working)] = order.client_order_id
        self.orders.accept(order.client_order_id, "accepted by the paper broker")
        self._seen_events = len(self.broker.events)
        return self.orders.get(order.client_order_id)

    def cancel(self, client_order_id: str, reason: str = "cancelled by the trader") -> ManagedOrder:
        """Stop working an order that has not filled completely."""
        for working in list(self.broker.orders):
            if working.client_order_id == client_order_id:
                self.broker.orders.remove(working)
        return self.orders.cancel(client_order_id, reason)

    def on_bars(self, bars: Mapping[str, Bar]) -> list[ManagedOrder]:
        """Fill what this moment's bars reach; return the orders that changed."""
        bar = self.market.append(bars)
        self._clock.moment = self.market.datetimes[bar]
        self.broker.process(bar)
        self.broker.trail(bar)
        changed: dict[str, ManagedOrder] = {}
        for event in self.broker.events[self._seen_events :]:
            updated = self._apply(event)
            if updated is not None:
                changed[updated.client_order_id] = updated
        self._seen_events = len(self.broker.events)
        return list(changed.values())

    def _apply(self, event: OrderEvent) -> ManagedOrder | None:
        client_order_id = self._identities.get(id(event.order))
        if client_order_id is None:
            return None  # an order of the broker's own making (the close of an exclusive entry)
        return apply_event(self.orders, client_order_id, event)
