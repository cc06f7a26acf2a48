"""Specification of the trading repositories (`models.backtest_runs`, `models.order_records`): lossless, idempotent
writes."""

from __future__ import annotations

import dataclasses
import importlib
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from models.backtest_runs import (
    RunOverview,
    StoredModelVersion,
    StoredRun,
    find_model_versions,
    latest_model_version,
    list_runs,
    load_run,
    run_details,
    save_backtest,
    save_model_version,
    save_model_versions,
    save_run,
)
from models.engine import session_scope
from models.order_records import (
    StoredRejection,
    load_order,
    load_rejections,
    load_signals,
    save_orders,
    save_rejections,
    save_signals,
)
from models.trading import (
    BacktestEquityRecord,
    BacktestRunRecord,
    BacktestTradeRecord,
    OrderEventRecord,
    OrderRecord,
    RiskRejectionRecord,
    SignalRecord,
)
from neuraltrade.backtest.run_spec import ENGINE_VERSION, run_spec
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.clock import FixedClock
from neuraltrade.errors import DuplicateOrder, UnknownOrder, UnknownRun, ValidationError
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.trading.orders import ManagedOrder, OrderManager, order_id_for
from neuraltrade.types import Direction, Order, OrderSide, OrderStatus, OrderType, Signal, TimeInForce
from tests.models.trade_support import lineage, store_run, trade

START = datetime(2024, 1, 2, 14, 30, 0, 123_456, tzinfo=UTC)
RUN_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
SIGNAL_ID = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


def run(
    run_id: uuid.UUID = RUN_ID,
    *,
    trades: int | list[ClosedTrade] = 3,
    bars: int = 50,
    strategy: str = "momentum",
    created_at: datetime = START,
    **fields: Any,
) -> StoredRun:
    closed = [trade(number, run_id=run_id) for number in range(trades)] if isinstance(trades, int) else trades
    timestamps = np.int64(1_704_205_800_000_000) + np.arange(bars, dtype=np.int64) * 60_000_000
    equity = 10_000.0 + np.cumsum(np.linspace(-3.0, 4.0, bars))
    values: dict[str, Any] = {
        "id": run_id,
        "strategy": strategy,
        "strategy_id": f"{strategy}-1",
        "config_digest": "c" * 64,
        "strategy_config": {"lookback": 20, "threshold": 0.5},
        "backtest_config": {"cash": 10_000.0, "commission": 0.001},
        "symbols": ("AAA", "BBB"),
        "start": START,
        "end": START + timedelta(minutes=bars - 1),
        "bars": bars,
        "data_digest": "d" * 64,
        "statistics": {"Return [%]": 1.25, "# Trades": len(closed)},
        "details": {"cache_hit_rate": 0.9, "model_version": "e" * 64},
        "created_at": created_at,
        "engine_version": "1",
        "spec": None,  # a run stored before run specifications (its spec is neither signed nor logged)
        "trades": closed,
        "timestamps": timestamps,
        "equity": equity,
        "drawdown_pct": 100.0 * (1.0 - equity / np.maximum.accumulate(equity)),
    }
    values.update(fields)
    return StoredRun(**values)


def count(url: str, model: type) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def dump(url: str, model: type) -> list[tuple[object, ...]]:
    table = model.__table__  # type: ignore[attr-defined]
    with session_scope(url) as session:
        return [tuple(row) for row in session.execute(select(table).order_by(*table.primary_key.columns)).all()]


def assert_same_run(loaded: StoredRun, expected: StoredRun) -> None:
    for field in dataclasses.fields(RunOverview):
        if field.name not in ("statistics", "details", "strategy_config", "backtest_config"):
            assert getattr(loaded, field.name) == getattr(expected, field.name), field.name
    assert loaded.statistics == expected.statistics
    assert loaded.details == expected.details
    assert list(loaded.trades) == list(expected.trades)
    for name in ("timestamps", "equity", "drawdown_pct"):
        stored = getattr(loaded, name)
        assert stored.dtype == getattr(expected, name).dtype, name
        np.testing.assert_array_equal(stored, getattr(expected, name))


# -- backtest runs -------------------------------------------------------------------------------------


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's storage runs on SQLite and on PostgreSQL."""
    return storage_url


def test_a_saved_run_loads_back_with_its_trades_and_equity_curve(database_url: str) -> None:
    stored = run()
    with session_scope(database_url, write=True) as session:
        assert store_run(session, stored) == RUN_ID

    with session_scope(database_url) as session:
        loaded = load_run(session, RUN_ID)

    assert_same_run(loaded, stored)
    assert loaded.start.tzinfo is not None
    assert count(database_url, BacktestEquityRecord) == 1


def test_saving_a_run_twice_changes_nothing(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        store_run(session, run())
    before = {model: dump(database_url, model) for model in (BacktestRunRecord, BacktestTradeRecord)}

    with session_scope(database_url, write=True) as session:
        store_run(session, run())

    assert {model: dump(database_url, model) for model in before} == before


def test_resaving_a_run_replaces_its_trades_and_curve(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        store_run(session, run(trades=5, bars=50))
        store_run(session, run(trades=2, bars=20, statistics={"# Trades": 2}))

    with session_scope(database_url) as session:
        loaded = load_run(session, RUN_ID)

    assert len(loaded.trades) == 2
    assert len(loaded.equity) == 20
    assert loaded.statistics == {"# Trades": 2}
    assert count(database_url, BacktestTradeRecord) == 2


def test_a_load_after_a_resave_in_one_session_sees_the_new_run(database_url: str) -> None:
    replacement = run(trades=[trade(7)], bars=10, statistics={"# Trades": 1})
    with session_scope(database_url, write=True) as session:
        store_run(session, run())
        load_run(session, RUN_ID)
        list_runs(session)
        store_run(session, replacement)

        assert_same_run(load_run(session, RUN_ID), replacement)
        assert [overview.statistics for overview in list_runs(session)] == [{"# Trades": 1}]


def test_a_failed_resave_leaves_the_stored_run_whole(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        store_run(session, run(trades=4))
    # A trade without a symbol fails on insert, after the old trades were deleted.
    nameless = trade(1)._replace(symbol=None)
    broken = run(trades=[trade(0), nameless])

    with session_scope(database_url, write=True) as session:
        with pytest.raises(IntegrityError):
            save_run(session, broken, **lineage([trade(0), trade(1)]))
        session.commit()  # the caller carries on: only the savepoint was rolled back

    with session_scope(database_url) as session:
        assert len(load_run(session, RUN_ID).trades) == 4


def test_non_finite_statistics_are_stored_as_null(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        store_run(session, run(statistics={"Sharpe Ratio": math.nan, "Best": math.inf, "nested": [1.0, math.nan]}))

    with session_scope(database_url) as session:
        assert load_run(session, RUN_ID).statistics == {"Sharpe Ratio": None, "Best": None, "nested": [1.0, None]}


def test_a_run_without_trades_or_bars_round_trips(database_url: str) -> None:
    empty = run(trades=0, bars=0, end=START)
    with session_scope(database_url, write=True) as session:
        save_run(session, empty)

    with session_scope(database_url) as session:
        assert_same_run(load_run(session, RUN_ID), empty)


def test_loading_an_unknown_run_raises_unknown_run(database_url: str) -> None:
    with session_scope(database_url) as session, pytest.raises(UnknownRun, match=str(RUN_ID)):
        load_run(session, RUN_ID)


def test_a_trades_tag_is_the_users_own_and_its_signal_is_a_column_of_its_own(database_url: str) -> None:
    trades = [trade(0, tag=str(SIGNAL_ID)), trade(1, tag="manual"), trade(2)]
    with session_scope(database_url, write=True) as session:
        save_run(session, run(trades=trades), **lineage(trades))
        stored = session.execute(
            select(BacktestTradeRecord.tag, BacktestTradeRecord.signal_id).order_by(BacktestTradeRecord.sequence)
        ).all()

    assert [tuple(row) for row in stored] == [
        (str(SIGNAL_ID), trades[0].signal_id),
        ("manual", trades[1].signal_id),
        (None, trades[2].signal_id),
    ]


def test_runs_are_listed_newest_first_and_filtered_by_strategy(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        for number, strategy in enumerate(["momentum", "reversion", "momentum", "momentum"]):
            run_id = uuid.UUID(int=number + 1)
            store_run(session, run(run_id, strategy=strategy, created_at=START + timedelta(hours=number)))

    with session_scope(database_url) as session:
        newest = list_runs(session, limit=3)
        momentum = list_runs(session, limit=10, strategy="momentum")

    assert [overview.id.int for overview in newest] == [4, 3, 2]
    assert [overview.id.int for overview in momentum] == [4, 3, 1]
    assert all(type(overview) is RunOverview for overview in newest)
    assert newest[0].symbols == ("AAA", "BBB")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"equity": np.zeros(3)}, "one length"),
        ({"created_at": datetime(2024, 1, 1)}, "naive"),
        ({"config_digest": "not hex"}, "hex"),
        ({"end": START - timedelta(days=1)}, "before it starts"),
        ({"bars": -1}, "non-negative"),
    ],
)
def test_an_inconsistent_run_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        dataclasses.replace(run(), **fields)


# -- signals -----------------------------------------------------------------------------------------


def _link(number: int, kind: CauseKind = CauseKind.OBSERVATION, relation: Relation = Relation.OBSERVED) -> CausalLink:
    return CausalLink(cause_id=uuid.UUID(int=number), cause_kind=kind, relation=relation)


def signal(number: int = 0, **fields: Any) -> Signal:
    values: dict[str, Any] = {
        "id": uuid.UUID(int=0xAA + number),
        "strategy_id": "momentum-1",
        "timestamp": START + timedelta(minutes=number),
        "symbol": "AAA",
        "direction": Direction.LONG,
        "confidence": 0.75,
        "features": {"z": -1.5, "momentum": 0.1},
        "reasoning": "rising closes",
        "causal_links": [_link(7)],
    }
    values.update(fields)
    return Signal(**values)


# Every text a record may hold: no surrogates (not UTF-8) and no NUL (not storable by PostgreSQL).
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    direction=st.sampled_from(Direction),
    confidence=st.floats(0.0, 1.0),
    features=st.dictionaries(texts, st.floats(allow_nan=False, allow_infinity=False), max_size=4),
    reasoning=texts,
    links=st.lists(
        st.builds(
            CausalLink, cause_id=st.uuids(), cause_kind=st.sampled_from(CauseKind), relation=st.sampled_from(Relation)
        ),
        max_size=3,
    ),
    moment=st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)),
)
def test_signals_round_trip_losslessly(
    database_url: str,
    direction: Direction,
    confidence: float,
    features: dict[str, float],
    reasoning: str,
    links: list[CausalLink],
    moment: datetime,
) -> None:
    given_signal = signal(
        direction=direction,
        confidence=confidence,
        features=features,
        reasoning=reasoning,
        causal_links=links,
        timestamp=moment,
        id=uuid.uuid4(),
    )
    with session_scope(database_url, write=True) as session:
        save_signals(session, [given_signal])
        stored = [item for item in load_signals(session) if item.id == given_signal.id]

    assert stored == [given_signal]


def test_resaving_a_signal_updates_its_causal_links_and_changes_nothing_else(database_url: str) -> None:
    first = signal()
    with session_scope(database_url, write=True) as session:
        save_signals(session, [first, signal(1)])
        first = dataclasses.replace(first, causal_links=(*first.causal_links, _link(8, CauseKind.MEMORY_ITEM)))
        save_signals(session, [first, signal(1)])

    with session_scope(database_url) as session:
        assert load_signals(session) == [first, signal(1)]


def test_signals_of_a_run_are_kept_apart_from_live_ones(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        save_run(session, run(trades=0))
        save_signals(session, [signal(0)], run_id=RUN_ID)
        save_signals(session, [signal(1)])

        assert [item.id for item in load_signals(session, RUN_ID)] == [signal(0).id]
        assert [item.id for item in load_signals(session)] == [signal(1).id]


# -- orders ------------------------------------------------------------------------------------------


def managed_orders() -> tuple[OrderManager, FixedClock]:
    clock = FixedClock(START)
    oms = OrderManager(clock)
    for cid, quantity in (("o-1", 10.0), ("o-2", 1.0)):
        oms.submit(
            Order(
                id=order_id_for(cid),
                client_order_id=cid,
                symbol="AAA",
                side=OrderSide.SELL,
                type=OrderType.LIMIT,
                quantity=quantity,
                limit_price=101.5,
                time_in_force=TimeInForce.GTC,
            ),
            signal_id=signal().id if cid == "o-1" else None,
        )
    clock.advance(timedelta(seconds=1))
    oms.accept("o-1")
    clock.advance(timedelta(seconds=1))
    oms.fill("o-1", 0.1, 101.5)
    oms.fill("o-1", 0.2, 101.6)
    oms.reject("o-2", "position limit")
    return oms, clock


def save(url: str, orders: list[ManagedOrder], run_id: uuid.UUID | None = None) -> None:
    with session_scope(url, write=True) as session:
        save_signals(session, [signal()])
        save_orders(session, orders, run_id=run_id)


def test_a_saved_order_loads_back_as_the_manager_held_it(database_url: str) -> None:
    oms, _ = managed_orders()
    save(database_url, oms.orders())

    with session_scope(database_url) as session:
        loaded = [load_order(session, cid) for cid in ("o-1", "o-2")]

    assert loaded == oms.orders()
    assert loaded[0].filled_quantity == 0.3
    assert count(database_url, OrderEventRecord) == 4 + 2


def test_saving_orders_twice_changes_nothing(database_url: str) -> None:
    oms, _ = managed_orders()
    save(database_url, oms.orders())
    before = (dump(database_url, OrderRecord), dump(database_url, OrderEventRecord))

    save(database_url, oms.orders())

    assert (dump(database_url, OrderRecord), dump(database_url, OrderEventRecord)) == before


def test_a_later_state_of_an_order_updates_it_and_adds_its_new_events(database_url: str) -> None:
    oms, clock = managed_orders()
    save(database_url, oms.orders())
    clock.advance(timedelta(minutes=5))
    oms.fill("o-1", 9.7, 102.0)

    save(database_url, [oms.get("o-1")])

    with session_scope(database_url) as session:
        loaded = load_order(session, "o-1")
    assert loaded == oms.get("o-1")
    assert loaded.status is OrderStatus.FILLED
    assert loaded.updated_at == START + timedelta(minutes=5, seconds=2)


def test_a_load_after_a_save_in_one_session_sees_the_saved_state(database_url: str) -> None:
    oms, _ = managed_orders()
    with session_scope(database_url, write=True) as session:
        save_signals(session, [signal()])
        save_orders(session, oms.orders())
        load_order(session, "o-1")
        oms.cancel("o-1", "user")
        save_orders(session, [oms.get("o-1")])

        assert load_order(session, "o-1") == oms.get("o-1")


def test_an_older_copy_of_an_order_never_moves_the_stored_one_back(database_url: str) -> None:
    oms, _ = managed_orders()
    stale = oms.get("o-1")
    oms.cancel("o-1", "user")
    save(database_url, [oms.get("o-1")])

    save(database_url, [stale])

    with session_scope(database_url) as session:
        assert load_order(session, "o-1").status is OrderStatus.CANCELLED


def test_a_client_order_id_stored_for_another_order_raises_duplicate_order(database_url: str) -> None:
    oms, _ = managed_orders()
    save(database_url, oms.orders())
    other = OrderManager(FixedClock(START))
    other.submit(
        Order(
            id=order_id_for("o-2"),
            client_order_id="o-2",
            symbol="AAA",
            side=OrderSide.BUY,
            type=OrderType.MARKET,
            quantity=1.0,
        )
    )

    with pytest.raises(DuplicateOrder, match="'o-2'"):
        save(database_url, other.orders())


def test_an_order_of_another_run_under_a_stored_client_order_id_raises_duplicate_order(database_url: str) -> None:
    oms, _ = managed_orders()
    with session_scope(database_url, write=True) as session:
        store_run(session, run())
    save(database_url, oms.orders())

    with pytest.raises(DuplicateOrder, match="'o-1'"):
        save(database_url, oms.orders(), run_id=RUN_ID)


def test_loading_an_unknown_order_raises_unknown_order(database_url: str) -> None:
    with session_scope(database_url) as session, pytest.raises(UnknownOrder, match="'nope'"):
        load_order(session, "nope")


def test_a_manager_resumes_from_stored_orders(database_url: str) -> None:
    oms, clock = managed_orders()
    save(database_url, oms.orders())
    with session_scope(database_url) as session:
        resumed = OrderManager(clock, [load_order(session, "o-1")])

    filled = resumed.fill("o-1", 9.7, 100.0)

    assert filled.status is OrderStatus.FILLED
    assert filled.filled_quantity == 10.0


# -- rejections and cascades -------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A rejection as the risk module might shape it: only the attributes matter."""

    client_order_id: str
    symbol: str
    timestamp: datetime
    rule: str
    reason: str
    details: dict[str, Any]
    signal_id: uuid.UUID | None = None


def test_rejections_are_stored_once_and_load_back(database_url: str) -> None:
    refusal = Refusal("o-9", "AAA", START, "max_position_notional", "position 120 > 100", {"limit": 100, "was": 120.0})
    with session_scope(database_url, write=True) as session:
        assert save_rejections(session, [refusal]) == 1
        assert save_rejections(session, [refusal]) == 0

    with session_scope(database_url) as session:
        assert load_rejections(session) == [StoredRejection(**dataclasses.asdict(refusal))]
    assert count(database_url, RiskRejectionRecord) == 1


def test_deleting_a_run_deletes_everything_it_produced(database_url: str) -> None:
    oms, _ = managed_orders()
    with session_scope(database_url, write=True) as session:
        store_run(session, run())
        save_signals(session, [signal()], run_id=RUN_ID)
        save_orders(session, oms.orders(), run_id=RUN_ID)
        save_rejections(session, [Refusal("o-2", "AAA", START, "max_position_notional", "too big", {})], run_id=RUN_ID)

    with session_scope(database_url, write=True) as session:
        session.delete(session.get(BacktestRunRecord, RUN_ID))

    for model in (BacktestTradeRecord, BacktestEquityRecord, SignalRecord, OrderRecord, OrderEventRecord):
        assert count(database_url, model) == 0, model.__tablename__
    assert count(database_url, RiskRejectionRecord) == 0


# -- a backtest, whole ------------------------------------------------------------------------------


def two_symbol_backtest() -> Any:
    """A real backtest of two symbols sharing an account, with every order event recorded."""
    from neuraltrade.backtest import BacktestConfig, run_backtest
    from tests.domain.backtest_support import history, market, scripted

    bars = market(
        history("AAA", [10.0, 11.0, 12.0, 11.0, 13.0, 12.0, 14.0, 15.0]),
        history("BBB", [20.0, 19.0, 21.0, 22.0, 20.0, 23.0, 22.0, 24.0]),
    )
    strategy = scripted({"AAA": {1: 1, 4: -1}, "BBB": {2: -1, 5: 1}})
    return run_backtest(bars, strategy, BacktestConfig(order_size=0.4, verify_causality=False), record_orders=True)


def every_row(url: str) -> dict[str, list[tuple[Any, ...]]]:
    from models.base import Base

    with session_scope(url) as session:
        return {
            table.name: sorted(map(tuple, session.execute(select(table)).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }


def test_a_backtest_is_saved_whole_once_and_saving_it_again_changes_no_row(database_url: str) -> None:
    result = two_symbol_backtest()
    spec = run_spec(result.strategy, result.config, result.market)
    with session_scope(database_url, write=True) as session:
        assert save_backtest(session, result, spec, run_details(result), created_at=START)
    before = every_row(database_url)

    with session_scope(database_url, write=True) as session:
        saved_again = save_backtest(session, result, spec, run_details(result), created_at=START + timedelta(1))

    assert not saved_again and every_row(database_url) == before
    with session_scope(database_url) as session:
        stored = load_run(session, spec.run_id)
        signals = load_signals(session, spec.run_id)
    assert stored.symbols == ("AAA", "BBB") and stored.created_at == START
    # The row is the run of its specification: its id, digests, engine and the specification itself.
    assert (stored.id, stored.config_digest, stored.data_digest) == (spec.run_id, spec.config_digest, spec.data_digest)
    assert stored.engine_version == spec.engine_version == ENGINE_VERSION and stored.run_spec() == spec
    assert len(stored.trades) == len(result.trades) > 0 and np.array_equal(stored.equity, result.equity)
    assert len(signals) == len(result.decisions) == 4
    assert count(database_url, OrderRecord) >= 4 and count(database_url, OrderEventRecord) > 0


def test_a_backtest_of_another_run_is_not_stored_under_the_spec(database_url: str) -> None:
    from neuraltrade.trading.risk import RiskLimits

    result = two_symbol_backtest()
    limited = run_spec(result.strategy, result.config, result.market, limits=RiskLimits(max_leverage=1.0))
    with session_scope(database_url, write=True) as session, pytest.raises(ValidationError, match=str(limited.run_id)):
        save_backtest(session, result, limited, run_details(result), created_at=START)
    assert count(database_url, BacktestRunRecord) == 0


def test_a_runs_id_is_its_specifications_sizing_risk_limits_and_engine_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from neuraltrade.trading.risk import RiskLimits
    from neuraltrade.trading.sizing import VolatilityTarget

    result = two_symbol_backtest()
    plain = run_spec(result.strategy, result.config, result.market)
    assert plain == run_spec(result.strategy, result.config, result.market)
    assert plain.run_id == result.run_id
    sized = run_spec(result.strategy, result.config, result.market, sizing=VolatilityTarget(annual_volatility=0.12))
    limited = run_spec(result.strategy, result.config, result.market, limits=RiskLimits(max_leverage=1.0))
    monkeypatch.setattr(importlib.import_module("neuraltrade.backtest.run_spec"), "ENGINE_VERSION", "another")
    newer = run_spec(result.strategy, result.config, result.market)
    assert newer.engine_version == "another" and newer.data_digest == plain.data_digest
    assert len({plain.run_id, sized.run_id, limited.run_id, newer.run_id}) == 4
    assert len({plain.config_digest, sized.config_digest, limited.config_digest, newer.config_digest}) == 4


def test_run_details_keep_each_symbols_details_and_the_sizing_and_limits_in_full() -> None:
    from neuraltrade.trading.risk import RiskLimits
    from neuraltrade.trading.sizing import VolatilityTarget

    result = two_symbol_backtest()
    sizing = VolatilityTarget(annual_volatility=0.12, max_leverage=1.0)
    details = run_details(result, sizing=sizing, limits=RiskLimits(max_leverage=1.0))

    assert set(details["by_symbol"]) == {"AAA", "BBB"}
    assert details["sizing"] == {
        "kind": "volatility_target",
        "annual_volatility": 0.12,
        "lookback": 20,
        "periods_per_year": 252,
        "max_leverage": 1.0,
        "fractional": False,
    }
    assert details["risk_limits"]["max_leverage"] == 1.0 and details["rejections"] == 0


# -- model versions -----------------------------------------------------------------------------------


def model_version(digit: str, *, created_at: datetime, symbol: str = "AAA", **fields: Any) -> StoredModelVersion:
    values: dict[str, Any] = {
        "id": digit * 64,
        "strategy": "learned",
        "symbol": symbol,
        "trained_from": START,
        "trained_to": START + timedelta(days=30),
        "train_samples": 800,
        "test_samples": 200,
        "out_of_sample_hit_rate": 0.56,
        "parameters": {"depth": 3},
        "model": b"\x00\x01weights",
        "created_at": created_at,
    }
    values.update(fields)
    return StoredModelVersion(**values)


def test_the_latest_model_version_is_the_newest_of_its_strategy_and_symbol(database_url: str) -> None:
    older = model_version("a", created_at=START)
    newer = model_version("b", created_at=START + timedelta(days=1), model=None, out_of_sample_hit_rate=None)
    elsewhere = model_version("c", created_at=START + timedelta(days=2), symbol="BBB")
    with session_scope(database_url, write=True) as session:
        for version in (older, newer, elsewhere, newer):
            save_model_version(session, version)

    with session_scope(database_url) as session:
        assert latest_model_version(session, "learned", "AAA") == newer
        assert latest_model_version(session, "learned", "BBB") == elsewhere
        assert latest_model_version(session, "other", "AAA") is None


def test_a_model_version_described_again_without_its_bytes_keeps_them_and_is_found_by_its_record_id(
    database_url: str,
) -> None:
    trained = model_version("a", created_at=START)
    described = dataclasses.replace(trained, model=None, test_samples=50)
    other = model_version("b", created_at=START, model=None)
    with session_scope(database_url, write=True) as session:
        save_model_version(session, trained)
        assert save_model_versions(session, [described, other], created_at=START + timedelta(days=1)) == [
            "a" * 64,
            "b" * 64,
        ]

    with session_scope(database_url) as session:
        found = find_model_versions(session, [trained.record_id, other.record_id, uuid.UUID(int=3)])
    assert set(found) == {trained.record_id, other.record_id}
    assert found[trained.record_id].model == trained.model and found[trained.record_id].test_samples == 50
    assert found[other.record_id] == other


def test_of_the_versions_stored_together_the_latest_is_the_one_trained_on_the_latest_bars(database_url: str) -> None:
    later = model_version("1", created_at=START, trained_to=START + timedelta(days=60))
    with session_scope(database_url, write=True) as session:
        save_model_versions(session, [later, model_version("2", created_at=START)], created_at=START)
        assert latest_model_version(session, "learned", "AAA") == later


def test_a_model_version_with_an_impossible_hit_rate_is_refused() -> None:
    with pytest.raises(ValidationError, match="hit_rate"):
        model_version("a", created_at=START, out_of_sample_hit_rate=1.5)
