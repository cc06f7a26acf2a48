"""The order manager: the lifecycle of orders as a state machine, with an event for every change.

An order is submitted ``new``; a broker (real, paper or simulated) then accepts or rejects it, fills it
in one or more parts, or it is cancelled or expires. Every change appends an `OrderEvent` numbered from
0 upwards per order, so the events replay the order exactly. Quantities and the average fill price are
summed in decimal from the shortest decimal form of each float (``repr``), so ten fills of 0.1 fill an
order of 1.0 and fills at one price average to exactly that price.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from neuraltrade.canonical import stable_id
from neuraltrade.clock import Clock
from neuraltrade.errors import DuplicateOrder, IllegalTransition, InvalidOrder, UnknownOrder, ValidationError
from neuraltrade.timestamps import require_aware
from neuraltrade.types import Order, OrderStatus

_S = OrderStatus

#: Where each status may go next; a status absent from a set is an `IllegalTransition`.
ALLOWED_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = MappingProxyType(
    {
        _S.NEW: frozenset({_S.ACCEPTED, _S.REJECTED, _S.CANCELLED}),
        _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED}),
        _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED}),
        _S.FILLED: frozenset(),
        _S.CANCELLED: frozenset(),
        _S.REJECTED: frozenset(),
        _S.EXPIRED: frozenset(),
    }
)
#: Statuses an order never leaves.
TERMINAL_STATUSES = frozenset(status for status, following in ALLOWED_TRANSITIONS.items() if not following)
#: Statuses of orders still working at the broker.
OPEN_STATUSES = frozenset(OrderStatus) - TERMINAL_STATUSES

# Enough digits that sums and products of float-sized decimals stay exact before the final rounding.
_EXACT = decimal.Context(prec=120)


def _exact(value: float) -> Decimal:
    """Return the decimal the float `value` was written as (its shortest round-tripping form)."""
    return Decimal(repr(float(value)))


def client_order_id_for(signal_id: uuid.UUID | None, purpose: str, *qualifiers: str | int) -> str:
    """Return the deterministic client order id of the order placed for `purpose` because of `signal_id`.

    ``stable_id("client_order", signal_id, purpose, *qualifiers).hex``. Purposes: "entry" (the decision's
    entry order); "close" with the entry client order id it closes as qualifier (a later decision closing
    a trade); "stop_loss", "take_profit", "trailing_stop", "close_at_end", "liquidation" (exits of an entry,
    whose signal they carry; None for an order placed directly, whose client id then qualifies them). The
    id is derived once, where the decision or the order is made, and carried from there: a replay or a
    retry after a crash derives the same id, so the broker and `OrderManager.submit` see the same order
    twice, not two orders. It is 32 lower-case hex digits, short enough for every broker's limit.
    """
    if signal_id is not None and not isinstance(signal_id, uuid.UUID):
        raise ValidationError(f"client order id signal_id must be a UUID or None, was {signal_id!r}")
    if not isinstance(purpose, str) or not purpose:
        raise ValidationError(f"client order id purpose must be a non-empty string, was {purpose!r}")
    return stable_id("client_order", signal_id, purpose, *qualifiers).hex


def order_id_for(client_order_id: str) -> uuid.UUID:
    """Return the stable `Order.id` of the order whose client order id is `client_order_id`."""
    if not isinstance(client_order_id, str) or not client_order_id:
        raise ValidationError(f"client order id must be a non-empty string, was {client_order_id!r}")
    return stable_id("order", client_order_id)


@dataclass(frozen=True, kw_only=True)
class OrderEvent:
    """One change of one order: its status before and after, and the fill it brought, if any."""

    order_id: uuid.UUID
    sequence: int
    timestamp: datetime
    previous: OrderStatus | None
    status: OrderStatus
    fill_quantity: float = 0.0
    fill_price: float | None = None
    reason: str = ""

    @property
    def id(self) -> uuid.UUID:
        """The stable id of this event, derived from its order and sequence number."""
        return stable_id("order_event", self.order_id, self.sequence)


@dataclass(frozen=True, kw_only=True)
class ManagedOrder:
    """An order as the manager holds it: the order (its `status` kept current), its fills and its events."""

    order: Order
    status: OrderStatus
    filled_quantity: float
    average_fill_price: float | None
    events: tuple[OrderEvent, ...]
    signal_id: uuid.UUID | None = None

    @property
    def id(self) -> uuid.UUID:
        return self.order.id

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def remaining_quantity(self) -> float:
        """Quantity still to fill (exact: the order's quantity less the sum of the fills)."""
        return float(_EXACT.subtract(_exact(self.order.quantity), _filled(self.events)))

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def created_at(self) -> datetime:
        return self.events[0].timestamp

    @property
    def updated_at(self) -> datetime:
        return self.events[-1].timestamp


def _filled(events: Iterable[OrderEvent]) -> Decimal:
    total = Decimal(0)
    for event in events:
        if event.fill_quantity:
            total = _EXACT.add(total, _exact(event.fill_quantity))
    return total


def _average_price(events: Iterable[OrderEvent]) -> float | None:
    quantity = Decimal(0)
    notional = Decimal(0)
    for event in events:
        if event.fill_price is not None and event.fill_quantity:
            size = _exact(event.fill_quantity)
            quantity = _EXACT.add(quantity, size)
            notional = _EXACT.add(notional, _EXACT.multiply(size, _exact(event.fill_price)))
    return None if not quantity else float(_EXACT.divide(notional, quantity))


def _is_positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _same_content(first: Order, second: Order) -> bool:
    # The status is the manager's business, not the caller's: a resubmission of a filled order is the same order.
    return dataclasses.replace(first, status=OrderStatus.NEW) == dataclasses.replace(second, status=OrderStatus.NEW)


class OrderManager:
    """Orders by client order id, moved through their lifecycle by the calls below, each stamped by `clock`.

    Parameters
    ----------
    clock
        Tells the time of every event (inject a `FixedClock` for replays and tests).
    orders
        Orders to resume managing, e.g. the open orders loaded from the database after a restart.
    """

    def __init__(self, clock: Clock, orders: Iterable[ManagedOrder] = ()) -> None:
        self._clock = clock
        self._orders: dict[str, ManagedOrder] = {}
        self._log: list[OrderEvent] = []
        for managed in orders:
            if managed.client_order_id in self._orders:
                raise DuplicateOrder(managed.client_order_id, "it is given twice to resume")
            self._orders[managed.client_order_id] = managed
            self._log.extend(managed.events)

    def submit(self, order: Order, *, signal_id: uuid.UUID | None = None) -> ManagedOrder:
        """Start managing `order` (status new); return it as managed.

        Submitting again an order already held (same client order id, same content and signal) returns the
        held order unchanged, whatever its status, so a retried submission is harmless.

        Raises
        ------
        DuplicateOrder
            If the client order id is held for an order of other content or another signal.
        InvalidOrder
            If `order.id` is not `order_id_for(order.client_order_id)` or its status is not new.
        """
        held = self._orders.get(order.client_order_id)
        if held is not None:
            if not _same_content(held.order, order):
                raise DuplicateOrder(order.client_order_id, f"held {held.order!r}, was given {order!r}")
            if held.signal_id != signal_id:
                raise DuplicateOrder(
                    order.client_order_id, f"held for signal {held.signal_id}, was given signal {signal_id}"
                )
            return held
        expected = order_id_for(order.client_order_id)
        if order.id != expected:
            raise InvalidOrder(
                f"order {order.client_order_id!r} has id {order.id}; its id must be order_id_for(client_order_id) "
                f"= {expected}"
            )
        if order.status is not OrderStatus.NEW:
            raise InvalidOrder(f"order {order.client_order_id!r} is submitted {order.status.value}; it must be new")
        event = OrderEvent(
            order_id=order.id,
            sequence=0,
            timestamp=self._now(),
            previous=None,
            status=OrderStatus.NEW,
            reason="submitted",
        )
        managed = ManagedOrder(
            order=order,
            status=OrderStatus.NEW,
            filled_quantity=0.0,
            average_fill_price=None,
            events=(event,),
            signal_id=signal_id,
        )
        self._orders[order.client_order_id] = managed
        self._log.append(event)
        return managed

    def accept(self, client_order_id: str, reason: str = "") -> ManagedOrder:
        """Record that the broker took the order."""
        return self._move(client_order_id, OrderStatus.ACCEPTED, reason)

    def reject(self, client_order_id: str, reason: str) -> ManagedOrder:
        """Record that the broker (or the risk checks) refused the order, and why."""
        return self._move(client_order_id, OrderStatus.REJECTED, reason)

    def cancel(self, client_order_id: str, reason: str) -> ManagedOrder:
        """Record that the order was cancelled, and why; its fills so far stand."""
        return self._move(client_order_id, OrderStatus.CANCELLED, reason)

    def expire(self, client_order_id: str, reason: str) -> ManagedOrder:
        """Record that the order's time in force ran out; its fills so far stand."""
        return self._move(client_order_id, OrderStatus.EXPIRED, reason)

    def fill(self, client_order_id: str, quantity: float, price: float, *, reason: str = "") -> ManagedOrder:
        """Record a fill of `quantity` at `price`: the order is filled if nothing remains, else partially filled.

        Raises
        ------
        InvalidOrder
            If `quantity` or `price` is not a positive finite number, or `quantity` exceeds what remains.
        IllegalTransition
            If the order is not accepted or partially filled.
        """
        held = self.get(client_order_id)
        valid = [_is_positive_number(value) for value in (quantity, price)]
        remaining = _EXACT.subtract(_exact(held.order.quantity), _filled(held.events))
        fills_all = valid[0] and _exact(quantity) == remaining
        target = OrderStatus.FILLED if fills_all else OrderStatus.PARTIALLY_FILLED
        # The status is checked first: any fill of a closed order is illegal, whatever its size.
        if target not in ALLOWED_TRANSITIONS[held.status]:
            raise IllegalTransition(client_order_id, held.status.value, target.value)
        for name, value, ok in (("quantity", quantity, valid[0]), ("price", price, valid[1])):
            if not ok:
                raise InvalidOrder(
                    f"fill {name} of order {client_order_id!r} must be positive and finite, was {value!r}"
                )
        if _exact(quantity) > remaining:
            raise InvalidOrder(
                f"fill of {quantity!r} overfills order {client_order_id!r}: only {float(remaining)!r} of "
                f"{held.order.quantity!r} remains"
            )
        return self._record(held, target, reason, float(quantity), float(price))

    def get(self, client_order_id: str) -> ManagedOrder:
        """Return the order of `client_order_id`; raise `UnknownOrder` if none is held."""
        held = self._orders.get(client_order_id)
        if held is None:
            raise UnknownOrder(client_order_id)
        return held

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._orders

    def orders(self) -> list[ManagedOrder]:
        """Return every order held, in the order they were submitted."""
        return list(self._orders.values())

    def open_orders(self, symbol: str | None = None) -> list[ManagedOrder]:
        """Return the orders still working (new, accepted, partially filled), of `symbol` if given."""
        return [
            managed
            for managed in self._orders.values()
            if managed.is_open and (symbol is None or managed.order.symbol == symbol)
        ]

    def events(self) -> tuple[OrderEvent, ...]:
        """Return every event of every order, in the order they happened."""
        return tuple(self._log)

    def _move(self, client_order_id: str, target: OrderStatus, reason: str) -> ManagedOrder:
        held = self.get(client_order_id)
        if target not in ALLOWED_TRANSITIONS[held.status]:
            raise IllegalTransition(client_order_id, held.status.value, target.value)
        return self._record(held, target, reason, 0.0, None)

    def _record(
        self, held: ManagedOrder, target: OrderStatus, reason: str, quantity: float, price: float | None
    ) -> ManagedOrder:
        event = OrderEvent(
            order_id=held.order.id,
            sequence=len(held.events),
            timestamp=self._now(),
            previous=held.status,
            status=target,
            fill_quantity=quantity,
            fill_price=price,
            reason=reason,
        )
        events = (*held.events, event)
        managed = dataclasses.replace(
            held,
            order=dataclasses.replace(held.order, status=target),
            status=target,
            filled_quantity=float(_filled(events)),
            average_fill_price=_average_price(events),
            events=events,
        )
        self._orders[held.client_order_id] = managed
        self._log.append(event)
        return managed

    def _now(self) -> datetime:
        return require_aware("order manager clock time", self._clock.now())
