"""Where each kind of signed record is stored, and how its record is rebuilt from a stored row.

The same rebuild serves both sides: a writer signs the record rebuilt from the values it is about to
store (or the record itself, where the row holds it whole as canonical JSON), and `neuraltrade verify`
rebuilds the record from the row it reads. What is signed is therefore exactly what is stored: a column
changed after the fact changes the rebuilt record, and its digest no longer matches the log.

Tables that hold a record whole (`record`, canonical JSON) also copy some of its fields into columns that
queries filter on; `column_problem` finds a copy that no longer matches its record, since a query reading a
tampered copy would read something no signature covers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from models.base import table_of
from models.learning import (
    CounterfactualRecord,
    CritiqueRecord,
    DistillationRecord,
    EpisodeRecord,
    PatternRecord,
    TrialRecord,
    VerdictRecord,
)
from models.provenance import ProvenanceRecord, log_records
from models.tables import ObservationRecord
from models.trading import (
    BacktestRunRecord,
    BacktestTradeRecord,
    FillRecord,
    OrderRecord,
    RiskRejectionRecord,
    SignalRecord,
)
from neuraltrade.backtest.run_spec import RunSpec
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.canonical import canonical_json, to_plain
from neuraltrade.learning.counterfactual import Counterfactual
from neuraltrade.learning.episodes import Episode
from neuraltrade.learning.judge import Verdict
from neuraltrade.learning.patterns import Distillation, Pattern
from neuraltrade.learning.reflexion import Critique
from neuraltrade.provenance.records import KeyIntroduction, Retraction, Retrieval
from neuraltrade.records import CausalLink, Record
from neuraltrade.research.trials import Trial
from neuraltrade.timestamps import from_microseconds
from neuraltrade.trading.risk import RiskRejection
from neuraltrade.types import (
    Direction,
    Fill,
    Observation,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Signal,
    TimeInForce,
)

#: Rows read per query while every stored record is rebuilt.
_ROWS_PER_READ = 20_000


def _moment(value: datetime | int) -> datetime:
    """A stored moment: an aware datetime as read, or epoch microseconds as a writer holds it."""
    return from_microseconds(value) if isinstance(value, int) else value.astimezone(UTC)


def observation_of(row: Mapping[str, Any]) -> Observation:
    return Observation(
        id=row["id"],
        timestamp=_moment(row["timestamp"]),
        symbol=row["symbol"],
        price=row["price"],
        volume=row["volume"],
        spread=row["spread"],
        metadata=dict(row["metadata"] or {}),
    )


def signal_of(row: Mapping[str, Any]) -> Signal:
    return Signal(
        id=row["id"],
        strategy_id=row["strategy_id"],
        timestamp=_moment(row["timestamp"]),
        symbol=row["symbol"],
        direction=Direction(row["direction"]),
        confidence=row["confidence"],
        features=dict(row["features"] or {}),
        reasoning=row["reasoning"],
        causal_links=tuple(CausalLink.from_plain(link) for link in row["causal_links"] or ()),
    )


def order_of(row: Mapping[str, Any]) -> Order:
    return Order(
        id=row["id"],
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=OrderSide(row["side"]),
        type=OrderType(row["type"]),
        quantity=row["quantity"],
        limit_price=row["limit_price"],
        stop_price=row["stop_price"],
        time_in_force=TimeInForce(row["time_in_force"]),
        status=OrderStatus(row["status"]),
    )


_FILL_FIELDS = ("id", "order_id", "sequence", "symbol", "quantity", "price", "commission")


def fill_of(row: Mapping[str, Any]) -> Fill:
    return Fill(
        **{name: row[name] for name in _FILL_FIELDS}, timestamp=_moment(row["timestamp"]), side=OrderSide(row["side"])
    )


_TRADE_MOMENTS = ("entry_time", "exit_time")


def trade_of(row: Mapping[str, Any]) -> ClosedTrade:
    fields = {name: row[name] for name in ClosedTrade._fields if name in row and name != "exit_reason"}
    fields.update({name: _moment(row[name]) for name in _TRADE_MOMENTS if name in fields})
    return ClosedTrade(exit_reason=ExitReason(row["exit_reason"]), **fields)


def run_of(row: Mapping[str, Any]) -> RunSpec | None:
    spec = row["spec"]
    return None if spec is None else RunSpec.from_canonical(canonical_json(dict(spec)))


def rejection_of(row: Mapping[str, Any]) -> RiskRejection:
    details = {name: value for name, value in (row["details"] or {}).items() if value is not None}
    return RiskRejection(
        rule=row["rule"],
        reason=row["reason"],
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        timestamp=_moment(row["timestamp"]),
        details=details,
        signal_id=row["signal_id"],
    )


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where records of `kind` are stored: the table, how a row becomes the record, the row's run."""

    kind: str
    table: Table
    rebuild: Callable[[Mapping[str, Any]], Record | None]
    run_column: str | None = None
    #: For tables holding the record whole: the record's class (its columns copy its fields).
    record_class: type[Record] | None = None


def _whole(kind: type[Record]) -> Callable[[Mapping[str, Any]], Record]:
    def rebuild(row: Mapping[str, Any]) -> Record:
        return kind.from_canonical(row["record"])

    return rebuild


_WHOLE: tuple[tuple[type[Record], Any, str | None], ...] = (
    (Episode, EpisodeRecord, "run_id"),
    (Verdict, VerdictRecord, None),
    (Critique, CritiqueRecord, None),
    (Distillation, DistillationRecord, None),
    (Pattern, PatternRecord, None),
    (Counterfactual, CounterfactualRecord, "run_id"),
    (Trial, TrialRecord, None),
)

SOURCES: dict[str, Source] = {
    source.kind: source
    for source in (
        Source(kind=Observation.KIND, table=table_of(ObservationRecord), rebuild=observation_of),
        Source(kind=Signal.KIND, table=table_of(SignalRecord), rebuild=signal_of, run_column="run_id"),
        Source(kind=Order.KIND, table=table_of(OrderRecord), rebuild=order_of, run_column="run_id"),
        Source(kind=Fill.KIND, table=table_of(FillRecord), rebuild=fill_of, run_column="run_id"),
        Source(kind=ClosedTrade.KIND, table=table_of(BacktestTradeRecord), rebuild=trade_of, run_column="run_id"),
        Source(kind=RunSpec.KIND, table=table_of(BacktestRunRecord), rebuild=run_of, run_column="id"),
        Source(kind=RiskRejection.KIND, table=table_of(RiskRejectionRecord), rebuild=rejection_of, run_column="run_id"),
        *(
            Source(kind=kind.KIND, table=table_of(model), rebuild=_whole(kind), run_column=run, record_class=kind)
            for kind, model, run in _WHOLE
        ),
        *(
            Source(kind=kind.KIND, table=table_of(ProvenanceRecord), rebuild=_whole(kind), record_class=kind)
            for kind in (Retrieval, Retraction, KeyIntroduction)
        ),
    )
}


def source_kinds() -> list[str]:
    """The kinds of every record source, in `SOURCES` order (a function: Dask ships a task by value with
    the globals it names, and `SOURCES` holds classes' methods that cannot be pickled)."""
    return list(SOURCES)


def rows_of(columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Column-wise values (as writers hold them) as one mapping per row."""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*(columns[name] for name in names), strict=True)]


def records_of(kind: str, rows: Sequence[Mapping[str, Any]]) -> list[tuple[uuid.UUID, Record]]:
    """The (stored id, record) of each row of `kind` about to be stored, as `log_records` takes them."""
    rebuild = SOURCES[kind].rebuild
    pairs = []
    for row in rows:
        record = rebuild(row)
        if record is not None:
            pairs.append((row["id"], record))
    return pairs


def stored_rows(session: Session, kind: str, *, run_id: uuid.UUID | None = None) -> Iterator[Mapping[str, Any]]:
    """Every stored row of `kind` (of run `run_id` if given), in id order, a bounded number at a time."""
    source = SOURCES[kind]
    table = source.table
    query = select(table).order_by(table.c.id)
    if source.table is table_of(ProvenanceRecord):
        query = query.where(table.c.kind == kind)
    if run_id is not None:
        if source.run_column is None:
            return
        query = query.where(table.c[source.run_column] == run_id)
    last: Any = None
    while True:
        page = query if last is None else query.where(table.c.id > last)
        rows = session.execute(page.limit(_ROWS_PER_READ)).mappings().all()
        yield from (dict(row) for row in rows)
        if len(rows) < _ROWS_PER_READ:
            return
        last = rows[-1]["id"]


def column_problem(row: Mapping[str, Any], plain: Mapping[str, Any]) -> str | None:
    """Which column of a row holding a record whole (`plain`: its canonical form, parsed) no longer copies
    the record's field of the same name, or None."""
    for name, value in row.items():
        if name in ("record", "kind") or name not in plain:
            continue
        wanted = plain[name]
        if to_plain(value, non_finite_as_null=True) != wanted:
            return f"its column {name} holds {value!r}, its signed record {wanted!r}"
    return None


def log_rows(session: Session, kind: str, columns: Mapping[str, Sequence[Any]]) -> int:
    """Sign and log the records of `kind` that the column-wise values `columns` store (`log_records`)."""
    return log_records(session, records_of(kind, rows_of(columns)))
