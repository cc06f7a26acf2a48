"""Repositories of the trading engine: backtest runs, orders, signals, risk rejections and model versions.

Every function takes the caller's session and writes idempotently: saving the same thing twice changes
nothing. Re-saving a backtest run under its id replaces its trades and equity curve in one savepoint.
Orders are upserted but never moved back: a copy older (by event sequence) than the stored one is
ignored, and a client order id reused for another order raises `DuplicateOrder`. Save a run before
what refers to it, and signals before the orders placed on them (foreign keys).
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from models.base import table_of
from models.bulk import execute_many
from models.repositories import _insert
from models.trading import (
    BacktestEquityRecord,
    BacktestRunRecord,
    BacktestTradeRecord,
    ModelVersionRecord,
    OrderEventRecord,
    OrderRecord,
    RiskRejectionRecord,
    SignalRecord,
)
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.canonical import stable_id, to_plain
from neuraltrade.errors import DuplicateOrder, UnknownOrder, UnknownRun, ValidationError
from neuraltrade.oms import ManagedOrder, OrderEvent
from neuraltrade.types import Direction, Order, OrderSide, OrderStatus, OrderType, Signal, TimeInForce

#: Keys per IN (...) list: SQLite binds at most 32,766 variables.
_KEYS_PER_STATEMENT = 10_000
_HEX = frozenset("0123456789abcdef")
# Writes here go through Core statements, which leave ORM objects a session already holds untouched;
# reads refresh them, so a load after a save in one session sees what was saved.
_FRESH = {"populate_existing": True}
_ORDER_CONTENT = ("symbol", "side", "type", "quantity", "limit_price", "stop_price", "time_in_force")


def _require_aware(name: str, moment: datetime) -> None:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(f"{name} {moment!r} is not an aware datetime; give it a time zone")


def _require_hex(name: str, value: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not set(value) <= _HEX:
        raise ValidationError(f"{name} must be 1 to 64 lower-case hex digits, was {value!r}")


def _json_ready(value: Any) -> Any:
    """Return `value` as plain JSON data (canonical rules); NaN and infinities become null.

    Statistics of a run without trades hold NaN, which PostgreSQL's JSON type refuses.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_json_ready(item) for item in value.tolist()]
    return to_plain(value)


def _in_chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _KEYS_PER_STATEMENT):
        yield values[start : start + _KEYS_PER_STATEMENT]


# -- backtest runs ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunOverview:
    """What a backtest run was: strategy, configurations (and their digest), data, statistics, details."""

    id: uuid.UUID
    strategy: str
    strategy_id: str
    config_digest: str
    strategy_config: Mapping[str, Any]
    backtest_config: Mapping[str, Any]
    symbols: tuple[str, ...]
    start: datetime
    end: datetime
    bars: int
    data_digest: str
    statistics: Mapping[str, Any]
    details: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.id, uuid.UUID):
            raise ValidationError(f"run id must be a UUID, was {self.id!r}")
        if not self.strategy or not self.strategy_id:
            raise ValidationError(f"run {self.id} needs a strategy and a strategy_id")
        _require_hex(f"run {self.id} config_digest", self.config_digest)
        _require_hex(f"run {self.id} data_digest", self.data_digest)
        for name in ("start", "end", "created_at"):
            _require_aware(f"run {self.id} {name}", getattr(self, name))
        if self.end < self.start:
            raise ValidationError(f"run {self.id} ends ({self.end}) before it starts ({self.start})")
        if isinstance(self.bars, bool) or not isinstance(self.bars, int) or self.bars < 0:
            raise ValidationError(f"run {self.id} bars must be a non-negative integer, was {self.bars!r}")
        object.__setattr__(self, "symbols", tuple(self.symbols))


@dataclass(frozen=True, kw_only=True, eq=False)
class StoredRun(RunOverview):
    """A backtest run with its closed trades and its equity curve (one value per bar of the run).

    `timestamps` are epoch microseconds (int64); `equity` and `drawdown_pct` are float64 of the same length.
    A trade's `tag`, when it is a UUID, is taken for the id of the signal that opened it. Arrays make
    equality ambiguous, so runs compare by identity; compare fields to test a round trip.
    """

    trades: Sequence[ClosedTrade] = ()
    timestamps: np.ndarray
    equity: np.ndarray
    drawdown_pct: np.ndarray

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "trades", tuple(self.trades))
        arrays = {
            "timestamps": np.ascontiguousarray(self.timestamps, dtype=np.int64),
            "equity": np.ascontiguousarray(self.equity, dtype=np.float64),
            "drawdown_pct": np.ascontiguousarray(self.drawdown_pct, dtype=np.float64),
        }
        lengths = {name: array.shape for name, array in arrays.items()}
        if any(array.ndim != 1 for array in arrays.values()) or len(set(lengths.values())) != 1:
            raise ValidationError(f"run {self.id} needs flat arrays of one length, has shapes {lengths}")
        for name, array in arrays.items():
            object.__setattr__(self, name, array)


_OVERVIEW_FIELDS = tuple(field.name for field in dataclasses.fields(RunOverview))
_RUN_JSON_FIELDS = ("strategy_config", "backtest_config", "symbols", "statistics", "details")
# ClosedTrade's own fields (exit_reason stored by value); pnl and return_pct are stored too, for queries.
_TRADE_FIELDS = tuple(name for name in ClosedTrade._fields if name != "exit_reason")


def _overview_values(run: RunOverview) -> dict[str, Any]:
    values = {name: getattr(run, name) for name in _OVERVIEW_FIELDS}
    return values | {name: _json_ready(values[name]) for name in _RUN_JSON_FIELDS}


def _signal_of(tag: str | None) -> uuid.UUID | None:
    try:
        return None if tag is None else uuid.UUID(tag)
    except ValueError:
        return None


def save_run(session: Session, run: StoredRun) -> uuid.UUID:
    """Store `run` with its trades and equity curve, replacing whatever was stored under its id; return the id."""
    table = table_of(BacktestRunRecord)
    values = _overview_values(run)
    upsert = _insert(session, table).values(values)
    upsert = upsert.on_conflict_do_update(
        index_elements=["id"], set_={name: upsert.excluded[name] for name in values if name != "id"}
    )
    with session.begin_nested():
        session.execute(upsert)
        session.execute(delete(BacktestTradeRecord).where(BacktestTradeRecord.run_id == run.id))
        session.execute(delete(BacktestEquityRecord).where(BacktestEquityRecord.run_id == run.id))
        if run.trades:
            trades = table_of(BacktestTradeRecord)
            count = len(run.trades)
            columns: dict[str, list[Any]] = {
                "id": [stable_id("backtest_trade", run.id, sequence) for sequence in range(count)],
                "run_id": [run.id] * count,
                "sequence": list(range(count)),
                **{
                    name: [getattr(trade, name) for trade in run.trades]
                    for name in (*_TRADE_FIELDS, "pnl", "return_pct")
                },
                "exit_reason": [trade.exit_reason.value for trade in run.trades],
                "signal_id": [_signal_of(trade.tag) for trade in run.trades],
            }
            execute_many(session, trades.insert(), trades, columns)
        session.execute(
            table_of(BacktestEquityRecord)
            .insert()
            .values(
                run_id=run.id,
                timestamps=run.timestamps.astype("<i8").tobytes(),
                equity=run.equity.astype("<f8").tobytes(),
                drawdown_pct=run.drawdown_pct.astype("<f8").tobytes(),
            )
        )
    return run.id


def _overview_of(record: BacktestRunRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _OVERVIEW_FIELDS}


def load_run(session: Session, run_id: uuid.UUID) -> StoredRun:
    """Return the run stored under `run_id`, with its trades in order and its equity curve.

    Raises
    ------
    UnknownRun
        If no run is stored under `run_id`.
    """
    record = session.get(BacktestRunRecord, run_id, populate_existing=True)
    if record is None:
        raise UnknownRun(str(run_id))
    rows = session.scalars(
        select(BacktestTradeRecord).where(BacktestTradeRecord.run_id == run_id).order_by(BacktestTradeRecord.sequence),
        execution_options=_FRESH,
    ).all()
    trades = [
        ClosedTrade(exit_reason=ExitReason(row.exit_reason), **{name: getattr(row, name) for name in _TRADE_FIELDS})
        for row in rows
    ]
    curve = session.get(BacktestEquityRecord, run_id, populate_existing=True)
    empty = b""
    return StoredRun(
        **_overview_of(record),
        trades=trades,
        timestamps=np.frombuffer(curve.timestamps if curve else empty, dtype="<i8").astype(np.int64),
        equity=np.frombuffer(curve.equity if curve else empty, dtype="<f8").astype(np.float64),
        drawdown_pct=np.frombuffer(curve.drawdown_pct if curve else empty, dtype="<f8").astype(np.float64),
    )


def list_runs(session: Session, limit: int = 20, strategy: str | None = None) -> list[RunOverview]:
    """Return the `limit` newest runs (of `strategy` if given), newest first, without trades or curves."""
    query = select(BacktestRunRecord)
    if strategy is not None:
        query = query.where(BacktestRunRecord.strategy == strategy)
    query = query.order_by(BacktestRunRecord.created_at.desc(), BacktestRunRecord.id).limit(limit)
    return [RunOverview(**_overview_of(record)) for record in session.scalars(query, execution_options=_FRESH)]


# -- signals ------------------------------------------------------------------------------------------


def _upsert_all(session: Session, table: Table, columns: dict[str, list[Any]]) -> int:
    statement = _insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=["id"], set_={name: statement.excluded[name] for name in columns if name != "id"}
    )
    return execute_many(session, statement, table, columns)


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
        "causal_links": [[str(link) for link in signal.causal_links] for signal in signals],
        "run_id": [run_id] * len(signals),
    }
    _upsert_all(session, table_of(SignalRecord), columns)
    return len(signals)


def load_signals(session: Session, run_id: uuid.UUID | None = None) -> list[Signal]:
    """Return the signals of run `run_id` (the live ones if None), by timestamp."""
    query = select(SignalRecord).where(
        SignalRecord.run_id.is_(None) if run_id is None else SignalRecord.run_id == run_id
    )
    return [
        Signal(
            id=row.id,
            strategy_id=row.strategy_id,
            timestamp=row.timestamp,
            symbol=row.symbol,
            direction=Direction(row.direction),
            confidence=row.confidence,
            features=dict(row.features),
            reasoning=row.reasoning,
            causal_links=[uuid.UUID(link) for link in row.causal_links],
        )
        for row in session.scalars(query.order_by(SignalRecord.timestamp, SignalRecord.id), execution_options=_FRESH)
    ]


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
    status = OrderStatus(row.status)
    order = Order(
        id=row.id,
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        side=OrderSide(row.side),
        type=OrderType(row.type),
        quantity=row.quantity,
        limit_price=row.limit_price,
        stop_price=row.stop_price,
        time_in_force=TimeInForce(row.time_in_force),
        status=status,
    )
    return ManagedOrder(
        order=order,
        status=status,
        filled_quantity=row.filled_quantity,
        average_fill_price=row.average_fill_price,
        events=events,
        signal_id=row.signal_id,
    )


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


@dataclass(frozen=True, kw_only=True)
class StoredRejection:
    """A risk rejection as stored (a `Rejection`), with its run."""

    client_order_id: str
    symbol: str
    timestamp: datetime
    rule: str
    reason: str
    details: Mapping[str, Any]
    run_id: uuid.UUID | None = None


def rejection_id_for(client_order_id: str, rule: str) -> uuid.UUID:
    """Return the stable id of the rejection of order `client_order_id` by risk rule `rule`."""
    return stable_id("risk_rejection", client_order_id, rule)


def save_rejections(session: Session, rejections: Iterable[Rejection], run_id: uuid.UUID | None = None) -> int:
    """Store risk rejections (of run `run_id`, or live if None); one already stored is kept as it is.

    Returns how many were new.
    """
    given = list(rejections)
    if not given:
        return 0
    for rejection in given:
        _require_aware(f"rejection of order {rejection.client_order_id!r} timestamp", rejection.timestamp)
    table = table_of(RiskRejectionRecord)
    columns: dict[str, list[Any]] = {
        "id": [rejection_id_for(rejection.client_order_id, rejection.rule) for rejection in given],
        "run_id": [run_id] * len(given),
        **{
            name: [getattr(rejection, name) for rejection in given]
            for name in ("client_order_id", "symbol", "timestamp", "rule", "reason")
        },
        "details": [_json_ready(rejection.details) for rejection in given],
    }
    return execute_many(session, _insert(session, table).on_conflict_do_nothing(), table, columns)


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
            run_id=row.run_id,
        )
        for row in rows
    ]


# -- model versions -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StoredModelVersion:
    """A trained model of `strategy` on `symbol`; `id` is the digest of the configuration that trained it."""

    id: str
    strategy: str
    symbol: str
    trained_from: datetime
    trained_to: datetime
    train_samples: int
    test_samples: int
    out_of_sample_hit_rate: float | None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    model: bytes | None = None
    created_at: datetime

    def __post_init__(self) -> None:
        _require_hex("model version id", self.id)
        if not self.strategy or not self.symbol:
            raise ValidationError(f"model version {self.id} needs a strategy and a symbol")
        for name in ("trained_from", "trained_to", "created_at"):
            _require_aware(f"model version {self.id} {name}", getattr(self, name))
        if self.trained_to < self.trained_from:
            raise ValidationError(f"model version {self.id} is trained to {self.trained_to}, before its start")
        for name in ("train_samples", "test_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"model version {self.id} {name} must be a non-negative integer, was {value!r}")
        rate = self.out_of_sample_hit_rate
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValidationError(f"model version {self.id} out_of_sample_hit_rate must lie in [0, 1], was {rate!r}")


_MODEL_FIELDS = tuple(field.name for field in dataclasses.fields(StoredModelVersion) if field.name != "parameters")


def save_model_version(session: Session, version: StoredModelVersion) -> str:
    """Store `version`, replacing what was stored under its id; return the id."""
    columns = {name: [getattr(version, name)] for name in _MODEL_FIELDS}
    columns["parameters"] = [_json_ready(version.parameters)]
    _upsert_all(session, table_of(ModelVersionRecord), columns)
    return version.id


def latest_model_version(session: Session, strategy: str, symbol: str) -> StoredModelVersion | None:
    """Return the newest stored model of `strategy` on `symbol`, or None if it has none."""
    query = (
        select(ModelVersionRecord)
        .where(ModelVersionRecord.strategy == strategy, ModelVersionRecord.symbol == symbol)
        .order_by(ModelVersionRecord.created_at.desc(), ModelVersionRecord.id)
        .limit(1)
    )
    row = session.scalars(query, execution_options=_FRESH).one_or_none()
    if row is None:
        return None
    return StoredModelVersion(parameters=row.parameters, **{name: getattr(row, name) for name in _MODEL_FIELDS})
