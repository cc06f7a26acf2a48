"""Behaviour of the pre-trade risk checks (`neuraltrade.trading.risk`)."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.canonical import canonical_json
from neuraltrade.errors import ConfigError, SerializationError, ValidationError
from neuraltrade.trading.risk import (
    TOLERANCE,
    OrderRequest,
    PortfolioState,
    RiskDecision,
    RiskLimits,
    RiskManager,
    RiskRejection,
)

MOMENT = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
PROPERTY = settings(max_examples=200, deadline=None)


def order(quantity: float, *, symbol: str = "NVDA", price: float = 100.0, client_order_id: str = "o-1") -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id, symbol=symbol, quantity=quantity, price=price, timestamp=MOMENT
    )


def book(
    *,
    equity: float = 100_000.0,
    positions: dict[str, float] | None = None,
    prices: dict[str, float] | None = None,
    day_start_equity: float | None = None,
    peak_equity: float | None = None,
) -> PortfolioState:
    return PortfolioState(
        timestamp=MOMENT,
        equity=equity,
        positions=positions or {},
        prices=prices or {},
        day_start_equity=equity if day_start_equity is None else day_start_equity,
        peak_equity=equity if peak_equity is None else peak_equity,
    )


def check(limits: RiskLimits, request: OrderRequest, state: PortfolioState) -> RiskDecision:
    return RiskManager(limits).check(request, state)


# --- every rule rejects when breached and passes at its boundary ---------------------------------------------

# (limits, book and order exactly at the limit, book and order just beyond it, figures the reason names)
BOUNDARIES: list[tuple[RiskLimits, PortfolioState, float, PortfolioState, float, tuple[str, ...]]] = [
    (RiskLimits(max_position_notional=10_000.0), book(), 100, book(), 101, ("NVDA", "10,100.00", "10,000.00")),
    (
        RiskLimits(max_position_pct=0.1),
        book(),
        100,
        book(),
        101,
        ("NVDA", "10,100.00", "10.10%", "10.00%", "100,000.00"),
    ),
    (
        RiskLimits(max_gross_exposure=1.0),
        book(positions={"AAPL": 450.0}, prices={"AAPL": 200.0}),
        100,
        book(positions={"AAPL": 450.0}, prices={"AAPL": 200.0}),
        101,
        ("100,100.00", "1.001", "max_gross_exposure 1 ", "100,000.00"),
    ),
    (
        RiskLimits(max_net_exposure=0.5),
        book(positions={"AAPL": -100.0}, prices={"AAPL": 200.0}),
        -300,
        book(positions={"AAPL": -100.0}, prices={"AAPL": 200.0}),
        -301,
        ("-50,100.00", "0.501", "max_net_exposure 0.5 "),
    ),
    (RiskLimits(max_leverage=2.0), book(), 2_000, book(), 2_001, ("leverage 2.001", "200,100.00", "max_leverage 2 ")),
    (RiskLimits(max_order_notional=5_000.0), book(), -50, book(), -51, ("-51", "5,100.00", "5,000.00", "100.00")),
    (
        RiskLimits(daily_loss_limit_pct=0.05),
        book(equity=95_000.0, day_start_equity=100_000.0),
        10,
        book(equity=94_999.0, day_start_equity=100_000.0),
        10,
        ("94,999.00", "5.00%", "100,000.00"),
    ),
    (
        RiskLimits(max_drawdown_halt_pct=0.2),
        book(equity=100_000.0, peak_equity=125_000.0),
        10,
        book(equity=99_999.0, peak_equity=125_000.0),
        10,
        ("99,999.00", "20.00%", "125,000.00"),
    ),
]
IDS = [next(name for name, value in vars(case[0]).items() if value is not None) for case in BOUNDARIES]
Boundary = tuple[RiskLimits, PortfolioState, float, PortfolioState, float, tuple[str, ...]]


@pytest.mark.parametrize("case", BOUNDARIES, ids=IDS)
def test_every_rule_passes_an_order_exactly_at_its_limit(case: Boundary) -> None:
    limits, state, quantity, _, _, _ = case

    decision = check(limits, order(quantity), state)

    assert decision.approved
    assert decision.rejections == ()


@pytest.mark.parametrize("case", BOUNDARIES, ids=IDS)
def test_every_rule_rejects_an_order_beyond_its_limit_with_a_reason_naming_the_values(case: Boundary) -> None:
    limits, _, _, state, quantity, figures = case
    (rule,) = (name for name, value in vars(limits).items() if value is not None)

    decision = check(limits, order(quantity, client_order_id="order-42"), state)

    assert not decision.approved
    assert decision.rules == (rule,)
    (rejection,) = decision.rejections
    assert (rejection.rule, rejection.client_order_id, rejection.symbol) == (rule, "order-42", "NVDA")
    assert rejection.timestamp == MOMENT
    for figure in ("order-42", rule, *figures):
        assert figure in rejection.reason
    assert rejection.details["limit"] == getattr(limits, rule)
    assert rejection.details["value"] > rejection.details["limit"]


def test_the_position_rule_names_the_issue_example() -> None:
    decision = check(RiskLimits(max_position_notional=10_000.0), order(150, client_order_id="X"), book())

    assert decision.rejections[0].reason.startswith(
        "order X would make NVDA position 15,000.00 notional, above max_position_notional 10,000.00"
    )


def test_a_check_runs_every_rule_and_lists_every_breach_in_limit_order() -> None:
    limits = RiskLimits(
        max_position_notional=10_000.0,
        max_position_pct=0.05,
        max_gross_exposure=0.1,
        max_net_exposure=0.1,
        max_leverage=0.1,
        max_order_notional=1_000.0,
        daily_loss_limit_pct=0.01,
        max_drawdown_halt_pct=0.01,
    )
    state = book(equity=90_000.0, day_start_equity=100_000.0, peak_equity=100_000.0)

    decision = check(limits, order(500), state)

    assert decision.rules == tuple(vars(limits))
    assert all(rejection.reason for rejection in decision.rejections)


def test_no_limits_approve_every_order() -> None:
    assert check(RiskLimits(), order(1e9), book()).approved


def test_a_symbol_is_valued_at_the_order_price_not_its_stored_price() -> None:
    state = book(positions={"NVDA": 50.0}, prices={"NVDA": 1.0})

    decision = check(RiskLimits(max_position_notional=10_000.0), order(50, price=100.0), state)

    assert decision.approved
    assert not check(RiskLimits(max_position_notional=10_000.0), order(51, price=100.0), state).approved


# --- orders that reduce risk ---------------------------------------------------------------------------------

HALTED_LIMITS = RiskLimits(
    max_position_notional=10_000.0,
    max_position_pct=0.05,
    max_gross_exposure=0.5,
    max_net_exposure=0.5,
    max_leverage=0.5,
    daily_loss_limit_pct=0.05,
    max_drawdown_halt_pct=0.1,
)


def halted_book(units: float) -> PortfolioState:
    # 80 % of day-start and peak equity, a position of 1.25 x equity: beyond every limit above.
    return book(
        equity=80_000.0,
        positions={"NVDA": units},
        prices={"NVDA": 100.0},
        day_start_equity=100_000.0,
        peak_equity=100_000.0,
    )


@pytest.mark.parametrize(
    ("units", "quantity"), [(1_000, -1_000), (1_000, -400), (1_000, -1), (-1_000, 1_000), (-1_000, 250)]
)
def test_a_halted_book_beyond_every_limit_can_still_close_or_shrink_a_position(units: float, quantity: float) -> None:
    decision = check(HALTED_LIMITS, order(quantity), halted_book(units))

    assert decision.approved, [rejection.reason for rejection in decision.rejections]


@pytest.mark.parametrize(("units", "quantity"), [(1_000, 1), (1_000, -1_500), (-1_000, -1), (-1_000, 1_001)])
def test_a_halted_book_rejects_orders_that_add_or_flip_a_position(units: float, quantity: float) -> None:
    decision = check(HALTED_LIMITS, order(quantity), halted_book(units))

    assert {"daily_loss_limit_pct", "max_drawdown_halt_pct"} <= set(decision.rules)


def test_a_halted_book_rejects_a_new_position_in_another_symbol_even_as_a_hedge() -> None:
    limits = RiskLimits(daily_loss_limit_pct=0.05, max_drawdown_halt_pct=0.1)

    decision = check(limits, order(-10, symbol="QQQ", price=400.0), halted_book(1_000))

    assert decision.rules == ("daily_loss_limit_pct", "max_drawdown_halt_pct")


def test_a_hedge_that_moves_net_exposure_toward_zero_passes_the_net_limit_above_it() -> None:
    state = book(positions={"NVDA": 1_000.0}, prices={"NVDA": 100.0})  # net 1.0 x equity

    hedge = check(RiskLimits(max_net_exposure=0.5), order(-200, symbol="QQQ", price=100.0), state)
    more = check(RiskLimits(max_net_exposure=0.5), order(10, symbol="QQQ", price=100.0), state)

    assert hedge.approved
    assert more.rules == ("max_net_exposure",)


def test_the_same_hedge_is_rejected_by_the_gross_limit_it_raises() -> None:
    state = book(positions={"NVDA": 1_000.0}, prices={"NVDA": 100.0})

    decision = check(RiskLimits(max_gross_exposure=1.0), order(-200, symbol="QQQ", price=100.0), state)

    assert decision.rules == ("max_gross_exposure",)
    assert decision.rejections[0].details == {"limit": 1.0, "value": 1.2, "before": 1.0}


def test_the_order_notional_limit_applies_to_closing_orders_too() -> None:
    decision = check(RiskLimits(max_order_notional=50_000.0), order(-1_000), halted_book(1_000))

    assert decision.rules == ("max_order_notional",)


# --- validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"price": math.nan}, "price"),
        ({"price": 0.0}, "price"),
        ({"price": -1.0}, "price"),
        ({"quantity": 0.0}, "quantity"),
        ({"quantity": math.inf}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"symbol": ""}, "symbol"),
        ({"client_order_id": ""}, "client_order_id"),
        ({"timestamp": datetime(2024, 3, 1)}, "naive"),
    ],
)
def test_an_invalid_order_request_is_refused_naming_the_value(fields: dict[str, Any], named: str) -> None:
    arguments: dict[str, Any] = {
        "client_order_id": "o-1",
        "symbol": "NVDA",
        "quantity": 1.0,
        "price": 100.0,
        "timestamp": MOMENT,
    }
    with pytest.raises(ValidationError, match=named):
        OrderRequest(**(arguments | fields))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"equity": 0.0}, "equity"),
        ({"equity": -5.0}, "equity"),
        ({"equity": math.nan}, "equity"),
        ({"day_start_equity": 0.0}, "day_start_equity"),
        ({"peak_equity": math.inf}, "peak_equity"),
        ({"positions": {"NVDA": math.nan}}, "position in NVDA"),
        ({"prices": {"NVDA": math.nan}}, "price of NVDA"),
        ({"prices": {"NVDA": 0.0}}, "price of NVDA"),
        ({"timestamp": datetime(2024, 3, 1)}, "naive"),
    ],
)
def test_an_invalid_portfolio_state_is_refused_naming_the_value(fields: dict[str, Any], named: str) -> None:
    arguments: dict[str, Any] = {
        "timestamp": MOMENT,
        "equity": 1.0,
        "positions": {},
        "prices": {},
        "day_start_equity": 1.0,
        "peak_equity": 1.0,
    }
    with pytest.raises(ValidationError, match=named):
        PortfolioState(**(arguments | fields))


def test_a_position_without_a_price_is_refused_naming_the_symbol() -> None:
    state = book(positions={"ORCL": 10.0})

    with pytest.raises(ValidationError, match="ORCL"):
        check(RiskLimits(max_gross_exposure=1.0), order(1), state)


def test_timestamps_in_other_zones_are_kept_in_utc() -> None:
    moment = datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))

    request = replace(order(1), timestamp=moment)

    assert request.timestamp == moment
    assert request.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_position_notional": 0.0}, "max_position_notional"),
        ({"max_gross_exposure": -1.0}, "max_gross_exposure"),
        ({"max_leverage": math.nan}, "max_leverage"),
        ({"max_order_notional": math.inf}, "max_order_notional"),
        ({"max_net_exposure": True}, "max_net_exposure"),
        ({"max_position_pct": "0.1"}, "max_position_pct"),
        ({"daily_loss_limit_pct": 1.0}, "daily_loss_limit_pct"),
        ({"max_drawdown_halt_pct": 5.0}, "max_drawdown_halt_pct"),
    ],
)
def test_an_invalid_limit_is_refused_naming_it(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        RiskLimits(**fields)


def test_limits_have_a_stable_digest_that_changes_with_any_limit() -> None:
    limits = RiskLimits(max_leverage=2.0, daily_loss_limit_pct=0.03)

    assert limits.digest == RiskLimits(max_leverage=2, daily_loss_limit_pct=0.03).digest
    assert len(limits.digest) == 64
    assert limits.digest != replace(limits, max_leverage=2.5).digest
    assert limits.digest != replace(limits, max_order_notional=1e6).digest


# --- rejections are storable ---------------------------------------------------------------------------------


def test_a_rejection_round_trips_through_its_canonical_json() -> None:
    (rejection,) = check(RiskLimits(max_order_notional=1.0), order(3), book()).rejections

    text = rejection.to_json()

    assert text == canonical_json(rejection).decode("utf-8")
    assert RiskRejection.from_json(text) == rejection
    assert RiskRejection.from_plain(rejection.to_plain()) == rejection
    assert json.loads(text) == {
        "kind": "risk_rejection",
        "schema_version": 1,
        "client_order_id": "o-1",
        "details": {"limit": 1.0, "value": 300.0},
        "reason": rejection.reason,
        "rule": "max_order_notional",
        "signal_id": None,
        "symbol": "NVDA",
        "timestamp": "2024-03-01T14:30:00.000000Z",
    }


def test_a_rejection_names_the_signal_of_the_refused_order() -> None:
    signal = uuid.UUID(int=5)
    request = replace(order(3), signal_id=signal)
    (rejection,) = check(RiskLimits(max_order_notional=1.0), request, book()).rejections
    assert rejection.signal_id == signal
    assert RiskRejection.from_json(rejection.to_json()) == rejection
    # A rejection stored before rejections were records (no kind, no signal) still reads.
    old = ("kind", "schema_version", "signal_id")
    plain = {key: value for key, value in rejection.to_plain().items() if key not in old}
    assert RiskRejection.from_plain(plain) == replace(rejection, signal_id=None)


def test_a_rejection_of_an_unknown_rule_or_malformed_json_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_fun"):
        RiskRejection(rule="max_fun", reason="x", client_order_id="o", symbol="S", timestamp=MOMENT)
    with pytest.raises(SerializationError, match="malformed"):
        RiskRejection.from_json("{")
    with pytest.raises(SerializationError, match="'reason'"):
        RiskRejection.from_json('{"kind": "risk_rejection", "schema_version": 1, "rule": "max_leverage"}')


# --- properties ----------------------------------------------------------------------------------------------

SYMBOLS = ("NVDA", "ORCL", "YHOO")
units = st.floats(min_value=-5_000, max_value=5_000, allow_nan=False).map(lambda value: round(value))
prices = st.floats(min_value=1.0, max_value=500.0, allow_nan=False)
optional = st.none() | st.floats(min_value=0.05, max_value=3.0, allow_nan=False)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RiskLimits, OrderRequest, PortfolioState]:
    limits = RiskLimits(
        max_position_notional=draw(st.none() | st.floats(min_value=1_000, max_value=500_000)),
        max_position_pct=draw(optional),
        max_gross_exposure=draw(optional),
        max_net_exposure=draw(optional),
        max_leverage=draw(optional),
        max_order_notional=draw(st.none() | st.floats(min_value=1_000, max_value=500_000)),
        daily_loss_limit_pct=draw(st.none() | st.floats(min_value=0.01, max_value=0.5)),
        max_drawdown_halt_pct=draw(st.none() | st.floats(min_value=0.01, max_value=0.5)),
    )
    equity = draw(st.floats(min_value=10_000, max_value=1_000_000))
    state = PortfolioState(
        timestamp=MOMENT,
        equity=equity,
        positions={symbol: draw(units) for symbol in SYMBOLS},
        prices={symbol: draw(prices) for symbol in SYMBOLS},
        day_start_equity=equity * draw(st.floats(min_value=0.8, max_value=1.3)),
        peak_equity=equity * draw(st.floats(min_value=1.0, max_value=1.6)),
    )
    quantity = draw(units.filter(lambda value: value != 0))
    request = order(quantity, symbol=draw(st.sampled_from(SYMBOLS)), price=draw(prices))
    return limits, request, state


def exposures(request: OrderRequest, state: PortfolioState, *, after: bool) -> tuple[float, float, float]:
    """Return (|position| notional, gross, net) of the book, restated independently of the module."""
    positions = dict(state.positions)
    if after:
        positions[request.symbol] = positions.get(request.symbol, 0.0) + request.quantity
    values = {
        symbol: units * (request.price if symbol == request.symbol else state.prices[symbol])
        for symbol, units in positions.items()
    }
    return abs(values[request.symbol]), sum(abs(value) for value in values.values()), sum(values.values())


def within(value: float, limit: float) -> bool:
    return value <= limit * (1 + TOLERANCE)


@PROPERTY
@given(scenarios())
def test_an_approved_order_never_leaves_an_exposure_above_its_limit_unless_it_reduced_it(
    scenario: tuple[RiskLimits, OrderRequest, PortfolioState],
) -> None:
    limits, request, state = scenario
    decision = check(limits, request, state)
    position_before, gross_before, net_before = exposures(request, state, after=False)
    position_after, gross_after, net_after = exposures(request, state, after=True)
    equity = state.equity

    if decision.approved:
        if limits.max_gross_exposure is not None:
            assert within(gross_after / equity, limits.max_gross_exposure) or gross_after <= gross_before
        if limits.max_leverage is not None:
            assert within(gross_after / equity, limits.max_leverage) or gross_after <= gross_before
        if limits.max_net_exposure is not None:
            assert within(abs(net_after) / equity, limits.max_net_exposure) or abs(net_after) <= abs(net_before)
        if limits.max_position_notional is not None:
            assert within(position_after, limits.max_position_notional) or position_after <= position_before
        if limits.max_order_notional is not None:
            assert within(abs(request.quantity) * request.price, limits.max_order_notional)


@PROPERTY
@given(scenarios())
def test_an_order_that_shrinks_the_only_position_is_never_rejected_by_a_limit_that_contains_risk(
    scenario: tuple[RiskLimits, OrderRequest, PortfolioState],
) -> None:
    limits, request, state = scenario
    held = state.positions[request.symbol]
    if held == 0:
        return
    # With one position, shrinking it shrinks the position, gross and net alike; the part sold varies.
    single = replace(state, positions={request.symbol: held})
    shrink = replace(request, quantity=-math.copysign(max(1.0, abs(request.quantity) % abs(held)), held))

    decision = check(limits, shrink, single)

    assert set(decision.rules) <= {"max_order_notional"}


@PROPERTY
@given(scenarios())
def test_a_decision_lists_each_configured_rule_at_most_once_and_is_deterministic(
    scenario: tuple[RiskLimits, OrderRequest, PortfolioState],
) -> None:
    limits, request, state = scenario

    decision = check(limits, request, state)

    assert len(set(decision.rules)) == len(decision.rules)
    assert all(getattr(limits, rule) is not None for rule in decision.rules)
    assert decision == check(limits, request, state)
    assert decision.approved == (decision.rejections == ())
    for rejection in decision.rejections:
        assert RiskRejection.from_json(rejection.to_json()) == rejection
