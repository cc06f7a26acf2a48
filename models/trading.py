"""ORM tables of the trading engine: orders, their events and fills, signals, risk rejections, backtest runs, models.

Enumerations are stored as their values in plain strings (no database enum types, so PostgreSQL and
SQLite take the same DDL and a new status needs no migration). Backtest equity curves are one row of
three little-endian blobs per run: a night of 15 runs of 5,000 bars writes 15 rows, not 75,000.

Lineage is kept by foreign keys (enforced: SQLite connections switch them on, `models.engine`): a closed
trade names its signal, its entry and exit orders and fills; a fill its order; an order and a risk
rejection their signal. Rows that refer to others are written after them: run, signals, orders (with
their events), fills, then trades and rejections (`models.backtest_runs.save_run`). Columns a run stored
before revision 0004 could not fill (its trades' orders and fills, its spec) are nullable.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

_RUN_FOREIGN_KEY = "backtest_runs.id"
_SIGNAL_FOREIGN_KEY = "signals.id"
_ORDER_FOREIGN_KEY = "orders.id"
_FILL_FOREIGN_KEY = "fills.id"


class BacktestRunRecord(Base):
    """One backtest run: what ran (strategy and configs, by digest), on which data, and its statistics.

    `spec` is the canonical form of its `neuraltrade.backtest.run_spec.RunSpec` and `engine_version` the
    engine that computed it; both are NULL for a run stored before revision 0004, which a re-run computes
    again rather than reuses.
    """

    __tablename__ = "backtest_runs"
    __table_args__ = (Index(None, "strategy", "created_at"), Index(None, "config_digest"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    strategy: Mapped[str] = mapped_column(String(64))
    strategy_id: Mapped[str] = mapped_column(Text)
    config_digest: Mapped[str] = mapped_column(String(64))
    strategy_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    backtest_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    symbols: Mapped[list[str]] = mapped_column(JSON)
    start: Mapped[datetime]
    end: Mapped[datetime]
    bars: Mapped[int] = mapped_column(Integer)
    data_digest: Mapped[str] = mapped_column(String(64))
    statistics: Mapped[dict[str, Any]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    engine_version: Mapped[str | None] = mapped_column(String(32))
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class BacktestTradeRecord(Base):
    """One closed trade of a run; `id` is derived from (run_id, sequence).

    `signal_id` names the decision that opened it (None for a trade opened by a direct order); its
    order and fill ids are None only for trades stored before revision 0004. `tag` is the user's tag.
    """

    __tablename__ = "backtest_trades"
    __table_args__ = (UniqueConstraint("run_id", "sequence"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(_RUN_FOREIGN_KEY, ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(32))
    entry_bar: Mapped[int] = mapped_column(Integer)
    exit_bar: Mapped[int] = mapped_column(Integer)
    entry_time: Mapped[datetime]
    exit_time: Mapped[datetime]
    size: Mapped[float] = mapped_column(Float)
    entry_price: Mapped[float] = mapped_column(Float)
    exit_price: Mapped[float] = mapped_column(Float)
    commission: Mapped[float] = mapped_column(Float)
    pnl: Mapped[float] = mapped_column(Float)
    return_pct: Mapped[float] = mapped_column(Float)
    exit_reason: Mapped[str] = mapped_column(String(32))
    stop_loss: Mapped[float | None] = mapped_column(Float)
    take_profit: Mapped[float | None] = mapped_column(Float)
    tag: Mapped[str | None] = mapped_column(Text)
    signal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_SIGNAL_FOREIGN_KEY, ondelete="SET NULL"))
    entry_order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_ORDER_FOREIGN_KEY))
    exit_order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_ORDER_FOREIGN_KEY))
    entry_fill_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_FILL_FOREIGN_KEY))
    exit_fill_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_FILL_FOREIGN_KEY))


class BacktestEquityRecord(Base):
    """The equity curve of one run as three little-endian blobs of one value per bar."""

    __tablename__ = "backtest_equity"

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(_RUN_FOREIGN_KEY, ondelete="CASCADE"), primary_key=True)
    timestamps: Mapped[bytes] = mapped_column(LargeBinary)
    equity: Mapped[bytes] = mapped_column(LargeBinary)
    drawdown_pct: Mapped[bytes] = mapped_column(LargeBinary)


class SignalRecord(Base):
    """A strategy's signal (`neuraltrade.types.Signal`); `causal_links` is a list of typed edges,
    ``{"cause_id", "cause_kind", "relation"}`` (`neuraltrade.records.CausalLink`), in the signal's order."""

    __tablename__ = "signals"
    __table_args__ = (Index(None, "symbol", "timestamp"), Index(None, "run_id"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    strategy_id: Mapped[str] = mapped_column(Text)
    symbol: Mapped[str] = mapped_column(String(32))
    timestamp: Mapped[datetime]
    direction: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    features: Mapped[dict[str, float]] = mapped_column(JSON)
    reasoning: Mapped[str] = mapped_column(Text)
    causal_links: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_RUN_FOREIGN_KEY, ondelete="CASCADE"))


class OrderRecord(Base):
    """An order and where it stands; `id` is `neuraltrade.trading.orders.order_id_for(client_order_id)`.

    `last_sequence` is the sequence of the order's newest event: a write carrying an older state of the
    order than the stored one leaves the row alone.
    """

    __tablename__ = "orders"
    __table_args__ = (Index(None, "run_id"), Index(None, "symbol", "status"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(128), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[float] = mapped_column(Float)
    limit_price: Mapped[float | None] = mapped_column(Float)
    stop_price: Mapped[float | None] = mapped_column(Float)
    time_in_force: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    filled_quantity: Mapped[float] = mapped_column(Float)
    average_fill_price: Mapped[float | None] = mapped_column(Float)
    last_sequence: Mapped[int] = mapped_column(Integer)
    signal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_SIGNAL_FOREIGN_KEY, ondelete="SET NULL"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_RUN_FOREIGN_KEY, ondelete="CASCADE"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OrderEventRecord(Base):
    """One change of one order (`neuraltrade.trading.orders.OrderEvent`); `id` is derived from (order_id, sequence)."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("order_id", "sequence"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(_ORDER_FOREIGN_KEY, ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    timestamp: Mapped[datetime]
    previous_status: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    fill_quantity: Mapped[float] = mapped_column(Float)
    fill_price: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)


class FillRecord(Base):
    """One fill of one order (`neuraltrade.types.Fill`); `id` is `Fill.id_for(order_id, sequence)`.

    `sequence` counts the order's fills from 0; `commission` is the fill's own. `run_id` is the run that
    filled it, None for a live (paper) fill.
    """

    __tablename__ = "fills"
    __table_args__ = (UniqueConstraint("order_id", "sequence"), Index(None, "run_id"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(_ORDER_FOREIGN_KEY, ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    timestamp: Mapped[datetime]
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    commission: Mapped[float] = mapped_column(Float)
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_RUN_FOREIGN_KEY, ondelete="CASCADE"))


class RiskRejectionRecord(Base):
    """An order a risk rule refused, and why; `id` is derived from (client_order_id, rule)."""

    __tablename__ = "risk_rejections"
    __table_args__ = (Index(None, "run_id"), Index(None, "symbol", "timestamp"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_RUN_FOREIGN_KEY, ondelete="CASCADE"))
    client_order_id: Mapped[str] = mapped_column(String(128))
    symbol: Mapped[str] = mapped_column(String(32))
    timestamp: Mapped[datetime]
    rule: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    signal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_SIGNAL_FOREIGN_KEY, ondelete="SET NULL"))


class ModelVersionRecord(Base):
    """A trained model of one strategy and symbol; `id` is the digest of the configuration that trained it.

    `record_id` is the UUID signals link to it by (`neuraltrade.strategies.neural.model_version_uuid`).
    """

    __tablename__ = "model_versions"
    __table_args__ = (Index(None, "strategy", "symbol", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    strategy: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    trained_from: Mapped[datetime]
    trained_to: Mapped[datetime]
    train_samples: Mapped[int] = mapped_column(Integer)
    test_samples: Mapped[int] = mapped_column(Integer)
    out_of_sample_hit_rate: Mapped[float | None] = mapped_column(Float)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    model: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    record_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
