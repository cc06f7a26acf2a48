"""Repositories of backtest runs (overview, closed trades, equity curve) and of trained model versions.

Every function takes the caller's session and writes idempotently: saving the same thing twice changes
nothing. Re-saving a backtest run under its id replaces its trades and equity curve in one savepoint; a
model version is replaced under its id. Save a run before what refers to it (its signals, orders and risk
rejections, `models.order_records`).

`save_backtest` stores a backtest's result whole (run, trades, equity, signals, orders, rejections) under
its `run_identity`: the one way a run is stored, by the nightly's task and by ``neuraltrade backtest``.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from models.base import table_of
from models.bulk import execute_many
from models.repositories import _insert
from models.trading import BacktestEquityRecord, BacktestRunRecord, BacktestTradeRecord, ModelVersionRecord
from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.controls import SizingConfig
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.result import BacktestResult, configuration_digest, market_digest, run_id_for, signal_id_for
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.canonical import stable_id, to_plain
from neuraltrade.errors import UnknownRun, ValidationError
from neuraltrade.strategies.base import Strategy
from neuraltrade.trading.paper import managed_orders
from neuraltrade.trading.risk import RiskLimits
from neuraltrade.trading.sizing import CappedKelly, FixedFraction, VolatilityTarget

_HEX = frozenset("0123456789abcdef")
# Writes here go through Core statements, which leave ORM objects a session already holds untouched;
# reads refresh them, so a load after a save in one session sees what was saved.
_FRESH = {"populate_existing": True}


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


def _upsert_all(session: Session, table: Table, columns: dict[str, list[Any]]) -> int:
    statement = _insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=["id"], set_={name: statement.excluded[name] for name in columns if name != "id"}
    )
    return execute_many(session, statement, table, columns)


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
# decision_bar is not stored: the trade's signal_id names the decision, through its tag.
_TRADE_FIELDS = tuple(name for name in ClosedTrade._fields if name not in ("exit_reason", "decision_bar"))


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


def find_run(session: Session, run_id: uuid.UUID) -> RunOverview | None:
    """Return the overview of the run stored under `run_id`, or None (without reading trades or equity)."""
    record = session.get(BacktestRunRecord, run_id)
    return None if record is None else RunOverview(**_overview_of(record))


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


# -- a backtest, whole ------------------------------------------------------------------------------

#: How a stored run names its sizer.
_SIZING_KINDS: dict[type, str] = {
    FixedFraction: "fixed_fraction",
    VolatilityTarget: "volatility_target",
    CappedKelly: "capped_kelly",
}


@dataclass(frozen=True, kw_only=True)
class RunIdentity:
    """What a run is stored under: the digest of everything that shaped it besides its bars, and its id."""

    config_digest: str
    run_id: uuid.UUID


def run_identity(
    strategy: Strategy,
    config: BacktestConfig,
    market: MarketData,
    *,
    limits: RiskLimits | None = None,
    sizing: SizingConfig | None = None,
    memory: Mapping[str, Any] | None = None,
) -> RunIdentity:
    """The identity of `strategy` run on `market` under `config`, the risk `limits`, the `sizing` and the
    `memory` read (by its ``digest``): the same inputs give the same id, whoever runs them."""
    config_digest = configuration_digest(
        strategy,
        config,
        risk=limits.digest if limits is not None else None,
        sizing=sizing.digest if sizing is not None else None,
        memory=memory["digest"] if memory is not None else None,
    )
    return RunIdentity(config_digest=config_digest, run_id=run_id_for(config_digest, market_digest(market)))


def run_details(
    result: BacktestResult,
    *,
    limits: RiskLimits | None = None,
    sizing: SizingConfig | None = None,
    memory: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a stored run records besides its statistics: the strategy's own details (a model's hit rate, a
    cache's), how many orders the risk manager refused, the risk limits and the sizing (their digests
    are in the run's configuration digest; their values are kept for the report) and the memory read.

    A run over several symbols keeps each symbol's strategy details under ``by_symbol``.
    """
    frames = {
        symbol: {key: to_plain(value) for key, value in frame.details.items()}
        for symbol, frame in result.frames.items()
    }
    details: dict[str, Any] = next(iter(frames.values())) if len(frames) == 1 else {"by_symbol": frames}
    details["rejections"] = len(result.rejections)
    if limits is not None:
        details["risk_limits_digest"] = limits.digest
        details["risk_limits"] = to_plain(limits)
    if sizing is not None:
        details["sizing"] = {"kind": _SIZING_KINDS[type(sizing)], **to_plain(sizing)}
    if memory is not None:
        details["memory"] = dict(memory)
    return details


def stored_run(
    result: BacktestResult,
    identity: RunIdentity,
    statistics: Mapping[str, Any],
    details: Mapping[str, Any],
    created_at: datetime,
) -> StoredRun:
    """The storable form of `result` as run `identity`: identity, configuration, statistics, trades, equity.

    Each trade opened by a decision carries that decision's signal id (in its tag), which the store keeps.
    """
    run_id = identity.run_id
    times = result.market.datetimes
    strategy_id = result.strategy.strategy_id
    trades = tuple(
        trade._replace(tag=str(signal_id_for(run_id, strategy_id, trade.symbol, times[trade.decision_bar])))
        if trade.decision_bar is not None
        else trade
        for trade in result.trades
    )
    return StoredRun(
        id=run_id,
        strategy=result.strategy.name,
        strategy_id=strategy_id,
        config_digest=identity.config_digest,
        strategy_config=to_plain(result.strategy.config),
        backtest_config=to_plain(result.config),
        symbols=tuple(result.market.symbols),
        start=times[0],
        end=times[-1],
        bars=len(result.market),
        data_digest=result.data_digest,
        statistics=dict(statistics),
        details=dict(details),
        created_at=created_at,
        trades=trades,
        timestamps=np.asarray(result.market.timestamps, dtype=np.int64),
        equity=result.equity,
        drawdown_pct=result.drawdown_pct,
    )


def save_backtest(
    session: Session,
    result: BacktestResult,
    identity: RunIdentity,
    details: Mapping[str, Any],
    *,
    created_at: datetime,
) -> bool:
    """Store `result` (run with ``record_orders=True``) as run `identity` with its trades, equity, signals,
    orders and risk rejections; return whether it stored it.

    A run already stored under its id was computed from the same inputs, so nothing is written then:
    storing the same backtest again changes no row, not even its time of creation.
    """
    # The order repositories build on this module's helpers, so they are imported here, not above.
    from models.order_records import save_orders, save_rejections, save_signals

    if find_run(session, identity.run_id) is not None:
        return False
    run_id = identity.run_id
    save_run(session, stored_run(result, identity, result.statistics.to_dict(), details, created_at))
    save_signals(session, result.signals(run_id), run_id)
    save_orders(session, managed_orders(result, run_id), run_id)
    save_rejections(session, result.rejections, run_id)
    return True


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
