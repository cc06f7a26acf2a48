"""Repositories of the trading engine's signals, orders (with their events and fills) and risk rejections.

Every function takes the caller's session and writes idempotently: saving the same thing twice changes
nothing. Orders are upserted but never moved back: a copy older (by event sequence) than the stored one is
ignored, and a client order id reused for another order raises `DuplicateOrder`. Foreign keys (enforced)
fix the order of writes: a run (`models.backtest_runs`) before what refers to it, signals before the orders
placed on them and the rejections of their orders, orders before their fills. Signals' causal links are
stored as typed edges, ``[{"cause_id", "cause_kind", "relation"}, ...]``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.backtest_runs import _FRESH, _upsert_all
from models.base import table_of
from models.bulk import execute_many
from models.dialects import insert_statement as _insert
from models.provenance_sources import fill_of, log_rows, order_of, signal_of
from models.trading import FillRecord, OrderEventRecord, OrderRecord, RiskRejectionRecord, SignalRecord
from neuraltrade.canonical import stable_id, to_plain
from neuraltrade.errors import DuplicateOrder, UnknownOrder
from neuraltrade.timestamps import require_aware
from neuraltrade.trading.orders import ManagedOrder, OrderEvent
from neuraltrade.trading.risk import RiskRejection
from neuraltrade.types import Fill, Order, OrderStatus, Signal

#: Keys per IN (...) list: SQLite binds at most 32,766 variables.
_KEYS_PER_STATEMENT = 10_000
_ORDER_CONTENT = ("symbol", "side", "type", "quantity", "limit_price", "stop_price", "time_in_force")


def _in_chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _KEYS_PER_STATEMENT):
        yield values[start : start + _KEYS_PER_STATEMENT]


# -- signals ------------------------------------------------------------------------------------------


def save_signals(session: Session, signals: Iterable[Signal], run_id: uuid.UUID | None = None) -> int:
    """Store `signals` (of run `run_id`, or live if None), updating stored ones; return how many were given."""
    signals = list(signals)
    if not signals:
        return 0
    columns: dict[str, list[Any]] = {
        "id": [signal.id for signal in signals],
        "strategy_id": [signal.strategy_id for signal in signals],
        "symbol": [signal.symbol for signal in signals],
        "timestamp": [signal.timestamp for signal in signals],
        "direction": [signal.direction.value for signal in signals],
        "confidence": [float(signal.confidence) for signal in signals],
        "features": [{name: float(value) for name, value in signal.features.items()} for signal in signals],
        "reasoning": [signal.reasoning for signal in signals],
        "causal_links": [to_plain(signal.causal_links) for signal in signals],
        "run_id": [run_id] * len(signals),
    }
    _upsert_all(session, table_of(SignalRecord), columns)
    log_rows(session, Signal.KIND, columns)
    return len(signals)


def load_signals(session: Session, run_id: uuid.UUID | None = None) -> list[Signal]:
    """Return the signals of run `run_id` (the live ones if None), by timestamp."""
    table = table_of(SignalRecord)
    query = select(table).where(table.c.run_id.is_(None) if run_id is None else table.c.run_id == run_id)
    # Rebuilt as the provenance log signed them (`models.provenance_sources`): one owner of the row -> record map.
    return [signal_of(dict(row)) for row in session.execute(query.order_by(table.c.timestamp, table.c.id)).mappings()]


# -- orders -------------------------------------------------------------------------------------------


def _order_content(managed: ManagedOrder, run_id: uuid.UUID | None) -> tuple[Any, ...]:
    order = managed.order
    return (
        order.symbol,
        order.side.value,
        order.type.value,
        float(order.quantity),
        order.limit_price,
        order.stop_price,
        order.time_in_force.value,
        managed.signal_id,
        run_id,
    )


def _refuse_reused_ids(session: Session, orders: Sequence[ManagedOrder], run_id: uuid.UUID | None) -> None:
    given = {managed.client_order_id: managed for managed in orders}
    stored_columns = [getattr(OrderRecord, name) for name in (*_ORDER_CONTENT, "signal_id", "run_id")]
    for chunk in _in_chunks(list(given)):
        query = select(OrderRecord.client_order_id, *stored_columns).where(OrderRecord.client_order_id.in_(chunk))
        for client_order_id, *stored in session.execute(query):
            wanted = _order_content(given[client_order_id], run_id)
            if tuple(stored) != wanted:
                raise DuplicateOrder(client_order_id, f"stored as {tuple(stored)}, was given {wanted}")


def save_orders(session: Session, managed_orders: Iterable[ManagedOrder], run_id: uuid.UUID | None = None) -> int:
    """Store orders (of run `run_id`, or live if None) and their events; return how many orders were given.

    A stored order is updated only by a newer state of itself (more events); its events already stored
    are kept.

    Raises
    ------
    DuplicateOrder
        If a client order id is stored for another order (other content, signal or run).
    """
    orders = list(managed_orders)
    if not orders:
        return 0
    _refuse_reused_ids(session, orders, run_id)
    table = table_of(OrderRecord)
    columns: dict[str, list[Any]] = {
        "id": [managed.id for managed in orders],
        "client_order_id": [managed.client_order_id for managed in orders],
        "symbol": [managed.order.symbol for managed in orders],
        "side": [managed.order.side.value for managed in orders],
        "type": [managed.order.type.value for managed in orders],
        "quantity": [float(managed.order.quantity) for managed in orders],
        "limit_price": [managed.order.limit_price for managed in orders],
        "stop_price": [managed.order.stop_price for managed in orders],
        "time_in_force": [managed.order.time_in_force.value for managed in orders],
        "status": [managed.status.value for managed in orders],
        "filled_quantity": [managed.filled_quantity for managed in orders],
        "average_fill_price": [managed.average_fill_price for managed in orders],
        "last_sequence": [managed.events[-1].sequence for managed in orders],
        "signal_id": [managed.signal_id for managed in orders],
        "run_id": [run_id] * len(orders),
        "created_at": [managed.created_at for managed in orders],
        "updated_at": [managed.updated_at for managed in orders],
    }
    statement = _insert(session, table)
    excluded = statement.excluded
    changing = ("status", "filled_quantity", "average_fill_price", "last_sequence", "updated_at")
    statement = statement.on_conflict_do_update(
        index_elements=["id"],
        set_={name: excluded[name] for name in changing},
        where=table.c.last_sequence < excluded.last_sequence,
    )
    execute_many(session, statement, table, columns)
    log_rows(session, Order.KIND, columns)

    events = [event for managed in orders for event in managed.events]
    event_table = table_of(OrderEventRecord)
    event_columns: dict[str, list[Any]] = {
        "id": [event.id for event in events],
        "order_id": [event.order_id for event in events],
        "sequence": [event.sequence for event in events],
        "timestamp": [event.timestamp for event in events],
        "previous_status": [None if event.previous is None else event.previous.value for event in events],
        "status": [event.status.value for event in events],
        "fill_quantity": [float(event.fill_quantity) for event in events],
        "fill_price": [event.fill_price for event in events],
        "reason": [event.reason for event in events],
    }
    execute_many(session, _insert(session, event_table).on_conflict_do_nothing(), event_table, event_columns)
    return len(orders)


def load_order(session: Session, client_order_id: str) -> ManagedOrder:
    """Return the stored order of `client_order_id` with its events, as the order manager held it.

    Raises
    ------
    UnknownOrder
        If no order of `client_order_id` is stored.
    """
    query = select(OrderRecord).where(OrderRecord.client_order_id == client_order_id)
    row = session.scalars(query, execution_options=_FRESH).one_or_none()
    if row is None:
        raise UnknownOrder(client_order_id)
    event_rows = session.scalars(
        select(OrderEventRecord).where(OrderEventRecord.order_id == row.id).order_by(OrderEventRecord.sequence)
    ).all()
    events = tuple(
        OrderEvent(
            order_id=event.order_id,
            sequence=event.sequence,
            timestamp=event.timestamp,
            previous=None if event.previous_status is None else OrderStatus(event.previous_status),
            status=OrderStatus(event.status),
            fill_quantity=event.fill_quantity,
            fill_price=event.fill_price,
            reason=event.reason,
        )
        for event in event_rows
    )
    order = order_of({column.key: getattr(row, column.key) for column in table_of(OrderRecord).c})
    return ManagedOrder(
        order=order,
        status=order.status,
        filled_quantity=row.filled_quantity,
        average_fill_price=row.average_fill_price,
        events=events,
        signal_id=row.signal_id,
    )


# -- fills --------------------------------------------------------------------------------------------

_FILL_COLUMNS = ("id", "order_id", "sequence", "timestamp", "symbol", "quantity", "price", "commission")


def save_fills(session: Session, fills: Iterable[Fill], run_id: uuid.UUID | None = None) -> int:
    """Store `fills` (of run `run_id`, or live if None) after their orders; one already stored is kept as
    it is (a fill never changes: its id is its order's id and its sequence). Return how many were new.
    """
    given = list(fills)
    if not given:
        return 0
    table = table_of(FillRecord)
    columns: dict[str, list[Any]] = {name: [getattr(fill, name) for fill in given] for name in _FILL_COLUMNS}
    columns["side"] = [fill.side.value for fill in given]
    columns["run_id"] = [run_id] * len(given)
    new = execute_many(session, _insert(session, table).on_conflict_do_nothing(), table, columns)
    log_rows(session, Fill.KIND, columns)
    return new


def load_fills(session: Session, order_id: uuid.UUID | None = None, run_id: uuid.UUID | None = None) -> list[Fill]:
    """Return the fills of order `order_id` if given, else those of run `run_id` (the live ones if None),
    by time, order and sequence."""
    if order_id is not None:
        condition = FillRecord.order_id == order_id
    else:
        condition = FillRecord.run_id.is_(None) if run_id is None else FillRecord.run_id == run_id
    table = table_of(FillRecord)
    query = select(table).where(condition).order_by(table.c.timestamp, table.c.order_id, table.c.sequence)
    return [fill_of(dict(row)) for row in session.execute(query).mappings()]


# -- risk rejections ----------------------------------------------------------------------------------


class Rejection(Protocol):
    """What the risk checks report for an order they refuse (any object with these attributes)."""

    @property
    def client_order_id(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def rule(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def details(self) -> Mapping[str, Any]: ...
    @property
    def signal_id(self) -> uuid.UUID | None: ...


@dataclass(frozen=True, kw_only=True)
class StoredRejection:
    """A risk rejection as stored (a `Rejection`), with its run; `signal_id` names the decision refused."""

    client_order_id: str
    symbol: str
    timestamp: datetime
    rule: str
    reason: str
    details: Mapping[str, Any]
    signal_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None


def rejection_id_for(client_order_id: str, rule: str, run_id: uuid.UUID | None = None) -> uuid.UUID:
    """Return the stable id of the rejection of order `client_order_id` by risk rule `rule` (in run `run_id`)."""
    if run_id is None:
        return stable_id("risk_rejection", client_order_id, rule)
    return stable_id("risk_rejection", run_id, client_order_id, rule)


def save_rejections(session: Session, rejections: Iterable[Rejection], run_id: uuid.UUID | None = None) -> int:
    """Store risk rejections (of run `run_id`, or live if None) after the signals they name; one already
    stored is kept as it is.

    Returns how many were new.
    """
    given = list(rejections)
    if not given:
        return 0
    for rejection in given:
        require_aware(f"rejection of order {rejection.client_order_id!r} timestamp", rejection.timestamp)
    table = table_of(RiskRejectionRecord)
    columns: dict[str, list[Any]] = {
        "id": [rejection_id_for(rejection.client_order_id, rejection.rule, run_id) for rejection in given],
        "run_id": [run_id] * len(given),
        **{
            name: [getattr(rejection, name) for rejection in given]
            for name in ("client_order_id", "symbol", "timestamp", "rule", "reason", "signal_id")
        },
        "details": [to_plain(rejection.details, non_finite_as_null=True) for rejection in given],
    }
    new = execute_many(session, _insert(session, table).on_conflict_do_nothing(), table, columns)
    log_rows(session, RiskRejection.KIND, columns)
    return new


def load_rejections(session: Session, run_id: uuid.UUID | None = None) -> list[StoredRejection]:
    """Return the rejections of run `run_id` (the live ones if None), by timestamp."""
    query = select(RiskRejectionRecord).where(
        RiskRejectionRecord.run_id.is_(None) if run_id is None else RiskRejectionRecord.run_id == run_id
    )
    rows = session.scalars(
        query.order_by(RiskRejectionRecord.timestamp, RiskRejectionRecord.id), execution_options=_FRESH
    )
    return [
        StoredRejection(
            client_order_id=row.client_order_id,
            symbol=row.symbol,
            timestamp=row.timestamp,
            rule=row.rule,
            reason=row.reason,
            details=row.details,
            signal_id=row.signal_id,
            run_id=row.run_id,
        )
        for row in rows
    ]
