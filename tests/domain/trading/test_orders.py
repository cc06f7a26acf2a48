"""Specification of the order manager (`neuraltrade.trading.orders`): the lifecycle state machine, fills and events."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from neuraltrade.canonical import stable_id
from neuraltrade.clock import FixedClock
from neuraltrade.errors import DuplicateOrder, IllegalTransition, InvalidOrder, UnknownOrder, ValidationError
from neuraltrade.trading.orders import (
    ALLOWED_TRANSITIONS,
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    ManagedOrder,
    OrderManager,
    client_order_id_for,
    order_id_for,
)
from neuraltrade.types import Order, OrderSide, OrderStatus, OrderType, TimeInForce

S = OrderStatus
START = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
PROPERTY = settings(max_examples=60, deadline=None)


def order(client_order_id: str = "o-1", *, quantity: float = 10.0, symbol: str = "AAA", **fields: object) -> Order:
    return Order(
        id=order_id_for(client_order_id),
        client_order_id=client_order_id,
        symbol=symbol,
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        quantity=quantity,
        **fields,  # type: ignore[arg-type]
    )


def manager() -> tuple[OrderManager, FixedClock]:
    clock = FixedClock(START)
    return OrderManager(clock), clock


# How to move an order of quantity 10 into each status from the one before it on the path below.
STEP: dict[OrderStatus, Callable[[OrderManager, str], ManagedOrder]] = {
    S.ACCEPTED: lambda oms, cid: oms.accept(cid),
    S.REJECTED: lambda oms, cid: oms.reject(cid, "no buying power"),
    S.CANCELLED: lambda oms, cid: oms.cancel(cid, "user"),
    S.EXPIRED: lambda oms, cid: oms.expire(cid, "end of day"),
    S.PARTIALLY_FILLED: lambda oms, cid: oms.fill(cid, 1.0, 100.0),
    S.FILLED: lambda oms, cid: oms.fill(cid, oms.get(cid).remaining_quantity, 100.0),
}
PATH_TO: dict[OrderStatus, tuple[OrderStatus, ...]] = {
    S.NEW: (),
    S.ACCEPTED: (S.ACCEPTED,),
    S.PARTIALLY_FILLED: (S.ACCEPTED, S.PARTIALLY_FILLED),
    S.FILLED: (S.ACCEPTED, S.FILLED),
    S.CANCELLED: (S.CANCELLED,),
    S.REJECTED: (S.REJECTED,),
    S.EXPIRED: (S.ACCEPTED, S.EXPIRED),
}


def order_in(status: OrderStatus) -> tuple[OrderManager, str]:
    oms, _ = manager()
    oms.submit(order())
    for step in PATH_TO[status]:
        STEP[step](oms, "o-1")
    assert oms.get("o-1").status is status
    return oms, "o-1"


# -- the state machine -------------------------------------------------------------------------------


def test_the_transition_table_is_the_documented_lifecycle() -> None:
    assert dict(ALLOWED_TRANSITIONS) == {
        S.NEW: {S.ACCEPTED, S.REJECTED, S.CANCELLED},
        S.ACCEPTED: {S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED},
        S.PARTIALLY_FILLED: {S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED},
        S.FILLED: set(),
        S.CANCELLED: set(),
        S.REJECTED: set(),
        S.EXPIRED: set(),
    }
    assert {S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED} == TERMINAL_STATUSES
    assert {S.NEW, S.ACCEPTED, S.PARTIALLY_FILLED} == OPEN_STATUSES


@pytest.mark.parametrize(
    ("current", "target"),
    [(current, target) for current in S for target in STEP if target in ALLOWED_TRANSITIONS[current]],
    ids=lambda status: status.value,
)
def test_an_allowed_transition_moves_the_order_and_records_an_event(current: OrderStatus, target: OrderStatus) -> None:
    oms, cid = order_in(current)
    before = oms.get(cid)

    after = STEP[target](oms, cid)

    assert after.status is target
    assert after.order.status is target
    assert oms.get(cid) == after
    assert after.events[:-1] == before.events
    assert (after.events[-1].previous, after.events[-1].status) == (current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [(current, target) for current in S for target in STEP if target not in ALLOWED_TRANSITIONS[current]],
    ids=lambda status: status.value,
)
def test_a_forbidden_transition_raises_and_changes_nothing(current: OrderStatus, target: OrderStatus) -> None:
    oms, cid = order_in(current)
    before = oms.get(cid)
    events = oms.events()

    with pytest.raises(IllegalTransition, match=f"cannot go from {current.value} to"):
        STEP[target](oms, cid)

    assert oms.get(cid) == before
    assert oms.events() == events


def test_a_fill_of_an_order_not_yet_accepted_is_illegal() -> None:
    oms, _ = manager()
    oms.submit(order())

    with pytest.raises(IllegalTransition, match="from new to partially_filled"):
        oms.fill("o-1", 1.0, 100.0)


class Lifecycle(RuleBasedStateMachine):
    """Random calls on a few orders, checked against a model of statuses and filled quantities."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FixedClock(START)
        self.oms = OrderManager(self.clock)
        self.model: dict[str, tuple[OrderStatus, Decimal]] = {}

    def attempt(self, cid: str, target: OrderStatus, call: Callable[[], ManagedOrder], filled: Decimal) -> None:
        status, _ = self.model[cid]
        self.clock.advance(timedelta(seconds=1))
        if target in ALLOWED_TRANSITIONS[status]:
            assert call().status is target
            self.model[cid] = (target, filled)
        else:
            with pytest.raises(IllegalTransition):
                call()

    @rule(number=st.integers(0, 3))
    def submit(self, number: int) -> None:
        cid = f"o-{number}"
        managed = self.oms.submit(order(cid, quantity=1.0))
        self.model.setdefault(cid, (S.NEW, Decimal(0)))
        assert managed.status is self.model[cid][0]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), status=st.sampled_from([S.ACCEPTED, S.REJECTED, S.CANCELLED, S.EXPIRED]))
    def move(self, data: st.DataObject, status: OrderStatus) -> None:
        cid = data.draw(st.sampled_from(sorted(self.model)))
        call = {
            S.ACCEPTED: lambda: self.oms.accept(cid),
            S.REJECTED: lambda: self.oms.reject(cid, "test"),
            S.CANCELLED: lambda: self.oms.cancel(cid, "test"),
            S.EXPIRED: lambda: self.oms.expire(cid, "test"),
        }[status]
        self.attempt(cid, status, call, self.model[cid][1])

    @precondition(lambda self: self.model)
    @rule(data=st.data(), tenths=st.integers(1, 4))
    def fill(self, data: st.DataObject, tenths: int) -> None:
        cid = data.draw(st.sampled_from(sorted(self.model)))
        status, filled = self.model[cid]
        size = Decimal(tenths) / 10
        if filled + size > 1:
            if status in (S.ACCEPTED, S.PARTIALLY_FILLED):
                with pytest.raises(InvalidOrder, match="overfills"):
                    self.oms.fill(cid, float(size), 100.0)
            return
        target = S.FILLED if filled + size == 1 else S.PARTIALLY_FILLED
        self.attempt(cid, target, lambda: self.oms.fill(cid, float(size), 100.0), filled + size)

    @invariant()
    def orders_agree_with_the_model(self) -> None:
        for cid, (status, filled) in self.model.items():
            managed = self.oms.get(cid)
            assert managed.status is status
            assert managed.filled_quantity == float(filled)
            assert [event.sequence for event in managed.events] == list(range(len(managed.events)))
            assert managed.events[-1].status is status
            assert all(event.previous is before.status for before, event in itertools.pairwise(managed.events))
        assert len(self.oms.events()) == sum(len(self.oms.get(cid).events) for cid in self.model)


TestLifecycle = Lifecycle.TestCase
TestLifecycle.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


# -- submission --------------------------------------------------------------------------------------


def test_submitting_the_same_order_again_returns_the_held_order_unchanged() -> None:
    oms, _ = manager()
    oms.submit(order())
    oms.accept("o-1")
    held = oms.fill("o-1", 4.0, 10.0)

    again = oms.submit(order())

    assert again == held
    assert len(oms.events()) == 3


@pytest.mark.parametrize(
    "other",
    [
        order(quantity=11.0),
        order(symbol="BBB"),
        order(time_in_force=TimeInForce.GTC),
    ],
    ids=["quantity", "symbol", "time_in_force"],
)
def test_reusing_a_client_order_id_for_another_order_raises_duplicate_order(other: Order) -> None:
    oms, _ = manager()
    oms.submit(order())

    with pytest.raises(DuplicateOrder, match="'o-1'"):
        oms.submit(other)


def test_resubmitting_an_order_for_another_signal_raises_duplicate_order() -> None:
    oms, _ = manager()
    oms.submit(order(), signal_id=uuid.uuid4())

    with pytest.raises(DuplicateOrder, match="signal"):
        oms.submit(order(), signal_id=uuid.uuid4())


def test_an_order_whose_id_is_not_derived_from_its_client_order_id_is_refused() -> None:
    oms, _ = manager()
    stray = Order(
        id=uuid.uuid4(), client_order_id="o-1", symbol="AAA", side=OrderSide.BUY, type=OrderType.MARKET, quantity=1
    )

    with pytest.raises(InvalidOrder, match="order_id_for"):
        oms.submit(stray)


def test_an_order_submitted_in_another_status_than_new_is_refused() -> None:
    oms, _ = manager()

    with pytest.raises(InvalidOrder, match="submitted filled"):
        oms.submit(order(status=S.FILLED))


def test_the_submission_event_is_sequence_zero_stamped_by_the_clock() -> None:
    oms, _ = manager()

    managed = oms.submit(order())

    [event] = managed.events
    assert (event.sequence, event.previous, event.status, event.timestamp) == (0, None, S.NEW, START)
    assert event.order_id == managed.id == order_id_for("o-1")
    assert managed.created_at == managed.updated_at == START


def test_calls_on_an_unknown_client_order_id_raise_unknown_order() -> None:
    oms, _ = manager()

    with pytest.raises(UnknownOrder, match="'nope'"):
        oms.accept("nope")
    assert "nope" not in oms


def test_open_orders_are_the_working_ones_of_the_symbol_in_submission_order() -> None:
    oms, _ = manager()
    for cid, symbol in (("a", "AAA"), ("b", "BBB"), ("c", "AAA"), ("d", "AAA")):
        oms.submit(order(cid, symbol=symbol))
    oms.accept("c")
    oms.reject("d", "limit")

    assert [managed.client_order_id for managed in oms.open_orders()] == ["a", "b", "c"]
    assert [managed.client_order_id for managed in oms.open_orders("AAA")] == ["a", "c"]


def test_a_manager_resumes_orders_and_their_events() -> None:
    oms, clock = manager()
    oms.submit(order())
    held = oms.accept("o-1")

    resumed = OrderManager(clock, [held])
    clock.advance(timedelta(minutes=1))
    filled = resumed.fill("o-1", 10.0, 5.0)

    assert filled.status is S.FILLED
    assert [event.sequence for event in filled.events] == [0, 1, 2]
    assert resumed.events() == filled.events


# -- fills ---------------------------------------------------------------------------------------------


def test_ten_fills_of_a_tenth_fill_an_order_of_one_exactly() -> None:
    oms, _ = manager()
    oms.submit(order(quantity=1.0))
    oms.accept("o-1")

    for _ in range(9):
        assert oms.fill("o-1", 0.1, 3.3).status is S.PARTIALLY_FILLED
    managed = oms.fill("o-1", 0.1, 3.3)

    assert managed.status is S.FILLED
    assert managed.filled_quantity == 1.0
    assert managed.remaining_quantity == 0.0
    assert managed.average_fill_price == 3.3


def test_the_average_fill_price_is_weighted_by_quantity() -> None:
    oms, _ = manager()
    oms.submit(order(quantity=4.0))
    oms.accept("o-1")
    oms.fill("o-1", 1.0, 10.0)

    managed = oms.fill("o-1", 3.0, 14.0)

    assert managed.average_fill_price == 13.0


@given(
    cents=st.lists(st.integers(1, 100_000), min_size=1, max_size=12),
    prices=st.lists(st.integers(1, 10_000_000), min_size=12, max_size=12),
)
@PROPERTY
def test_partial_fills_summing_to_the_quantity_fill_the_order_exactly(cents: list[int], prices: list[int]) -> None:
    parts = [Decimal(cent) / 100 for cent in cents]
    quantity = sum(parts, Decimal(0))
    fill_prices = [Decimal(price) / 1000 for price in prices]
    oms, clock = manager()
    oms.submit(order(quantity=float(quantity)))
    oms.accept("o-1")

    for part, price in zip(parts, fill_prices, strict=False):
        clock.advance(timedelta(seconds=1))
        managed = oms.fill("o-1", float(part), float(price))

    assert managed.status is S.FILLED
    assert managed.filled_quantity == float(quantity)
    assert managed.remaining_quantity == 0.0
    notional = sum((part * price for part, price in zip(parts, fill_prices, strict=False)), Decimal(0))
    assert managed.average_fill_price == float(notional / quantity)
    assert [event.sequence for event in managed.events] == list(range(len(parts) + 2))
    assert [event.status for event in managed.events[2:-1]] == [S.PARTIALLY_FILLED] * (len(parts) - 1)


def test_a_fill_beyond_the_remaining_quantity_is_refused_and_changes_nothing() -> None:
    oms, _ = manager()
    oms.submit(order(quantity=1.0))
    oms.accept("o-1")
    before = oms.fill("o-1", 0.7, 10.0)

    with pytest.raises(InvalidOrder, match="overfills"):
        oms.fill("o-1", 0.4, 10.0)
    assert oms.get("o-1") == before


@pytest.mark.parametrize(("quantity", "price"), [(0.0, 1.0), (-1.0, 1.0), (float("nan"), 1.0), (1.0, 0.0)])
def test_a_fill_of_a_non_positive_quantity_or_price_is_refused(quantity: float, price: float) -> None:
    oms, _ = manager()
    oms.submit(order())
    oms.accept("o-1")

    with pytest.raises(InvalidOrder, match="positive and finite"):
        oms.fill("o-1", quantity, price)


def test_a_cancelled_partial_fill_keeps_its_fills() -> None:
    oms, _ = manager()
    oms.submit(order())
    oms.accept("o-1")
    oms.fill("o-1", 2.5, 8.0)

    managed = oms.cancel("o-1", "user")

    assert (managed.status, managed.filled_quantity, managed.remaining_quantity) == (S.CANCELLED, 2.5, 7.5)
    assert managed.average_fill_price == 8.0
    assert not managed.is_open


# -- client order ids -------------------------------------------------------------------------------


def test_client_order_ids_are_deterministic_and_differ_by_every_part() -> None:
    signal = uuid.UUID(int=1)
    first = client_order_id_for(signal, "close", "abc")
    variants = [
        client_order_id_for(uuid.UUID(int=2), "close", "abc"),
        client_order_id_for(None, "close", "abc"),
        client_order_id_for(signal, "stop_loss", "abc"),
        client_order_id_for(signal, "close", "abd"),
        client_order_id_for(signal, "close"),
        client_order_id_for(signal, "close", "abc", 0),
    ]

    assert first == client_order_id_for(signal, "close", "abc")
    assert len(first) == 32 and int(first, 16) >= 0
    assert len({first, *variants}) == 1 + len(variants)


def test_a_client_order_id_is_the_hex_of_its_stable_id() -> None:
    signal = uuid.UUID(int=1)
    assert client_order_id_for(signal, "entry") == stable_id("client_order", signal, "entry").hex


def test_a_client_order_id_needs_a_uuid_signal_and_a_purpose() -> None:
    with pytest.raises(ValidationError, match="signal_id"):
        client_order_id_for("not a uuid", "entry")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="purpose"):
        client_order_id_for(uuid.UUID(int=1), "")
