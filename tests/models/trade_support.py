"""Closed trades of a stored run with their whole lineage: the signal, orders and fills each one names.

A stored trade's signal, orders and fills are foreign keys, so a run's trades are stored with them
(`models.backtest_runs.save_run(..., **lineage(run))`), as a backtest stores its own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from models.backtest_runs import StoredRun, save_run
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.canonical import stable_id
from neuraltrade.clock import FixedClock
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.trading.orders import ManagedOrder, OrderManager, client_order_id_for, order_id_for
from neuraltrade.types import Direction, Fill, Order, OrderSide, OrderType, Signal, TimeInForce

START = datetime(2024, 1, 2, 14, 30, 0, 123_456, tzinfo=UTC)
RUN_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def order_ids(signal_id: uuid.UUID) -> tuple[str, str]:
    """The client order ids of the entry a decision placed and of the later decision's order closing it."""
    entry = client_order_id_for(signal_id, "entry")
    return entry, client_order_id_for(signal_id, "close", entry)


def trade(number: int, *, run_id: uuid.UUID = RUN_ID, tag: str | None = None) -> ClosedTrade:
    """Trade `number` of run `run_id`: opened by its own signal's entry order, closed by a later one."""
    signal_id = stable_id("test_signal", run_id, number)
    entry, exit_ = (order_id_for(client_order_id) for client_order_id in order_ids(signal_id))
    return ClosedTrade(
        symbol="AAA" if number % 2 else "BBB",
        entry_bar=number,
        exit_bar=number + 3,
        entry_time=START + timedelta(days=number),
        exit_time=START + timedelta(days=number + 3, microseconds=7),
        size=-2.5 if number % 3 == 0 else 10.0,
        entry_price=100.0 + number / 7,
        exit_price=101.0 - number / 11,
        commission=0.1,
        signal_id=signal_id,
        entry_order_id=entry,
        exit_order_id=exit_,
        entry_fill_id=Fill.id_for(entry, 0),
        exit_fill_id=Fill.id_for(exit_, 0),
        exit_reason=ExitReason.STOP_LOSS if number % 2 else ExitReason.SIGNAL,
        stop_loss=95.5 if number % 2 else None,
        take_profit=None,
        tag=tag,
    )


def lineage(trades: Any) -> dict[str, list[Any]]:
    """The signals, orders (filled) and fills `trades` (built by `trade`) name, as `save_run` takes them.

    `trades` is a run (its trades are taken) or a sequence of trades.
    """
    closed = list(getattr(trades, "trades", trades))
    signals: list[Signal] = []
    orders: list[ManagedOrder] = []
    fills: list[Fill] = []
    for closed_trade in closed:
        assert closed_trade.signal_id is not None
        signals.append(
            Signal(
                id=closed_trade.signal_id,
                strategy_id="momentum-1",
                timestamp=closed_trade.entry_time,
                symbol=closed_trade.symbol,
                direction=Direction.LONG if closed_trade.size > 0 else Direction.SHORT,
                confidence=0.5,
                causal_links=(
                    CausalLink(cause_id=uuid.UUID(int=7), cause_kind=CauseKind.OBSERVATION, relation=Relation.OBSERVED),
                ),
            )
        )
        opening = OrderSide.BUY if closed_trade.size > 0 else OrderSide.SELL
        closing = OrderSide.SELL if opening is OrderSide.BUY else OrderSide.BUY
        legs = zip(
            order_ids(closed_trade.signal_id),
            (opening, closing),
            (closed_trade.entry_time, closed_trade.exit_time),
            (closed_trade.entry_price, closed_trade.exit_price),
            strict=True,
        )
        for client_order_id, side, moment, price in legs:
            manager = OrderManager(FixedClock(moment))
            order = Order(
                id=order_id_for(client_order_id),
                client_order_id=client_order_id,
                symbol=closed_trade.symbol,
                side=side,
                type=OrderType.MARKET,
                quantity=abs(closed_trade.size),
                time_in_force=TimeInForce.GTC,
            )
            manager.submit(order, signal_id=closed_trade.signal_id)
            manager.accept(client_order_id)
            orders.append(manager.fill(client_order_id, abs(closed_trade.size), price))
            fills.append(
                Fill(
                    id=Fill.id_for(order.id, 0),
                    order_id=order.id,
                    sequence=0,
                    timestamp=moment,
                    symbol=closed_trade.symbol,
                    side=side,
                    quantity=abs(closed_trade.size),
                    price=price,
                    commission=closed_trade.commission / 2,
                )
            )
    return {"signals": signals, "orders": orders, "fills": fills}


def store_run(session: Session, run: StoredRun) -> uuid.UUID:
    """Store `run` with the lineage of its trades (`lineage`); return its id."""
    return save_run(session, run, **lineage(run))
