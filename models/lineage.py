"""The lineage of a stored backtest run, walked link by link: what a trade, fill, order or signal names
and cannot be found.

A run's chain, from its end back to the market: closed trade -> its signal, its entry and exit orders and
fills; fill -> its order; order -> its signal; risk rejection -> its signal; signal -> its causes (typed
causal links): the observation of its bar, the memory items it recalled, the model version that predicted
it, or another signal, order or fill. Observations are found as stored observations or as market-state
memory items (keyed by the observation id); a recalled item by its key, its observation, or the id
``stable_id("memory_item", key)`` a strategy links an item without observation by; a model version by its
`record_id`.

Foreign keys already refuse a stored link to a missing row; this walk also finds what they cannot: a link
left empty, a record of another run, a fill of another order, a causal link (JSON) to nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.learning import EpisodeRecord, PatternRecord
from models.tables import MemoryItemRecord, ObservationRecord
from models.trading import (
    BacktestRunRecord,
    BacktestTradeRecord,
    FillRecord,
    ModelVersionRecord,
    OrderRecord,
    RiskRejectionRecord,
    SignalRecord,
)
from neuraltrade.canonical import stable_id
from neuraltrade.errors import UnknownRun
from neuraltrade.records import CausalLink, CauseKind

#: Keys per IN (...) list: SQLite binds at most 32,766 variables.
_KEYS_PER_STATEMENT = 10_000
_TRADE_LINKS = ("entry_order_id", "exit_order_id", "entry_fill_id", "exit_fill_id")


def broken_links(session: Session, run_id: uuid.UUID) -> list[str]:
    """Return every link of stored run `run_id` that does not resolve, one sentence each; empty when every
    trade, fill, order, rejection and signal of the run leads back to what caused it.

    Raises
    ------
    UnknownRun
        If no run is stored under `run_id`.
    """
    if session.get(BacktestRunRecord, run_id) is None:
        raise UnknownRun(str(run_id))
    broken: list[str] = []
    signals = {row.id: row for row in session.scalars(select(SignalRecord).where(SignalRecord.run_id == run_id))}
    orders = {row.id: row for row in session.scalars(select(OrderRecord).where(OrderRecord.run_id == run_id))}
    fills = {row.id: row for row in session.scalars(select(FillRecord).where(FillRecord.run_id == run_id))}
    trades = session.scalars(
        select(BacktestTradeRecord).where(BacktestTradeRecord.run_id == run_id).order_by(BacktestTradeRecord.sequence)
    ).all()

    for trade in trades:
        name = f"trade {trade.sequence}"
        _expect(broken, name, "signal", trade.signal_id, signals)
        for column in _TRADE_LINKS:
            target = orders if column.endswith("order_id") else fills
            _expect(broken, name, column.removesuffix("_id").replace("_", " "), getattr(trade, column), target)
        for side in ("entry", "exit"):
            fill = fills.get(getattr(trade, f"{side}_fill_id"))
            order_id = getattr(trade, f"{side}_order_id")
            if fill is not None and order_id is not None and fill.order_id != order_id:
                broken.append(f"{name}: its {side} fill {fill.id} fills order {fill.order_id}, not its {side} order")
    for fill in fills.values():
        _expect(broken, f"fill {fill.id}", "order", fill.order_id, orders)
    for order in orders.values():
        _expect(broken, f"order {order.client_order_id}", "signal", order.signal_id, signals)
    for rejection in session.scalars(select(RiskRejectionRecord).where(RiskRejectionRecord.run_id == run_id)):
        _expect(broken, f"rejection of order {rejection.client_order_id}", "signal", rejection.signal_id, signals)
    broken.extend(_broken_causes(session, signals.values()))
    return broken


def _expect(broken: list[str], name: str, what: str, target: uuid.UUID | None, found: Any) -> None:
    """Note in `broken` that `name` names no `what`, or one not among the run's own records `found`."""
    if target is None:
        broken.append(f"{name} names no {what}")
    elif target not in found:
        broken.append(f"{name}: its {what} {target} is not stored in this run")


def _broken_causes(session: Session, signals: Iterable[SignalRecord]) -> list[str]:
    """The causal links of `signals` that lead to nothing stored."""
    links = [(signal, CausalLink.from_plain(plain)) for signal in signals for plain in signal.causal_links or ()]
    if not links:
        return []
    wanted: dict[CauseKind, set[uuid.UUID]] = {}
    for _, link in links:
        wanted.setdefault(link.cause_kind, set()).add(link.cause_id)
    remembered = set(wanted.get(CauseKind.OBSERVATION, ())) | set(wanted.get(CauseKind.MEMORY_ITEM, ()))
    items = _memory_items(session, remembered)
    found = {
        CauseKind.OBSERVATION: _existing(session, ObservationRecord.id, wanted.get(CauseKind.OBSERVATION, ())) | items,
        CauseKind.MEMORY_ITEM: items,
        CauseKind.PATTERN: _existing(session, PatternRecord.id, wanted.get(CauseKind.PATTERN, ())),
        CauseKind.EPISODE: _existing(session, EpisodeRecord.id, wanted.get(CauseKind.EPISODE, ())),
        CauseKind.MODEL_VERSION: _existing(
            session, ModelVersionRecord.record_id, wanted.get(CauseKind.MODEL_VERSION, ())
        ),
        CauseKind.SIGNAL: _existing(session, SignalRecord.id, wanted.get(CauseKind.SIGNAL, ())),
        CauseKind.ORDER: _existing(session, OrderRecord.id, wanted.get(CauseKind.ORDER, ())),
        CauseKind.FILL: _existing(session, FillRecord.id, wanted.get(CauseKind.FILL, ())),
    }
    return [
        f"signal {signal.id}: its {link.cause_kind.value} {link.cause_id} ({link.relation.value}) is not stored"
        for signal, link in links
        if link.cause_id not in found[link.cause_kind]
    ]


def _existing(session: Session, column: InstrumentedAttribute[Any], ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The ones of `ids` stored in `column`."""
    present: set[uuid.UUID] = set()
    for chunk in _chunks(sorted(ids)):
        present.update(session.scalars(select(column).where(column.in_(chunk))))
    return present


def _memory_items(session: Session, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """The ones of `ids` that name a stored memory item: by its key, its observation, or the UUID derived
    from its key (`stable_id("memory_item", key)`, for an item keyed by anything but a UUID)."""
    if not ids:
        return set()
    present = _existing(session, MemoryItemRecord.observation_id, ids)
    for chunk in _chunks(sorted(str(cause) for cause in ids - present)):
        present.update(
            uuid.UUID(key)
            for key in session.scalars(select(MemoryItemRecord.key).where(MemoryItemRecord.key.in_(chunk)))
        )
    missing = ids - present
    if missing:
        # Items keyed by anything but a UUID are linked by a UUID derived from the key: derive it for the
        # keys of the items that have no observation, the only ones a strategy links so.
        keys = session.scalars(select(MemoryItemRecord.key).where(MemoryItemRecord.observation_id.is_(None)))
        present.update(cause for cause in (stable_id("memory_item", key) for key in keys) if cause in missing)
    return present


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _KEYS_PER_STATEMENT):
        yield values[start : start + _KEYS_PER_STATEMENT]
