"""Behaviour of the domain records (`neuraltrade.types`): invariants, time zones and JSON round trips.

The canonical form itself is specified in test_canonical.py, the records' canonical forms in test_records.py.
Properties draw timestamps between the years 1000 and 9999; years below 1000 have their own tests.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.canonical import (
    canonical_json,
    format_microseconds,
    format_timestamp,
    parse_timestamp,
    to_plain,
)
from neuraltrade.errors import SerializationError, ValidationError
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.types import (
    Bar,
    Observation,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Signal,
    TimeInForce,
)
from tests.domain.record_support import MOMENT, a_signal, aware_datetimes, observations, orders, signals

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROPERTY = settings(max_examples=75, deadline=None)

# --- strategies -------------------------------------------------------------------------------------------

naive_datetimes = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30))
symbols = st.text(min_size=1, max_size=12)
prices = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False).filter(lambda x: x > 0)
non_negative = st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)


@st.composite
def bars(draw: st.DrawFn) -> Bar:
    low, first, second, high = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
    open_, close = (first, second) if draw(st.booleans()) else (second, first)
    return Bar(
        symbol=draw(symbols),
        timestamp=draw(aware_datetimes),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=draw(non_negative),
        spread=draw(st.none() | non_negative),
    )


def a_bar(**changes: Any) -> Bar:
    fields: dict[str, Any] = {
        "symbol": "NVDA",
        "timestamp": MOMENT,
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.5,
        "volume": 1_000.0,
    }
    return Bar(**{**fields, **changes})


def an_observation(**changes: Any) -> Observation:
    fields: dict[str, Any] = {
        "id": uuid.UUID(int=1),
        "timestamp": MOMENT,
        "symbol": "NVDA",
        "price": 10.0,
        "volume": 5.0,
        "spread": 0.001,
    }
    return Observation(**{**fields, **changes})


def an_order(**changes: Any) -> Order:
    fields: dict[str, Any] = {
        "id": uuid.UUID(int=3),
        "client_order_id": "client-42",
        "symbol": "NVDA",
        "side": OrderSide.BUY,
        "type": OrderType.MARKET,
        "quantity": 10.0,
    }
    return Order(**{**fields, **changes})


# --- JSON round trips ---------------------------------------------------------------------------------------


def _is_utc(moment: datetime) -> bool:
    return moment.utcoffset() == timedelta(0)


@PROPERTY
@given(bar=bars())
def test_a_bar_round_trips_through_json_to_the_microsecond(bar: Bar) -> None:
    text = bar.to_json()
    restored = Bar.from_json(text)
    assert restored == bar
    assert restored.timestamp == bar.timestamp and _is_utc(restored.timestamp)
    assert restored.to_json() == text


@PROPERTY
@given(observation=observations())
def test_an_observation_round_trips_through_json_with_or_without_embedding(observation: Observation) -> None:
    text = observation.to_json()
    restored = Observation.from_json(text)
    assert restored == observation
    assert restored.embedding == observation.embedding
    assert restored.metadata == observation.metadata
    assert _is_utc(restored.timestamp)
    assert restored.to_json() == text


@PROPERTY
@given(signal=signals())
def test_a_signal_round_trips_through_json_with_its_causal_links_in_order(signal: Signal) -> None:
    text = signal.to_json()
    restored = Signal.from_json(text)
    assert restored == signal
    assert restored.causal_links == signal.causal_links
    assert _is_utc(restored.timestamp)
    assert restored.to_json() == text


@PROPERTY
@given(order=orders())
def test_an_order_of_every_type_round_trips_through_json(order: Order) -> None:
    text = order.to_json()
    assert Order.from_json(text) == order
    assert Order.from_json(text).to_json() == text


@pytest.mark.parametrize("kind", list(OrderType))
@pytest.mark.parametrize("time_in_force", list(TimeInForce))
@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_order_type_time_in_force_and_status_survives_json(
    kind: OrderType, time_in_force: TimeInForce, status: OrderStatus
) -> None:
    order = an_order(
        type=kind,
        limit_price=101.5 if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=99.25 if kind in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
        time_in_force=time_in_force,
        status=status,
    )
    restored = Order.from_json(order.to_json())
    assert (restored.type, restored.time_in_force, restored.status) == (kind, time_in_force, status)
    assert restored == order


@PROPERTY
@given(moment=aware_datetimes)
def test_records_normalise_any_zone_to_the_same_utc_instant(moment: datetime) -> None:
    bar = a_bar(timestamp=moment)
    # Against the UTC instant: Python never calls a time in a DST fold or gap equal to one in another zone.
    assert bar.timestamp == moment.astimezone(UTC)
    assert bar.timestamp.tzinfo is UTC
    assert bar.to_json() == a_bar(timestamp=moment.astimezone(UTC)).to_json()
    assert json.loads(bar.to_json())["timestamp"] == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_timestamp_is_written_as_utc_with_six_fractional_digits_and_a_z() -> None:
    moment = datetime(2024, 1, 2, 8, 4, 5, 6, tzinfo=timezone(timedelta(hours=5)))
    assert format_timestamp(moment) == "2024-01-02T03:04:05.000006Z"
    assert json.loads(a_bar(timestamp=moment).to_json())["timestamp"] == "2024-01-02T03:04:05.000006Z"


@PROPERTY
@given(moment=aware_datetimes)
def test_parsing_a_formatted_timestamp_gives_back_the_instant(moment: datetime) -> None:
    parsed = parse_timestamp(format_timestamp(moment))
    assert parsed == moment.astimezone(UTC) and _is_utc(parsed)


# --- signal confidence and causal links ---------------------------------------------------------------------


@PROPERTY
@given(
    confidence=st.one_of(
        st.floats(max_value=0.0, exclude_max=True, allow_nan=False),
        st.floats(min_value=1.0, exclude_min=True, allow_nan=False),
        st.integers().filter(lambda value: value not in (0, 1)),
    )
)
def test_a_confidence_outside_zero_to_one_is_refused_naming_the_value(confidence: float) -> None:
    with pytest.raises(ValidationError) as raised:
        a_signal(confidence=confidence)
    assert repr(confidence) in str(raised.value)


@pytest.mark.parametrize("confidence", [math.nan, True, False, "0.5", None])
def test_a_confidence_that_is_nan_a_bool_or_not_a_number_is_refused_naming_it(confidence: object) -> None:
    with pytest.raises(ValidationError) as raised:
        a_signal(confidence=confidence)
    assert repr(confidence) in str(raised.value)


@pytest.mark.parametrize("confidence", [0, 1, 0.0, 1.0, 0.5, 5e-324])
def test_a_confidence_on_or_inside_the_bounds_is_accepted(confidence: float) -> None:
    assert a_signal(confidence=confidence).confidence == confidence


@PROPERTY
@given(causes=st.lists(st.sampled_from([uuid.UUID(int=n) for n in range(1, 6)]), max_size=20))
def test_causal_links_keep_each_edge_once_in_first_seen_order(causes: list[uuid.UUID]) -> None:
    edges = [
        CausalLink(cause_id=cause, cause_kind=CauseKind.MEMORY_ITEM, relation=Relation.RECALLED) for cause in causes
    ]
    assert a_signal(causal_links=edges).causal_links == tuple(dict.fromkeys(edges))


@pytest.mark.parametrize("cause", ["00000000-0000-0000-0000-000000000001", 1, None, uuid.UUID(int=1)], ids=repr)
def test_a_causal_link_that_is_not_a_typed_edge_is_refused_naming_it(cause: object) -> None:
    with pytest.raises(ValidationError) as raised:
        a_signal(causal_links=[cause])
    assert repr(cause) in str(raised.value)


@pytest.mark.parametrize(
    ("changes", "named"),
    [({"cause_kind": "planet"}, "planet"), ({"relation": "caused"}, "caused"), ({"cause_id": "x"}, "'x'")],
)
def test_a_causal_link_of_an_unknown_kind_or_relation_is_refused_naming_it(changes: dict[str, Any], named: str) -> None:
    fields: dict[str, Any] = {"cause_id": uuid.UUID(int=1), "cause_kind": "observation", "relation": "observed"}
    with pytest.raises(ValidationError, match=re.escape(named)):
        CausalLink(**{**fields, **changes})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True])
def test_a_signal_feature_that_is_not_a_finite_number_is_refused_naming_the_feature(value: float) -> None:
    with pytest.raises(ValidationError, match="'momentum_5d'"):
        a_signal(features={"momentum_5d": value})


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"reasoning": "crossed\x00over"}, "signal reasoning holds a NUL character (U+0000) at 7"),
        ({"symbol": "AA\x00PL"}, "signal symbol holds a NUL"),
        ({"strategy_id": ""}, "signal strategy_id must not be empty"),
        ({"reasoning": 7}, "signal reasoning must be text, was 7"),
    ],
)
def test_signal_text_no_database_can_store_is_refused_naming_the_field(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(named)):
        a_signal(**changes)


# --- time zones ---------------------------------------------------------------------------------------------


NAIVE = datetime(2024, 3, 1, 14, 30, 0, 123_456)


@pytest.mark.parametrize(
    "construct",
    [
        lambda moment: a_bar(timestamp=moment),
        lambda moment: an_observation(timestamp=moment),
        lambda moment: a_signal(timestamp=moment),
        lambda moment: Observation.id_for("NVDA", moment),
    ],
    ids=["bar", "observation", "signal", "observation_id"],
)
def test_a_naive_timestamp_is_refused_everywhere_naming_the_value(construct: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        construct(NAIVE)
    assert NAIVE.isoformat() in str(raised.value)


@PROPERTY
@given(moment=naive_datetimes)
def test_any_naive_datetime_is_refused_by_records_and_by_the_canonical_form(moment: datetime) -> None:
    with pytest.raises(ValidationError, match=re.escape(moment.isoformat())):
        a_bar(timestamp=moment)
    with pytest.raises(SerializationError, match=re.escape(moment.isoformat())):
        canonical_json({"at": moment})


def test_a_timestamp_text_without_zone_is_refused_when_read() -> None:
    text = a_bar().to_json().replace("14:30:00.123456Z", "14:30:00.123456")
    with pytest.raises(SerializationError, match=re.escape("2024-03-01T14:30:00.123456")):
        Bar.from_json(text)


@pytest.mark.parametrize("value", ["yesterday", 1_700_000_000])
def test_a_timestamp_that_is_not_a_datetime_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ValidationError, match=re.escape(str(value))):
        a_bar(timestamp=value)


# --- bar, observation and order invariants ------------------------------------------------------------------


@pytest.mark.parametrize(
    "prices",
    [
        {"open": 12.0},  # open above high
        {"close": 8.0},  # close below low
        {"low": 10.2},  # low above open
        {"high": 10.4},  # high below close
        {"high": 8.0, "low": 9.0},
    ],
)
def test_a_bar_whose_prices_break_low_open_close_high_is_refused_showing_them(prices: dict[str, float]) -> None:
    with pytest.raises(ValidationError) as raised:
        a_bar(**prices)
    message = str(raised.value)
    assert "NVDA" in message and "low <= open, close <= high" in message
    for name, value in prices.items():
        assert f"{name}={value}" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("open", 0.0), ("low", -1.0), ("close", math.nan), ("high", math.inf), ("volume", -1.0), ("spread", -0.1)],
)
def test_a_bar_with_a_non_positive_or_non_finite_number_is_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as raised:
        a_bar(**{field: value})
    assert f"bar {field}" in str(raised.value) and repr(value) in str(raised.value)


def test_a_flat_bar_with_zero_volume_is_valid() -> None:
    bar = a_bar(open=5.0, high=5.0, low=5.0, close=5.0, volume=0.0)
    assert Bar.from_json(bar.to_json()) == bar


@pytest.mark.parametrize(
    "changes",
    [{"symbol": ""}, {"price": 0.0}, {"volume": math.nan}, {"spread": -1.0}, {"id": "not-a-uuid"}],
    ids=repr,
)
def test_an_invalid_observation_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        an_observation(**changes)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_an_observation_embedding_holding_nan_or_infinity_is_refused_naming_the_observation(bad: float) -> None:
    with pytest.raises(ValidationError, match=re.escape(str(uuid.UUID(int=1)))):
        an_observation(embedding=(0.1, bad, 0.3))


def test_an_observation_embedding_of_numpy_numbers_becomes_a_tuple_of_floats() -> None:
    observation = an_observation(embedding=np.asarray([0.5, -0.25], dtype=np.float32))
    assert observation.embedding == (0.5, -0.25)
    assert all(type(value) is float for value in observation.embedding)


@pytest.mark.parametrize(
    ("kind", "prices", "missing"),
    [
        (OrderType.LIMIT, {}, "limit_price"),
        (OrderType.STOP, {}, "stop_price"),
        (OrderType.STOP_LIMIT, {"stop_price": 95.0}, "limit_price"),
        (OrderType.STOP_LIMIT, {"limit_price": 100.0}, "stop_price"),
    ],
)
def test_an_order_missing_the_price_its_type_needs_is_refused_naming_the_client_order_id(
    kind: OrderType, prices: dict[str, float], missing: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        an_order(type=kind, **prices)
    assert "client-42" in str(raised.value) and f"needs a {missing}" in str(raised.value)


@pytest.mark.parametrize(
    ("kind", "prices"),
    [
        (OrderType.MARKET, {"limit_price": 100.0}),
        (OrderType.MARKET, {"stop_price": 100.0}),
        (OrderType.LIMIT, {"limit_price": 100.0, "stop_price": 90.0}),
        (OrderType.STOP, {"stop_price": 100.0, "limit_price": 90.0}),
    ],
)
def test_an_order_given_a_price_its_type_does_not_take_is_refused(kind: OrderType, prices: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="client-42 takes no"):
        an_order(type=kind, **prices)


@pytest.mark.parametrize("quantity", [0.0, -1.0, math.nan, math.inf])
def test_an_order_quantity_must_be_a_positive_finite_number(quantity: float) -> None:
    with pytest.raises(ValidationError, match="client-42 quantity"):
        an_order(quantity=quantity)


@pytest.mark.parametrize("price", [0.0, -5.0, math.nan])
def test_an_order_limit_price_must_be_a_positive_finite_number(price: float) -> None:
    with pytest.raises(ValidationError, match="client-42 limit_price"):
        an_order(type=OrderType.LIMIT, limit_price=price)


# --- JSON refusals ---------------------------------------------------------------------------------------------


def test_a_record_with_a_nan_in_its_metadata_cannot_be_written() -> None:
    with pytest.raises(SerializationError, match="nan"):
        an_observation(metadata={"score": math.nan}).to_json()


@pytest.mark.parametrize(
    ("text", "kind"), [("not json", "malformed"), ("[1, 2]", "must be an object"), ("42", "must be an object")]
)
def test_reading_a_record_from_malformed_json_raises_a_serialization_error(text: str, kind: str) -> None:
    for record in (Bar, Observation, Signal, Order):
        with pytest.raises(SerializationError, match=kind):
            record.from_json(text)


# --- observation ids ----------------------------------------------------------------------------------------

microseconds = st.integers(
    min_value=(datetime(1000, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1),
    max_value=(datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1),
)


@PROPERTY
@given(symbol=symbols, stamps=st.lists(microseconds, max_size=8))
def test_bulk_observation_ids_equal_one_by_one_ids(symbol: str, stamps: list[int]) -> None:
    moments = [EPOCH + timedelta(microseconds=stamp) for stamp in stamps]
    assert Observation.ids_for(symbol, stamps) == [Observation.id_for(symbol, moment) for moment in moments]
    assert format_microseconds(stamps) == [format_timestamp(moment) for moment in moments]


@PROPERTY
@given(moment=aware_datetimes)
def test_an_observation_id_depends_on_the_instant_not_on_its_zone(moment: datetime) -> None:
    assert Observation.id_for("NVDA", moment) == Observation.id_for("NVDA", moment.astimezone(UTC))


def test_observation_ids_differ_by_symbol_and_by_microsecond() -> None:
    ids = {
        Observation.id_for("NVDA", MOMENT),
        Observation.id_for("ORCL", MOMENT),
        Observation.id_for("NVDA", MOMENT + timedelta(microseconds=1)),
    }
    assert len(ids) == 3


def test_to_plain_turns_a_record_into_its_fields() -> None:
    plain = to_plain(a_bar())
    assert plain["timestamp"] == "2024-03-01T14:30:00.123456Z"
    assert plain["spread"] is None and plain["open"] == 10.0


# --- the first millennium and text UTF-8 cannot encode ------------------------------------------------------


def test_a_timestamp_before_the_year_1000_is_written_with_four_year_digits_and_round_trips() -> None:
    moment = datetime(999, 5, 1, 1, 2, 3, 4, tzinfo=UTC)
    assert format_timestamp(moment) == "0999-05-01T01:02:03.000004Z"
    assert Bar.from_json(a_bar(timestamp=moment).to_json()) == a_bar(timestamp=moment)


def test_bulk_and_single_observation_ids_agree_before_the_year_1000() -> None:
    moment = datetime(999, 5, 1, tzinfo=UTC)
    assert Observation.ids_for("NVDA", [(moment - EPOCH) // timedelta(microseconds=1)]) == [
        Observation.id_for("NVDA", moment)
    ]


def test_text_that_utf8_cannot_encode_is_refused_with_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        canonical_json({"note": "\ud800"})
