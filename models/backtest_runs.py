"""Repositories of backtest runs (overview, closed trades, equity curve) and of trained model versions.

Every function takes the caller's session and writes idempotently: saving the same thing twice changes
nothing. Re-saving a backtest run under its id replaces its trades and equity curve in one savepoint; a
model version is replaced under its id. Save a run before what refers to it (its signals, orders and risk
rejections, `models.order_records`).

`save_backtest` stores a backtest's result whole (run, trades, equity, signals, orders, rejections, the
model versions its signals link to) under its `RunSpec`'s run id: the one way a run is stored, by the
nightly's task and by ``neuraltrade backtest`` (both through ``tasks.backtest.run_and_store``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from models.base import table_of
from models.bulk import execute_many
from models.dialects import insert_statement as _insert
from models.trading import BacktestEquityRecord, BacktestRunRecord, BacktestTradeRecord, ModelVersionRecord
from neuraltrade.backtest.orders import managed_orders
from neuraltrade.backtest.result import BacktestResult
from neuraltrade.backtest.run_spec import SIZING_KINDS, RunSpec, SizingConfig
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.canonical import canonical_json, stable_id, to_plain
from neuraltrade.errors import UnknownRun, ValidationError
from neuraltrade.strategies.needs import ModelVersion, Products
from neuraltrade.timestamps import require_aware
from neuraltrade.trading.orders import ManagedOrder
from neuraltrade.trading.risk import RiskLimits
from neuraltrade.types import Fill, Signal

if TYPE_CHECKING:
    from models.order_records import Rejection
    from neuraltrade.provenance.records import Retrieval

_HEX = frozenset("0123456789abcdef")
# Writes here go through Core statements, which leave ORM objects a session already holds untouched;
# reads refresh them, so a load after a save in one session sees what was saved.
_FRESH = {"populate_existing": True}


def _require_hex(name: str, value: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not set(value) <= _HEX:
        raise ValidationError(f"{name} must be 1 to 64 lower-case hex digits, was {value!r}")


def _upsert_all(session: Session, table: Table, columns: dict[str, list[Any]]) -> int:
    statement = _insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=["id"], set_={name: statement.excluded[name] for name in columns if name != "id"}
    )
    return execute_many(session, statement, table, columns)


# -- backtest runs ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunOverview:
    """What a backtest run was: strategy, configurations (and their digest), data, statistics, details.

    `spec` is the canonical form of the run's `RunSpec` (whose `run_id` is `id`) and `engine_version` the
    engine that computed it; both are None for a run stored before run specifications existed.
    """

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
    engine_version: str | None
    spec: Mapping[str, Any] | None

    def __post_init__(self) -> None:
        if not isinstance(self.id, uuid.UUID):
            raise ValidationError(f"run id must be a UUID, was {self.id!r}")
        if not self.strategy or not self.strategy_id:
            raise ValidationError(f"run {self.id} needs a strategy and a strategy_id")
        _require_hex(f"run {self.id} config_digest", self.config_digest)
        _require_hex(f"run {self.id} data_digest", self.data_digest)
        for name in ("start", "end", "created_at"):
            require_aware(f"run {self.id} {name}", getattr(self, name))
        if self.end < self.start:
            raise ValidationError(f"run {self.id} ends ({self.end}) before it starts ({self.start})")
        if isinstance(self.bars, bool) or not isinstance(self.bars, int) or self.bars < 0:
            raise ValidationError(f"run {self.id} bars must be a non-negative integer, was {self.bars!r}")
        object.__setattr__(self, "symbols", tuple(self.symbols))

    def run_spec(self) -> RunSpec | None:
        """The run's specification (None for a run stored before run specifications existed)."""
        return None if self.spec is None else RunSpec.from_canonical(canonical_json(dict(self.spec)))


@dataclass(frozen=True, kw_only=True, eq=False)
class StoredRun(RunOverview):
    """A backtest run with its closed trades and its equity curve (one value per bar of the run).

    `timestamps` are epoch microseconds (int64); `equity` and `drawdown_pct` are float64 of the same length.
    Each trade names its signal, orders and fills (None in a run stored before revision 0004). Arrays make
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
_RUN_JSON_FIELDS = ("strategy_config", "backtest_config", "symbols", "statistics", "details", "spec")
# ClosedTrade's own fields that are columns (exit_reason stored by value); pnl and return_pct are stored
# too, for queries. A trade's signal_id, order ids and fill ids are columns with foreign keys.
_TRADE_FIELDS = tuple(
    name for name in ClosedTrade._fields if name in table_of(BacktestTradeRecord).c and name != "exit_reason"
)


def _overview_values(run: RunOverview) -> dict[str, Any]:
    values = {name: getattr(run, name) for name in _OVERVIEW_FIELDS}
    # Statistics of a run without trades hold NaN, which PostgreSQL's JSON type refuses.
    return values | {name: to_plain(values[name], non_finite_as_null=True) for name in _RUN_JSON_FIELDS}


def save_run(
    session: Session,
    run: StoredRun,
    *,
    signals: Iterable[Signal] = (),
    orders: Iterable[ManagedOrder] = (),
    fills: Iterable[Fill] = (),
    rejections: Iterable[Rejection] = (),
) -> uuid.UUID:
    """Store `run` with its trades and equity curve, replacing whatever was stored under its id, and the
    run's `signals`, `orders` (with their events), `fills` and risk `rejections`; return the id.

    One savepoint, written in the order the foreign keys need: the run, its signals, orders and fills,
    then its trades (which name them) and rejections. A trade whose signal, order or fill is neither
    given nor stored fails the save (`IntegrityError`), and nothing of it stays.
    """
    # The order repositories build on this module's helpers, so they are imported here, not above.
    from models.order_records import save_fills, save_orders, save_rejections, save_signals
    from models.provenance_sources import log_rows

    table = table_of(BacktestRunRecord)
    values = _overview_values(run)
    upsert = _insert(session, table).values(values)
    upsert = upsert.on_conflict_do_update(
        index_elements=["id"], set_={name: upsert.excluded[name] for name in values if name != "id"}
    )
    with session.begin_nested():
        session.execute(upsert)
        log_rows(session, RunSpec.KIND, {"id": [run.id], "spec": [values["spec"]]})
        session.execute(delete(BacktestTradeRecord).where(BacktestTradeRecord.run_id == run.id))
        session.execute(delete(BacktestEquityRecord).where(BacktestEquityRecord.run_id == run.id))
        save_signals(session, signals, run.id)
        save_orders(session, orders, run.id)
        save_fills(session, fills, run.id)
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
            }
            execute_many(session, trades.insert(), trades, columns)
            log_rows(session, ClosedTrade.KIND, columns)
        save_rejections(session, rejections, run.id)
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
    from models.provenance_sources import trade_of

    table = table_of(BacktestTradeRecord)
    rows = session.execute(select(table).where(table.c.run_id == run_id).order_by(table.c.sequence)).mappings()
    trades = [trade_of(dict(row)) for row in rows]
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


def run_details(
    result: BacktestResult,
    *,
    limits: RiskLimits | None = None,
    sizing: SizingConfig | None = None,
    products: Mapping[str, Products] | None = None,
) -> dict[str, Any]:
    """What a stored run records besides its statistics: the strategy's own details (a model's hit rate, a
    cache's) and what it records of its `products` (by symbol), how many orders the risk manager refused,
    the risk limits and the sizing (the run's specification holds them too; here they are kept for the
    report) and what the strategy was supplied with (the memory read).

    A run over several symbols keeps each symbol's strategy details under ``by_symbol``.
    """
    frames = {
        symbol: {key: to_plain(value) for key, value in frame.details.items()}
        for symbol, frame in result.frames.items()
    }
    for symbol, made in (products or {}).items():
        frames[symbol].update({key: to_plain(value) for key, value in made.details.items()})
    details: dict[str, Any] = next(iter(frames.values())) if len(frames) == 1 else {"by_symbol": frames}
    details["rejections"] = len(result.rejections)
    if limits is not None:
        details["risk_limits_digest"] = limits.digest
        details["risk_limits"] = to_plain(limits)
    if sizing is not None:
        details["sizing"] = {"kind": SIZING_KINDS[type(sizing)], **to_plain(sizing)}
    details.update(result.strategy.supplies.record())
    return details


def stored_run(
    result: BacktestResult,
    spec: RunSpec,
    statistics: Mapping[str, Any],
    details: Mapping[str, Any],
    created_at: datetime,
) -> StoredRun:
    """The storable form of `result`, the run of `spec`: its specification, configuration, statistics,
    trades and equity."""
    times = result.market.datetimes
    return StoredRun(
        id=spec.run_id,
        strategy=result.strategy.name,
        strategy_id=result.strategy.strategy_id,
        config_digest=spec.config_digest,
        strategy_config=to_plain(result.strategy.config),
        backtest_config=to_plain(result.config),
        symbols=tuple(result.market.symbols),
        start=times[0],
        end=times[-1],
        bars=len(result.market),
        data_digest=spec.data_digest,
        statistics=dict(statistics),
        details=dict(details),
        created_at=created_at,
        engine_version=spec.engine_version,
        spec=spec.canonical_plain(),
        trades=result.trades,
        timestamps=np.asarray(result.market.timestamps, dtype=np.int64),
        equity=result.equity,
        drawdown_pct=result.drawdown_pct,
    )


def save_backtest(
    session: Session,
    result: BacktestResult,
    spec: RunSpec,
    details: Mapping[str, Any],
    *,
    created_at: datetime,
    model_versions: Sequence[ModelVersion] = (),
    retrievals: Sequence[Retrieval] = (),
) -> bool:
    """Store `result` (run with ``record_orders=True``) as the run of `spec` with its trades, equity, signals,
    orders and risk rejections, the `model_versions` it produced (those its signals link to) and the
    `retrievals` its decisions made of memory (stored, signed and logged); return whether it stored it.

    A run already stored under its id was computed from the same inputs by the same engine, so nothing is
    written then: storing the same backtest again changes no row, not even its time of creation.

    Raises
    ------
    ValidationError
        If `result` is not the run of `spec` (its signal ids would belong to another run).
    """
    run_id = spec.run_id
    if result.run_id != run_id:
        raise ValidationError(f"the backtest ran as run {result.run_id}, not as the run {run_id} of its spec")
    if find_run(session, run_id) is not None:
        return False
    save_run(
        session,
        stored_run(result, spec, result.statistics.to_dict(), details, created_at),
        signals=result.signals(),
        orders=managed_orders(result),
        fills=result.fills,
        rejections=result.rejections,
    )
    save_model_versions(session, model_versions, created_at=created_at)
    from models.provenance import save_provenance_records

    save_provenance_records(session, list(retrievals))
    return True


# -- model versions -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StoredModelVersion(ModelVersion):
    """A model version (`neuraltrade.strategies.needs.ModelVersion`) and when it was stored.

    Its `record_id` is what signals link to: every version a stored run's signals name is stored.
    """

    created_at: datetime

    def __post_init__(self) -> None:
        super().__post_init__()
        require_aware(f"model version {self.id} created_at", self.created_at)

    @classmethod
    def of(cls, version: ModelVersion, created_at: datetime) -> StoredModelVersion:
        """`version` as stored at `created_at`."""
        fields = {item.name: getattr(version, item.name) for item in dataclasses.fields(ModelVersion)}
        return cls(**fields, created_at=created_at)


_MODEL_FIELDS = tuple(field.name for field in dataclasses.fields(StoredModelVersion) if field.name != "parameters")


def save_model_versions(session: Session, versions: Sequence[ModelVersion], *, created_at: datetime) -> list[str]:
    """Store `versions` as of `created_at` (a `StoredModelVersion` keeps its own), replacing what was
    stored under their ids; return the ids.

    A version given without its model's bytes keeps the bytes stored under its id: describing a
    walk-forward refit never erases the model a night stored under the same id.
    """
    stored = [
        version if isinstance(version, StoredModelVersion) else StoredModelVersion.of(version, created_at)
        for version in versions
    ]
    if not stored:
        return []
    table = table_of(ModelVersionRecord)
    columns: dict[str, list[Any]] = {name: [getattr(version, name) for version in stored] for name in _MODEL_FIELDS}
    columns["parameters"] = [to_plain(version.parameters, non_finite_as_null=True) for version in stored]
    columns["record_id"] = [version.record_id for version in stored]
    statement = _insert(session, table)
    replaced = {name: statement.excluded[name] for name in columns if name != "id"}
    replaced["model"] = func.coalesce(statement.excluded.model, table.c.model)
    execute_many(session, statement.on_conflict_do_update(index_elements=["id"], set_=replaced), table, columns)
    return [version.id for version in stored]


def save_model_version(session: Session, version: StoredModelVersion) -> str:
    """Store `version`, replacing what was stored under its id (its bytes kept if `version` has none)."""
    return save_model_versions(session, [version], created_at=version.created_at)[0]


def _stored_model(row: ModelVersionRecord) -> StoredModelVersion:
    return StoredModelVersion(parameters=row.parameters, **{name: getattr(row, name) for name in _MODEL_FIELDS})


def latest_model_version(session: Session, strategy: str, symbol: str) -> StoredModelVersion | None:
    """Return the newest stored model of `strategy` on `symbol`, or None if it has none.

    Newest: last stored, and of the versions a run stored together, the one trained on the latest bars.
    """
    query = (
        select(ModelVersionRecord)
        .where(ModelVersionRecord.strategy == strategy, ModelVersionRecord.symbol == symbol)
        .order_by(ModelVersionRecord.created_at.desc(), ModelVersionRecord.trained_to.desc(), ModelVersionRecord.id)
        .limit(1)
    )
    row = session.scalars(query, execution_options=_FRESH).one_or_none()
    return None if row is None else _stored_model(row)


def find_model_versions(session: Session, record_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, StoredModelVersion]:
    """Return the stored model versions of `record_ids` (the ids signals link to), by record id; an id
    without a stored version is left out."""
    wanted = sorted(set(record_ids))
    found: dict[uuid.UUID, StoredModelVersion] = {}
    for first in range(0, len(wanted), 500):  # bounded IN lists
        query = select(ModelVersionRecord).where(ModelVersionRecord.record_id.in_(wanted[first : first + 500]))
        for row in session.scalars(query, execution_options=_FRESH):
            version = _stored_model(row)
            found[version.record_id] = version
    return found
