"""Hypothesis strategies of plain JSON values and of every record of the audit chain, shared by the tests of
the canonical form (test_canonical.py), of the records (test_records.py) and of the domain types
(test_types.py)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from neuraltrade.backtest.config import BacktestConfig, SameBarExit
from neuraltrade.backtest.run_spec import RunSpec
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.canonical import MAX_SAFE_INTEGER, to_plain
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.trading.risk import RiskLimits, RiskRejection
from neuraltrade.trading.sizing import FixedFraction
from neuraltrade.types import (
    Direction,
    Fill,
    Observation,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Signal,
    TimeInForce,
)

#: A moment with microseconds, for examples.
MOMENT = datetime(2024, 3, 1, 14, 30, 0, 123_456, tzinfo=UTC)

# --- time ----------------------------------------------------------------------------------------------------

# Any fixed offset a `timezone` accepts, down to the microsecond, and the IANA zones with their DST rules.
fixed_offsets = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59, seconds=59), max_value=timedelta(hours=23, minutes=59, seconds=59)
).map(timezone)
zones = st.one_of(st.just(UTC), fixed_offsets, st.timezones())
# Years 1000 to 9999 (years below 1000 have their own tests): the UTC instant stays inside datetime's range.
aware_datetimes = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)

# --- plain JSON values ---------------------------------------------------------------------------------------

# Floats of every magnitude: anything finite, subnormals, and mantissas scaled over every decade (where the
# fixed/exponential boundaries of ECMAScript's Number-to-String lie).
subnormals = st.floats(min_value=-2.2250738585072014e-308, max_value=2.2250738585072014e-308)
decades = st.builds(
    lambda mantissa, exponent: float(f"{mantissa}e{exponent}"),
    st.integers(min_value=1, max_value=99_999_999_999_999_999),
    st.integers(min_value=-330, max_value=300),
).filter(lambda value: value != float("inf"))
floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), subnormals, decades, decades.map(lambda x: -x))
positive = st.floats(min_value=5e-324, max_value=1e300) | decades.filter(lambda value: 0 < value <= 1e300)
non_negative = st.just(0.0) | positive
safe_integers = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
# Any code point but lone surrogates (UTF-8 cannot encode them): controls, quotes, backslashes, U+2028,
# the private use area above the surrogates and astral characters all appear.
awkward = st.sampled_from(['"', "\\", "\x00", "\x1f", "\x7f", "\u2028", "\ue000", "\uffff", "\U0001f600", "/"])
texts = st.text(alphabet=st.one_of(st.characters(exclude_categories=["Cs"]), awkward), max_size=12)
names = texts.filter(bool)
# What a signal's text fields hold: any of the above but NUL, which no database stores (PostgreSQL's text).
storable_texts = texts.filter(lambda text: "\x00" not in text)
storable_names = storable_texts.filter(bool)
scalars = st.one_of(st.none(), st.booleans(), safe_integers, floats, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=5),
    max_leaves=25,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)
hex_digests = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)

# --- records -------------------------------------------------------------------------------------------------

links = st.builds(
    CausalLink, cause_id=st.uuids(), cause_kind=st.sampled_from(CauseKind), relation=st.sampled_from(Relation)
)


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    return Observation(
        id=draw(st.uuids()),
        timestamp=draw(aware_datetimes),
        symbol=draw(names),
        price=draw(positive),
        volume=draw(non_negative),
        spread=draw(non_negative),
        metadata=draw(json_objects),
        embedding=draw(st.none() | st.lists(floats, max_size=16).map(tuple)),
    )


@st.composite
def signals(draw: st.DrawFn) -> Signal:
    return Signal(
        id=draw(st.uuids()),
        strategy_id=draw(storable_names),
        timestamp=draw(aware_datetimes),
        symbol=draw(storable_names),
        direction=draw(st.sampled_from(Direction)),
        confidence=draw(st.floats(min_value=0.0, max_value=1.0) | st.sampled_from([0, 1])),
        features=draw(st.dictionaries(texts, floats, max_size=6)),
        # No lone surrogate either: no UTF-8 text holds one, and the canonical form refuses it by name.
        reasoning=draw(st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=40)),
        causal_links=draw(st.lists(links, max_size=5).map(tuple)),
    )


@st.composite
def orders(draw: st.DrawFn) -> Order:
    kind = draw(st.sampled_from(OrderType))
    return Order(
        id=draw(st.uuids()),
        client_order_id=draw(names),
        symbol=draw(names),
        side=draw(st.sampled_from(OrderSide)),
        type=kind,
        quantity=draw(positive),
        limit_price=draw(positive) if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=draw(positive) if kind in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
        time_in_force=draw(st.sampled_from(TimeInForce)),
        status=draw(st.sampled_from(OrderStatus)),
    )


@st.composite
def fills(draw: st.DrawFn) -> Fill:
    order_id = draw(st.uuids())
    sequence = draw(st.integers(min_value=0, max_value=MAX_SAFE_INTEGER))
    return Fill(
        id=Fill.id_for(order_id, sequence),
        order_id=order_id,
        sequence=sequence,
        timestamp=draw(aware_datetimes),
        symbol=draw(names),
        side=draw(st.sampled_from(OrderSide)),
        quantity=draw(positive),
        price=draw(positive),
        commission=draw(non_negative),
    )


@st.composite
def closed_trades(draw: st.DrawFn) -> ClosedTrade:
    bars = st.integers(min_value=0, max_value=10**9)
    return ClosedTrade(
        symbol=draw(names),
        entry_bar=draw(bars),
        exit_bar=draw(bars),
        # In UTC, as the engine makes them (from the market's UTC timeline): a named tuple does not normalise
        # its fields, and a time in another zone's DST gap never compares equal to its UTC instant.
        entry_time=draw(aware_datetimes).astimezone(UTC),
        exit_time=draw(aware_datetimes).astimezone(UTC),
        size=draw(positive | positive.map(lambda value: -value)),
        entry_price=draw(positive),
        exit_price=draw(positive),
        commission=draw(non_negative),
        signal_id=draw(st.none() | st.uuids()),
        entry_order_id=draw(st.uuids()),
        exit_order_id=draw(st.uuids()),
        entry_fill_id=draw(st.uuids()),
        exit_fill_id=draw(st.uuids()),
        exit_reason=draw(st.sampled_from(ExitReason)),
        stop_loss=draw(st.none() | positive),
        take_profit=draw(st.none() | positive),
        tag=draw(st.none() | texts),
        decision_bar=draw(st.none() | bars),
    )


@st.composite
def run_specs(draw: st.DrawFn) -> RunSpec:
    config = BacktestConfig(
        cash=draw(st.floats(min_value=1.0, max_value=1e12) | st.integers(min_value=1, max_value=10**12)),
        commission=draw(st.floats(min_value=0.0, max_value=0.05)),
        same_bar_exit=draw(st.sampled_from(SameBarExit)),
        max_participation=draw(st.none() | st.floats(min_value=0.01, max_value=1.0)),
    )
    sizing = {"kind": "fixed_fraction", **to_plain(FixedFraction(fraction=draw(st.floats(0.01, 1.0))))}
    return RunSpec(
        strategy=draw(names),
        strategy_id=draw(names),
        strategy_parameters=draw(json_objects),
        backtest=to_plain(config),
        risk_limits=draw(st.none() | st.floats(1.0, 10.0).map(lambda most: to_plain(RiskLimits(max_leverage=most)))),
        sizing=draw(st.none() | st.just(sizing)),
        memory_digest=draw(st.none() | hex_digests),
        symbols=tuple(draw(st.lists(names, min_size=1, max_size=3))),
        data_digest=draw(hex_digests),
    )


@st.composite
def risk_rejections(draw: st.DrawFn) -> RiskRejection:
    return RiskRejection(
        rule=draw(st.sampled_from([field.name for field in dataclasses.fields(RiskLimits)])),
        reason=draw(st.text(max_size=30)),
        client_order_id=draw(names),
        symbol=draw(names),
        timestamp=draw(aware_datetimes),
        details=draw(st.dictionaries(texts, floats, max_size=3)),
        signal_id=draw(st.none() | st.uuids()),
    )


# --- examples ------------------------------------------------------------------------------------------------


def a_link(number: int, kind: CauseKind = CauseKind.MEMORY_ITEM, relation: Relation = Relation.RECALLED) -> CausalLink:
    """An edge to the cause ``UUID(int=number)``."""
    return CausalLink(cause_id=uuid.UUID(int=number), cause_kind=kind, relation=relation)


def a_signal(**changes: Any) -> Signal:
    """A valid signal, with `changes`."""
    fields: dict[str, Any] = {
        "id": uuid.UUID(int=2),
        "strategy_id": "momentum",
        "timestamp": MOMENT,
        "symbol": "NVDA",
        "direction": Direction.LONG,
        "confidence": 0.5,
    }
    return Signal(**{**fields, **changes})
