"""Records of the audit chain (`neuraltrade.records.Record`): immutable, with a canonical form that round-trips.

One property per record type: build it, write its canonical bytes, read them back with `from_canonical`:
the same record, and the same bytes again (which `recanonicalise` leaves as they are).
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.run_spec import RunSpec, run_spec
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.canonical import canonical_json, recanonicalise
from neuraltrade.errors import SerializationError, ValidationError
from neuraltrade.records import CausalLink, CauseKind, Record, Relation, unique_links
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig
from neuraltrade.trading.risk import RiskLimits, RiskRejection
from neuraltrade.trading.sizing import FixedFraction
from neuraltrade.types import (
    Fill,
    Observation,
    Order,
    OrderSide,
    Signal,
)
from tests.domain.backtest_support import history, market
from tests.domain.record_support import (
    MOMENT,
    a_link,
    a_signal,
    closed_trades,
    fills,
    observations,
    orders,
    risk_rejections,
    run_specs,
    signals,
)

PROPERTY = settings(max_examples=150, deadline=None)

RECORDS: dict[str, tuple[type[Record], Callable[[], st.SearchStrategy[Any]]]] = {
    "observation": (Observation, observations),
    "signal": (Signal, signals),
    "order": (Order, orders),
    "fill": (Fill, fills),
    "closed_trade": (ClosedTrade, closed_trades),
    "backtest_run": (RunSpec, run_specs),
    "risk_rejection": (RiskRejection, risk_rejections),
}

# --- round trips ----------------------------------------------------------------------------------------------


def _round_trips(record: Record) -> None:
    data = record.canonical_bytes()
    restored = type(record).from_canonical(data)
    assert restored == record
    assert restored.canonical_bytes() == data
    assert recanonicalise(data) == data
    plain = json.loads(data)
    assert plain["kind"] == record.KIND and plain["schema_version"] == record.SCHEMA_VERSION


@PROPERTY
@given(record=observations())
def test_an_observation_round_trips_through_its_canonical_form(record: Observation) -> None:
    _round_trips(record)


@PROPERTY
@given(record=signals())
def test_a_signal_round_trips_through_its_canonical_form_with_its_typed_links_in_order(record: Signal) -> None:
    _round_trips(record)
    assert Signal.from_canonical(record.canonical_bytes()).causal_links == record.causal_links


@PROPERTY
@given(record=orders())
def test_an_order_round_trips_through_its_canonical_form(record: Order) -> None:
    _round_trips(record)


@PROPERTY
@given(record=fills())
def test_a_fill_round_trips_through_its_canonical_form(record: Fill) -> None:
    _round_trips(record)


@PROPERTY
@given(record=closed_trades())
def test_a_closed_trade_round_trips_through_its_named_canonical_form(record: ClosedTrade) -> None:
    _round_trips(record)
    plain = json.loads(record.canonical_bytes())
    assert plain["entry_fill_id"] == str(record.entry_fill_id) and plain["symbol"] == record.symbol


@PROPERTY
@given(record=run_specs())
def test_a_run_specification_round_trips_through_its_canonical_form_with_its_run_id(record: RunSpec) -> None:
    _round_trips(record)
    assert RunSpec.from_canonical(record.canonical_bytes()).run_id == record.run_id


@PROPERTY
@given(record=risk_rejections())
def test_a_risk_rejection_round_trips_through_its_canonical_form(record: RiskRejection) -> None:
    _round_trips(record)


@pytest.mark.parametrize("name", list(RECORDS))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_reading_another_kind_or_schema_version_is_refused_naming_it(name: str, data: st.DataObject) -> None:
    record_type, records = RECORDS[name]
    assert name == record_type.KIND
    record = data.draw(records())
    plain = record.canonical_plain()
    with pytest.raises(SerializationError, match=re.escape("'closed_trade_x'")):
        record_type.from_canonical(canonical_json({**plain, "kind": "closed_trade_x"}))
    with pytest.raises(SerializationError, match=r"schema version 99\b"):
        record_type.from_canonical(canonical_json({**plain, "schema_version": 99}))
    with pytest.raises(SerializationError, match="must be an object"):
        record_type.from_canonical(b"[1, 2]")


# --- immutability ---------------------------------------------------------------------------------------------


def test_a_signal_is_frozen_its_features_read_only_and_a_copy_of_what_was_given() -> None:
    features = {"vote": 0.5}
    signal = a_signal(features=features, causal_links=[a_link(1)])
    features["vote"] = 0.9
    assert signal.features == {"vote": 0.5}
    with pytest.raises(TypeError):
        signal.features["vote"] = 0.7  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        signal.causal_links = ()  # type: ignore[misc]
    assert isinstance(signal.causal_links, tuple)
    assert not hasattr(signal, "add_causal_link")


def test_an_observations_metadata_is_read_only_all_the_way_down() -> None:
    metadata: dict[str, Any] = {"source": "csv", "tags": ["a"], "nested": {"k": 1}}
    observation = Observation(
        id=uuid.UUID(int=1), timestamp=MOMENT, symbol="NVDA", price=10.0, volume=1.0, spread=0.0, metadata=metadata
    )
    metadata["source"] = "changed"
    assert observation.metadata["source"] == "csv"
    with pytest.raises(TypeError):
        observation.metadata["source"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        observation.metadata["nested"]["k"] = 2
    assert observation.metadata["tags"] == ("a",)


@settings(max_examples=100, deadline=None)
@given(given_links=st.lists(st.sampled_from([a_link(n) for n in range(1, 6)]), max_size=20))
def test_a_signals_causal_links_keep_each_edge_once_in_first_seen_order(given_links: list[CausalLink]) -> None:
    signal = a_signal(causal_links=iter(given_links))
    assert signal.causal_links == tuple(dict.fromkeys(given_links)) == unique_links(given_links)


def test_one_cause_in_two_relations_is_two_edges() -> None:
    first = a_link(1, CauseKind.OBSERVATION, Relation.OBSERVED)
    second = a_link(1, CauseKind.OBSERVATION, Relation.RECALLED)
    assert a_signal(causal_links=[first, second, first]).causal_links == (first, second)


@pytest.mark.parametrize("cause", [uuid.UUID(int=1), str(uuid.UUID(int=1)), None], ids=repr)
def test_a_causal_link_that_is_not_a_typed_edge_is_refused_naming_it(cause: object) -> None:
    with pytest.raises(ValidationError, match=re.escape(repr(cause))):
        a_signal(causal_links=[cause])


# --- fills ----------------------------------------------------------------------------------------------------


def a_fill(**changes: Any) -> Fill:
    order_id = changes.get("order_id", uuid.UUID(int=9))
    sequence = changes.get("sequence", 0)
    fields: dict[str, Any] = {
        "id": Fill.id_for(order_id, sequence),
        "order_id": order_id,
        "sequence": sequence,
        "timestamp": MOMENT,
        "symbol": "NVDA",
        "side": OrderSide.BUY,
        "quantity": 10.0,
        "price": 101.5,
        "commission": 0.25,
    }
    return Fill(**{**fields, **changes})


def test_a_fill_id_is_the_stable_id_of_its_order_and_sequence() -> None:
    from neuraltrade.canonical import stable_id

    assert Fill.id_for(uuid.UUID(int=9), 2) == stable_id("fill", uuid.UUID(int=9), 2)
    assert Fill.id_for(uuid.UUID(int=9), 2) != Fill.id_for(uuid.UUID(int=9), 3)
    assert a_fill(sequence=1).id == Fill.id_for(uuid.UUID(int=9), 1)


def test_a_fill_whose_id_is_not_derived_from_its_order_and_sequence_is_refused_naming_both() -> None:
    with pytest.raises(ValidationError, match=re.escape(str(uuid.UUID(int=9)))):
        a_fill(id=uuid.UUID(int=1))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"quantity": 0.0}, "quantity"),
        ({"quantity": -1.0}, "quantity"),
        ({"price": 0.0}, "price"),
        ({"price": float("nan")}, "price"),
        ({"commission": -0.01}, "commission"),
        ({"sequence": -1}, "sequence"),
        ({"sequence": True}, "sequence"),
        ({"symbol": ""}, "symbol"),
        ({"side": "hold"}, "side"),
        ({"timestamp": datetime(2024, 1, 1)}, "naive"),
    ],
    ids=repr,
)
def test_a_fill_breaking_an_invariant_is_refused_naming_the_field(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        a_fill(**changes)


def test_a_fill_side_given_by_value_becomes_the_enum() -> None:
    assert a_fill(side="sell").side is OrderSide.SELL


# --- one run, one id ------------------------------------------------------------------------------------------


def test_cash_of_10000_and_10000_point_0_give_one_configuration_and_one_run_id() -> None:
    data = market(history("NVDA", [10.0 + bar % 7 for bar in range(40)]))
    strategy = SmaCross(SmaCrossConfig(fast=3, slow=8))
    whole, decimal = BacktestConfig(cash=10000), BacktestConfig(cash=10000.0)
    assert whole == decimal
    assert all(type(getattr(whole, name)) is float for name in ("cash", "commission", "spread", "order_size"))
    first = run_spec(strategy, whole, data, sizing=FixedFraction(fraction=1), limits=RiskLimits(max_leverage=2))
    second = run_spec(strategy, decimal, data, sizing=FixedFraction(fraction=1.0), limits=RiskLimits(max_leverage=2.0))
    assert first.canonical_bytes() == second.canonical_bytes()
    assert first.run_id == second.run_id
