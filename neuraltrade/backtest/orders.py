"""The order records of a simulation: the simulated broker's events as the order manager's lifecycle.

`managed_orders` turns the events a backtest recorded (``record_orders=True``) into `ManagedOrder`s, so
backtest orders are stored as paper and live orders are. Every order keeps the ids it was given where it
was made (the decision's entry, a close, a contingent exit: `neuraltrade.backtest.identity`) and its
signal; nothing here derives an id. `apply_event` moves one order by one broker event, for the paper
broker as well.
"""

from __future__ import annotations

import math
from datetime import datetime

from neuraltrade.backtest.book import BrokerEvent, BrokerEventKind, WorkingOrder
from neuraltrade.backtest.result import BacktestResult
from neuraltrade.errors import ValidationError
from neuraltrade.trading.orders import ManagedOrder, OrderManager
from neuraltrade.types import Order, OrderSide, OrderType, TimeInForce


class ReplayClock:
    """The event time of a replay: set to each bar's time before the events of that bar."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment


def order_type(order: WorkingOrder) -> OrderType:
    """The type of `order` by the prices it names."""
    if order.limit is not None and order.stop is not None:
        return OrderType.STOP_LIMIT
    if order.limit is not None:
        return OrderType.LIMIT
    if order.stop is not None:
        return OrderType.STOP
    return OrderType.MARKET


def domain_order(order: WorkingOrder, quantity: float) -> Order:
    """`order` as the order manager's `Order` of `quantity` units, under the ids it carries."""
    assert order.order_id is not None
    return Order(
        id=order.order_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=OrderSide.BUY if order.size > 0 else OrderSide.SELL,
        type=order_type(order),
        quantity=quantity,
        limit_price=order.limit,
        stop_price=order.stop,
        time_in_force=TimeInForce.GTC,
    )


def managed_orders(result: BacktestResult) -> list[ManagedOrder]:
    """Return every order of a backtest recorded with ``record_orders=True`` as a managed order.

    Each keeps its client order id and signal as the run derived them; its fills are the run's `Fill`s,
    one manager fill each. An entry sized as a fraction of margin that was cancelled before it could be
    sized carries the units that fraction bought at the decision bar's close.
    """
    if not result.events and (result.trades or result.open_trades):
        raise ValidationError("the backtest kept no order events; run it with record_orders=True")
    times = result.market.datetimes
    clock = ReplayClock(times[0])
    manager = OrderManager(clock)
    for event in result.events:
        clock.moment = times[event.bar]
        quantity = _quantity(result, event.order) if event.kind is BrokerEventKind.PLACED else None
        apply_event(manager, event, quantity)
    return manager.orders()


def apply_event(manager: OrderManager, event: BrokerEvent, quantity: float | None = None) -> ManagedOrder | None:
    """Move the order of `event` through its lifecycle as the broker's `event` says; return it if it moved.

    A placed order is submitted (of `quantity` units, by default the event's) and accepted. A fill never
    exceeds what is left of the order; an order the broker reports done with units left (a close order
    whose trade was smaller) has the rest cancelled.
    """
    order = event.order
    client_order_id = order.client_order_id
    if event.kind is BrokerEventKind.PLACED:
        placed = domain_order(order, event.quantity if quantity is None else quantity)
        manager.submit(placed, signal_id=order.signal_id)
        return manager.accept(client_order_id, "accepted by the simulated broker")
    if event.kind in (BrokerEventKind.FILLED, BrokerEventKind.PARTIALLY_FILLED):
        assert event.price is not None
        filled = min(event.quantity, manager.get(client_order_id).remaining_quantity)
        managed = manager.fill(client_order_id, filled, event.price)
        if event.kind is BrokerEventKind.FILLED and managed.remaining_quantity > 0:
            managed = manager.cancel(client_order_id, "the rest was not needed: the position was already closed")
        return managed
    if event.kind is BrokerEventKind.CANCELLED:
        return manager.cancel(client_order_id, event.reason)
    return manager.expire(client_order_id, event.reason)


def _quantity(result: BacktestResult, order: WorkingOrder) -> float:
    if abs(order.size) >= 1 or (order.parent is not None):
        return abs(order.size)
    if order.units:
        return order.units
    price = float(result.market.valuation[order.row, order.placed_bar])
    equity = float(result.equity[order.placed_bar])
    estimate = equity * result.config.leverage * abs(order.size) / price
    return max(1.0, math.floor(estimate)) if not result.config.fractional else max(estimate, 1e-9)
