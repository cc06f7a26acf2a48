"""Specification of lineage storage: fills, the foreign keys from trades and rejections to what they name,
and `models.lineage.broken_links`, which walks a stored run's chain."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError

from models.backtest_runs import load_run, save_run
from models.engine import session_scope
from models.lineage import broken_links
from models.order_records import load_fills, load_rejections, save_fills, save_rejections, save_signals
from models.trading import BacktestRunRecord, BacktestTradeRecord, FillRecord, SignalRecord
from models.vector_store import VectorDB
from neuraltrade.canonical import stable_id
from neuraltrade.errors import UnknownRun
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.types import Fill, OrderSide
from tests.models.test_trading import Refusal, run
from tests.models.trade_support import RUN_ID, START, lineage, store_run, trade

OBSERVED = uuid.UUID(int=7)  # the observation every signal of `trade_support.lineage` links


@pytest.fixture
def database_url(storage_url: str) -> str:
    """Lineage, and the memory items it links, on SQLite and on PostgreSQL."""
    return storage_url


def stored_run(url: str, trades: int = 3) -> dict[str, list[Any]]:
    stored = run(trades=trades)
    with session_scope(url, write=True) as session:
        store_run(session, stored)
    return lineage(stored)


def remember_observation(url: str, observation: uuid.UUID = OBSERVED) -> None:
    """Store a market-state memory item keyed by `observation`, as the embedding task keys them."""
    memory = VectorDB(4, name="market_state", database_url=url)
    memory.insert_many(
        [str(observation)], np.ones((1, 4), dtype=np.float32), [{"symbol": "AAA", "observation_id": str(observation)}]
    )


# -- fills --------------------------------------------------------------------------------------------


def test_fills_load_back_by_order_and_by_run_and_saving_them_again_adds_nothing(database_url: str) -> None:
    records = stored_run(database_url)
    fills: list[Fill] = records["fills"]

    with session_scope(database_url, write=True) as session:
        assert save_fills(session, fills, RUN_ID) == 0  # stored with the run already
        by_run = load_fills(session, run_id=RUN_ID)
        first_order = load_fills(session, order_id=fills[0].order_id)
        live = load_fills(session)

    assert sorted(by_run, key=lambda fill: fill.id) == sorted(fills, key=lambda fill: fill.id)
    assert first_order == [fills[0]] and live == []
    assert [fill.timestamp for fill in by_run] == sorted(fill.timestamp for fill in by_run)


def test_a_fill_keeps_its_values_exactly(database_url: str) -> None:
    records = stored_run(database_url, trades=1)
    [order, _] = records["orders"]
    later = Fill(
        id=Fill.id_for(order.id, 1),
        order_id=order.id,
        sequence=1,
        timestamp=START + timedelta(microseconds=1),
        symbol=order.order.symbol,
        side=OrderSide.SELL,
        quantity=0.1 + 0.2,
        price=1e-7,
        commission=0.0,
    )
    with session_scope(database_url, write=True) as session:
        assert save_fills(session, [later]) == 1

    with session_scope(database_url) as session:
        assert load_fills(session, order_id=order.id)[1] == later
        assert load_fills(session) == [later]  # a fill saved without a run is live


def test_a_fill_of_an_order_not_stored_is_refused(database_url: str) -> None:
    [fill, *_] = lineage([trade(0)])["fills"]

    with session_scope(database_url, write=True) as session, pytest.raises(IntegrityError):
        save_fills(session, [fill])


def test_the_table_holds_one_fill_per_order_and_sequence(database_url: str) -> None:
    [fill, *_] = stored_run(database_url, trades=1)["fills"]
    # `Fill` derives its id from its order and sequence; the table holds the rule of its own.
    impostor = {column.name: getattr(fill, column.name, None) for column in FillRecord.__table__.columns}
    impostor |= {"id": uuid.uuid4(), "side": fill.side.value, "run_id": RUN_ID}

    with session_scope(database_url, write=True) as session, pytest.raises(IntegrityError):
        session.execute(insert(FillRecord).values(impostor))


# -- trades and rejections name what they come from ------------------------------------------------


def test_a_stored_trade_keeps_its_signal_orders_and_fills(database_url: str) -> None:
    stored_run(database_url)

    with session_scope(database_url) as session:
        trades = load_run(session, RUN_ID).trades

    assert trades == tuple(trade(number) for number in range(3))
    assert all(stored.signal_id is not None and stored.entry_fill_id != stored.exit_fill_id for stored in trades)


@pytest.mark.parametrize("missing", ["signals", "orders", "fills"])
def test_a_run_whose_trades_name_records_not_stored_is_refused_whole(database_url: str, missing: str) -> None:
    records = lineage(run())
    records[missing] = []
    if missing == "orders":
        records["fills"] = []  # fills cannot be stored without their orders

    with session_scope(database_url, write=True) as session:
        with pytest.raises(IntegrityError):
            save_run(session, run(), **records)
        session.commit()

    with session_scope(database_url) as session:
        assert session.scalar(select(BacktestRunRecord.id)) is None
        assert session.scalar(select(SignalRecord.id)) is None


def test_a_rejection_names_the_signal_it_refused(database_url: str) -> None:
    records = stored_run(database_url, trades=1)
    refused = Refusal("o-9", "AAA", START, "max_order_notional", "too big", {}, signal_id=records["signals"][0].id)
    with session_scope(database_url, write=True) as session:
        save_rejections(session, [refused], RUN_ID)

    with session_scope(database_url) as session:
        [stored] = load_rejections(session, RUN_ID)
    assert stored.signal_id == refused.signal_id


def test_a_rejection_naming_a_signal_not_stored_is_refused(database_url: str) -> None:
    refused = Refusal("o-9", "AAA", START, "max_order_notional", "too big", {}, signal_id=uuid.uuid4())

    with session_scope(database_url, write=True) as session, pytest.raises(IntegrityError):
        save_rejections(session, [refused])


# -- the chain of a stored run -------------------------------------------------------------------------


def test_every_link_of_a_run_resolves_once_its_observation_is_remembered(database_url: str) -> None:
    records = stored_run(database_url)
    with session_scope(database_url) as session:
        before = broken_links(session, RUN_ID)
    remember_observation(database_url)

    with session_scope(database_url) as session:
        assert broken_links(session, RUN_ID) == []
    # Before, only the causal link of each signal to the observation of its bar led nowhere.
    assert len(before) == len(records["signals"]) == 3
    assert all(f"its observation {OBSERVED} (observed) is not stored" in sentence for sentence in before)


def test_links_to_model_versions_memory_items_and_other_records_are_followed(database_url: str) -> None:
    records = stored_run(database_url, trades=1)
    remember_observation(database_url)
    memory = VectorDB(4, name="patterns", database_url=database_url)
    memory.insert_many(["double-bottom"], np.ones((1, 4), dtype=np.float32), [{"symbol": "AAA"}])
    [signal] = records["signals"]
    [order, _] = records["orders"]
    links = tuple(
        CausalLink(cause_id=cause, cause_kind=kind, relation=relation)
        for cause, kind, relation in (
            (stable_id("memory_item", "double-bottom"), CauseKind.MEMORY_ITEM, Relation.RECALLED),
            # Patterns and episodes live in the learning loop's tables: one stored nowhere is broken.
            (uuid.UUID(int=97), CauseKind.PATTERN, Relation.GATED_BY),
            (uuid.UUID(int=96), CauseKind.EPISODE, Relation.RECALLED),
            (order.id, CauseKind.ORDER, Relation.GATED_BY),
            (uuid.UUID(int=99), CauseKind.MODEL_VERSION, Relation.PREDICTED_BY),
            (uuid.UUID(int=98), CauseKind.MEMORY_ITEM, Relation.RECALLED),
        )
    )
    with session_scope(database_url, write=True) as session:
        save_signals(session, [dataclasses.replace(signal, causal_links=signal.causal_links + links)], RUN_ID)

    with session_scope(database_url) as session:
        broken = broken_links(session, RUN_ID)

    assert broken == [
        f"signal {signal.id}: its pattern {uuid.UUID(int=97)} (gated_by) is not stored",
        f"signal {signal.id}: its episode {uuid.UUID(int=96)} (recalled) is not stored",
        f"signal {signal.id}: its model_version {uuid.UUID(int=99)} (predicted_by) is not stored",
        f"signal {signal.id}: its memory_item {uuid.UUID(int=98)} (recalled) is not stored",
    ]


def test_links_a_foreign_key_cannot_see_are_found(database_url: str) -> None:
    records = stored_run(database_url, trades=2)
    remember_observation(database_url)
    first, second = (trade(number) for number in range(2))
    with session_scope(database_url, write=True) as session:
        # A trade whose signal was left empty, one whose entry fill is the other trade's, an order
        # without its signal: each row is valid for the database, the chain is not.
        session.execute(update(BacktestTradeRecord).where(BacktestTradeRecord.sequence == 0).values(signal_id=None))
        session.execute(
            update(BacktestTradeRecord)
            .where(BacktestTradeRecord.sequence == 1)
            .values(entry_fill_id=first.entry_fill_id)
        )
        session.execute(text("UPDATE orders SET signal_id = NULL WHERE id = :id"), {"id": records["orders"][0].id.hex})

    with session_scope(database_url) as session:
        broken = broken_links(session, RUN_ID)

    assert broken == [
        "trade 0 names no signal",
        f"trade 1: its entry fill {first.entry_fill_id} fills order {first.entry_order_id}, not its entry order",
        f"order {records['orders'][0].client_order_id} names no signal",
    ]
    assert second.entry_order_id != first.entry_order_id


def test_a_fill_of_another_run_is_not_part_of_the_chain(database_url: str) -> None:
    stored_run(database_url, trades=1)
    remember_observation(database_url)
    with session_scope(database_url, write=True) as session:
        session.execute(update(FillRecord).values(run_id=None))

    with session_scope(database_url) as session:
        broken = broken_links(session, RUN_ID)

    fills = [trade(0).entry_fill_id, trade(0).exit_fill_id]
    assert broken == [
        f"trade 0: its entry fill {fills[0]} is not stored in this run",
        f"trade 0: its exit fill {fills[1]} is not stored in this run",
    ]


def test_the_chain_of_an_unknown_run_is_refused(database_url: str) -> None:
    with session_scope(database_url) as session, pytest.raises(UnknownRun, match=str(RUN_ID)):
        broken_links(session, RUN_ID)


def test_cause_kinds_and_relations_are_all_followed() -> None:
    # A new kind of cause must be taught to `broken_links` (it maps every kind to where it is stored).
    assert {kind.value for kind in CauseKind} == {
        "observation",
        "memory_item",
        "model_version",
        "signal",
        "order",
        "fill",
        "pattern",
        "episode",
    }
    assert Relation.RECALLED.value == "recalled"
