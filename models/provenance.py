"""The provenance log in the database: its origin, its entries, and the records only it stores.

`log_records` signs records and appends them to the log in the caller's transaction, after the rows
that hold them, so a crash leaves both or neither. A record is appended when its kind and id are not in
the log yet, when its content changed since its latest entry (an order that filled), or when its latest
entry was retracted; otherwise (a re-run writing what is already stored) nothing is appended, so a
re-run converges to the same log. `retract_records` logs the deliberate removal of records.

Appends are serialised: the log's single origin row is locked first (``SELECT ... FOR UPDATE`` on
PostgreSQL; on SQLite the writer's own lock already excludes every other writer), so positions are
contiguous and each entry chains to the one before it.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Index, Integer, LargeBinary, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, table_of
from models.bulk import execute_many
from models.dialects import insert_statement
from neuraltrade.errors import ValidationError
from neuraltrade.provenance.keys import SigningKey, load_signing_key
from neuraltrade.provenance.log import LogEntry, leaf_hash, signed_message
from neuraltrade.provenance.records import KeyIntroduction, Retraction
from neuraltrade.records import Record

#: Ids per IN (...) list: SQLite binds at most 32,766 variables.
_KEYS_PER_STATEMENT = 10_000


class LogOriginRecord(Base):
    """The log's one row: its origin (the name every signature is bound to)."""

    __tablename__ = "log_origin"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    origin: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class LogEntryRecord(Base):
    """Entry `position` of the log (`neuraltrade.provenance.log.LogEntry`); `leaf_hash` caches its leaf hash."""

    __tablename__ = "log_entries"
    __table_args__ = (Index(None, "kind", "record_id"),)

    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    schema_version: Mapped[int] = mapped_column(Integer)
    record_id: Mapped[uuid.UUID]
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary)
    logged_at: Mapped[datetime]


class ProvenanceRecord(Base):
    """A record that has no table of its own (retrieval, retraction, key introduction), whole, as canonical JSON."""

    __tablename__ = "provenance_records"
    __table_args__ = (Index(None, "kind"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    record: Mapped[str] = mapped_column(Text)


def stored_origin(session: Session, *, lock: bool = False) -> str | None:
    """The log's origin, None while there is no log (`lock`: ``FOR UPDATE``, where appends serialise)."""
    query = select(LogOriginRecord.origin).where(LogOriginRecord.id == 1)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def log_origin(session: Session, *, lock: bool = False) -> str:
    """The log's origin, made (``neuraltrade/<uuid4>``) when the log is new."""
    origin = stored_origin(session, lock=lock)
    if origin is not None:
        return origin
    origin = f"neuraltrade/{uuid.uuid4()}"
    session.add(LogOriginRecord(id=1, origin=origin, created_at=datetime.now(UTC)))
    session.flush()
    return origin


def key_introductions(session: Session) -> list[KeyIntroduction]:
    """Every key introduction the log holds."""
    query = select(ProvenanceRecord.record).where(ProvenanceRecord.kind == KeyIntroduction.KIND)
    return [KeyIntroduction.from_canonical(text) for text in session.scalars(query)]


def record_id_of(record: Record) -> uuid.UUID:
    """The id a record is logged under: its own `id`."""
    identifier = getattr(record, "id", None)
    if not isinstance(identifier, uuid.UUID):
        raise ValidationError(f"{record.KIND} record has no UUID id; log it as an (id, record) pair")
    return identifier


def log_records(
    session: Session,
    records: Iterable[Record | tuple[uuid.UUID, Record]],
    *,
    key: SigningKey | None = None,
    now: datetime | None = None,
    canonical: Sequence[bytes] | None = None,
) -> int:
    """Sign `records` (records, or (id, record) pairs for records stored under an id they do not hold)
    and append those new or changed to the log; return how many entries were appended. `canonical`, if
    given, holds each record's canonical bytes, in order (a writer that stored them has them already).

    Raises
    ------
    SigningKeyMissing, SigningKeyInvalid
        If no usable signing key is configured (`neuraltrade.provenance.keys.load_signing_key`).
    """
    pairs = [item if isinstance(item, tuple) else (record_id_of(item), item) for item in records]
    if not pairs:
        return 0
    forms = list(canonical) if canonical is not None else [record.canonical_bytes() for _, record in pairs]
    signer = key if key is not None else load_signing_key()
    origin = log_origin(session, lock=True)
    moment = now or datetime.now(UTC)
    pending = _introduction(session, signer, None, moment)
    by_kind: dict[str, list[tuple[uuid.UUID, Record, bytes]]] = {}
    for (identifier, record), form in zip(pairs, forms, strict=True):
        by_kind.setdefault(record.KIND, []).append((identifier, record, form))
    for kind, kind_pairs in by_kind.items():
        latest = _latest_digests(session, kind, {identifier for identifier, _, _ in kind_pairs})
        for identifier, record, form in kind_pairs:
            pending.append((identifier, record, form, latest.get(identifier)))
    return _append(session, signer, origin, pending, moment)


def retract_records(
    session: Session, kind: str, record_ids: Iterable[uuid.UUID], *, reason: str, now: datetime | None = None
) -> int:
    """Log the deliberate removal of the records `record_ids` of `kind` that are in the log; return how many."""
    moment = now or datetime.now(UTC)
    latest = _latest_entries(session, kind, set(record_ids))
    retractions = [
        Retraction.of(
            record_kind=kind,
            record_id=identifier,
            position=entry.position,
            digest=entry.digest.hex(),
            reason=reason,
            retracted_at=moment,
        )
        for identifier, entry in sorted(latest.items(), key=lambda item: item[1].position)
    ]
    save_provenance_records(session, retractions)
    return len(retractions)


def save_provenance_records(session: Session, records: Sequence[Record]) -> int:
    """Store and log records that only the provenance tables hold (retrievals, retractions, keys)."""
    if not records:
        return 0
    _store_new(session, records)
    return log_records(session, records)


def _store_new(session: Session, records: Sequence[Record]) -> list[Record]:
    """Insert the ones of `records` not stored yet into `provenance_records`; return them."""
    stored = _stored_provenance_ids(session, [record_id_of(record) for record in records])
    new = [record for record in dict((record_id_of(record), record) for record in records).values()]
    new = [record for record in new if record_id_of(record) not in stored]
    if new:
        table = table_of(ProvenanceRecord)
        columns: dict[str, list[Any]] = {
            "id": [record_id_of(record) for record in new],
            "kind": [record.KIND for record in new],
            "record": [record.to_json() for record in new],
        }
        execute_many(session, insert_statement(session, table).on_conflict_do_nothing(), table, columns)
    return new


def _stored_provenance_ids(session: Session, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for start in range(0, len(ids), _KEYS_PER_STATEMENT):
        chunk = ids[start : start + _KEYS_PER_STATEMENT]
        found.update(session.scalars(select(ProvenanceRecord.id).where(ProvenanceRecord.id.in_(chunk))))
    return found


#: A record to append: its id, the record, its canonical bytes, and its latest digest in the log (if any)
#: with whether that entry was retracted.
_Pending = tuple[uuid.UUID, Record, bytes, "tuple[bytes, bool] | None"]


def introduce_key(
    session: Session, key: SigningKey, *, previous: SigningKey | None = None, now: datetime | None = None
) -> bool:
    """Log that `key` signs this log from now on (signed by the `previous` key it replaces, else by itself);
    return whether it was new to the log."""
    origin = log_origin(session, lock=True)
    moment = now or datetime.now(UTC)
    pending = _introduction(session, key, previous, moment)
    return _append(session, previous or key, origin, pending, moment) > 0


def _introduction(
    session: Session, signer: SigningKey, previous: SigningKey | None, moment: datetime
) -> list[_Pending]:
    """The key introduction to log before `signer`'s first entry (a first key introduces itself)."""
    introduction = KeyIntroduction.of(
        key_id=signer.key_id,
        public_key=base64.b64encode(signer.public_bytes).decode("ascii"),
        previous_key_id=None if previous is None else previous.key_id,
        introduced_at=moment,
    )
    if not _store_new(session, [introduction]):
        return []
    return [(introduction.id, introduction, introduction.canonical_bytes(), None)]


def _latest_entries(session: Session, kind: str, ids: set[uuid.UUID]) -> dict[uuid.UUID, LogEntryRecord]:
    """The latest log entry of each of `ids` (of `kind`) that has one."""
    latest: dict[uuid.UUID, LogEntryRecord] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), _KEYS_PER_STATEMENT):
        chunk = ordered[start : start + _KEYS_PER_STATEMENT]
        query = (
            select(LogEntryRecord)
            .where(LogEntryRecord.kind == kind, LogEntryRecord.record_id.in_(chunk))
            .order_by(LogEntryRecord.position)
        )
        for entry in session.scalars(query):
            latest[entry.record_id] = entry
    return latest


def _latest_digests(session: Session, kind: str, ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[bytes, bool]]:
    """For each of `ids` in the log: its latest digest, and whether that entry was retracted since."""
    latest = _latest_entries(session, kind, ids)
    if not latest:
        return {}
    retraction_ids = {
        Retraction.id_for(kind, identifier, entry.position): identifier for identifier, entry in latest.items()
    }
    retracted = {retraction_ids[found] for found in _logged(session, Retraction.KIND, set(retraction_ids))}
    return {identifier: (entry.digest, identifier in retracted) for identifier, entry in latest.items()}


def _logged(session: Session, kind: str, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    return set(_latest_entries(session, kind, ids))


def _append(session: Session, signer: SigningKey, origin: str, pending: list[_Pending], moment: datetime) -> int:
    last = session.execute(
        select(LogEntryRecord.position, LogEntryRecord.leaf_hash).order_by(LogEntryRecord.position.desc()).limit(1)
    ).one_or_none()
    position, previous = (0, b"") if last is None else (last[0] + 1, bytes(last[1]))
    entries: list[LogEntry] = []
    leaves: list[bytes] = []
    seen: set[tuple[str, uuid.UUID]] = set()
    for identifier, record, form, latest in pending:
        if (record.KIND, identifier) in seen:
            continue
        message = signed_message(origin, record.KIND, record.SCHEMA_VERSION, form)
        digest = hashlib.sha256(message).digest()
        if latest is not None and latest[0] == digest and not latest[1]:
            continue  # already logged as it is: only what is new is signed
        entry = LogEntry(
            position=position,
            kind=record.KIND,
            schema_version=record.SCHEMA_VERSION,
            record_id=identifier,
            digest=digest,
            key_id=signer.key_id,
            signature=signer.sign(message),
        )
        seen.add((record.KIND, identifier))
        previous = leaf_hash(entry.leaf_data(previous))
        entries.append(entry)
        leaves.append(previous)
        position += 1
    if not entries:
        return 0
    table = table_of(LogEntryRecord)
    columns: dict[str, list[Any]] = {
        "position": [entry.position for entry in entries],
        "kind": [entry.kind for entry in entries],
        "schema_version": [entry.schema_version for entry in entries],
        "record_id": [entry.record_id for entry in entries],
        "digest": [entry.digest for entry in entries],
        "key_id": [entry.key_id for entry in entries],
        "signature": [entry.signature for entry in entries],
        "leaf_hash": leaves,
        "logged_at": [moment] * len(entries),
    }
    execute_many(session, table.insert(), table, columns)
    return len(entries)
