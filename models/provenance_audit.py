"""`verify`: the database checked against the published keys and the checkpoints, trusting neither it nor
its operator.

In order: the checkpoints (signed by a published key, no two of one size with different roots); the log,
entry by entry (positions contiguous, each leaf the hash of its entry chained to the one before, a
published key, no record logged twice as it is); the tree (its root at each checkpoint's size is that
checkpoint's root: every entry up to the trusted checkpoint is included, and every earlier checkpoint is a
prefix); every stored record (rebuilt from its row, `models.provenance_sources`, its digest the one its
latest entry holds, its signature valid; columns that copy a whole record's fields still do); every logged
record still stored unless retracted; every link (a signal's causes, a fill's order, an episode's trade
and observation, a pattern's episodes, ...) to a stored, logged record; each pattern's counts from the
verdicts of its episodes; and each retrieval's items known by the decision.

With a run id the same checks run; the report keeps the findings about that run's records and about the
log itself.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import table_of
from models.provenance import LogEntryRecord, ProvenanceRecord, stored_origin
from models.provenance_sources import SOURCES, Source, column_problem, stored_rows
from models.trading import ModelVersionRecord
from neuraltrade.backtest.identity import signal_id_for
from neuraltrade.canonical import parse_json, stable_id
from neuraltrade.errors import NeuralTradeError
from neuraltrade.learning.judge import Verdict
from neuraltrade.learning.patterns import Distillation, Pattern
from neuraltrade.provenance.audit import (
    Finding,
    Report,
    checkpoint_findings,
    failed_signatures,
    pattern_findings,
    retrieval_findings,
)
from neuraltrade.provenance.checkpoint import SignedCheckpoint
from neuraltrade.provenance.keys import KeyList, PublicKey
from neuraltrade.provenance.log import LeafTree, LogEntry, leaf_hash, signed_message
from neuraltrade.provenance.records import Retraction, Retrieval
from neuraltrade.records import CauseKind
from neuraltrade.timestamps import to_microseconds

_ENTRY_PAGE = 50_000
#: Signatures per batch handed to the verifying processes, and how many processes: the other cores.
_SIGNATURE_BATCH = 5_000
_SIGNATURE_PROCESSES = max(1, (os.cpu_count() or 2) - 1)
#: Kinds held whole whose record a later check reads (the others are checked as the bytes they are).
_REBUILT = frozenset({"episode", "verdict", "pattern", "distillation", "retrieval"})
#: Kinds whose rows hold columns the record does not (its run; an order's signal), checked by `check_context`.
_CONTEXT_KINDS = ("signal", "order", "fill", "closed_trade")
#: What kind of record each kind of cause is logged as (a recalled memory item is its observation).
_CAUSE_KINDS = {
    CauseKind.OBSERVATION: "observation",
    CauseKind.MEMORY_ITEM: "observation",
    CauseKind.SIGNAL: "signal",
    CauseKind.ORDER: "order",
    CauseKind.FILL: "fill",
    CauseKind.PATTERN: "pattern",
    CauseKind.EPISODE: "episode",
}


@dataclass
class _Latest:
    position: int
    digest: bytes
    key_id: str
    signature: bytes


class _Audit:
    def __init__(self, session: Session, keys: KeyList, run_id: uuid.UUID | None) -> None:
        self.session = session
        self.keys = keys
        self.run_id = run_id
        self.findings: list[Finding] = []
        self.latest: dict[tuple[str, uuid.UUID], _Latest] = {}
        self.retracted: set[int] = set()
        self.stored: set[tuple[str, uuid.UUID]] = set()
        self.references: list[tuple[str, uuid.UUID, str, uuid.UUID, str]] = []
        self.in_scope: set[uuid.UUID] = set()
        self.signatures = 0
        self.records = 0
        self.episodes_known: dict[uuid.UUID, datetime] = {}
        self.verdicts: dict[uuid.UUID, list[Verdict]] = {}
        self.patterns: list[Pattern] = []
        self.distillations: dict[uuid.UUID, Distillation] = {}
        self.retrievals: list[Retrieval] = []
        self.observations: dict[uuid.UUID, tuple[str, int]] = {}
        self.context: dict[str, dict[uuid.UUID, Mapping[str, Any]]] = {kind: {} for kind in _CONTEXT_KINDS}
        self.pending: list[tuple[str, uuid.UUID, int, PublicKey, bytes, bytes]] = []
        self.futures: list[Future[list[tuple[str, uuid.UUID, int, str]]]] = []
        #: Started with the first full batch: a small database is verified faster here than a spawned
        #: process can start (a nightly of 120 bars waited about 9 s for one).
        self.pool: ProcessPoolExecutor | None = None

    def fail(self, kind: str, record_id: object, check: str, detail: str) -> None:
        self.findings.append(Finding(kind=kind, record_id=str(record_id), check=check, detail=detail))

    # -- the log ---------------------------------------------------------------------------------------

    def read_log(self) -> list[bytes]:
        for text in self.session.scalars(
            select(ProvenanceRecord.record).where(ProvenanceRecord.kind == Retraction.KIND)
        ):
            self.retracted.add(Retraction.from_canonical(text).position)
        table = table_of(LogEntryRecord)
        leaves: list[bytes] = []
        previous = b""
        expected = 0
        while True:
            rows = self.session.execute(
                select(table).where(table.c.position >= expected).order_by(table.c.position).limit(_ENTRY_PAGE)
            ).all()
            for row in rows:
                entry = LogEntry(
                    position=row.position,
                    kind=row.kind,
                    schema_version=row.schema_version,
                    record_id=row.record_id,
                    digest=bytes(row.digest),
                    key_id=row.key_id,
                    signature=bytes(row.signature),
                )
                if entry.position != expected:
                    self.fail(
                        entry.kind,
                        entry.record_id,
                        "log",
                        f"is at position {entry.position}; entry {expected} is missing",
                    )
                    expected = entry.position
                computed = leaf_hash(entry.leaf_data(previous))
                if computed != bytes(row.leaf_hash):
                    self.fail(
                        entry.kind,
                        entry.record_id,
                        "log",
                        f"entry {entry.position} is not the leaf the log holds there (moved, altered, or an inner "
                        "node posing as a leaf)",
                    )
                if self.keys.get(entry.key_id) is None:
                    self.fail(
                        entry.kind,
                        entry.record_id,
                        "key",
                        f"entry {entry.position} is signed by key {entry.key_id}, which is not in the public key list",
                    )
                key = (entry.kind, entry.record_id)
                earlier = self.latest.get(key)
                if earlier is not None and earlier.digest == entry.digest and earlier.position not in self.retracted:
                    self.fail(
                        entry.kind,
                        entry.record_id,
                        "log",
                        f"is logged twice as it is, at entries {earlier.position} and {entry.position}",
                    )
                self.latest[key] = _Latest(entry.position, entry.digest, entry.key_id, entry.signature)
                leaves.append(computed)
                previous = computed
                expected += 1
            if len(rows) < _ENTRY_PAGE:
                return leaves

    def check_tree(self, leaves: list[bytes], checkpoints: Sequence[SignedCheckpoint]) -> None:
        tree = LeafTree(leaves)
        anchored = 0
        for signed in checkpoints:
            checkpoint = signed.checkpoint
            name = signed.source or signed.file_name
            if checkpoint.tree_size > len(leaves):
                self.fail(
                    "checkpoint",
                    name,
                    "truncated",
                    f"was signed at {checkpoint.tree_size} entries; the log has "
                    f"{len(leaves)}: entries {len(leaves)} to {checkpoint.tree_size - 1} are gone",
                )
                continue
            if tree.root(checkpoint.tree_size).hex() != checkpoint.root_hash:
                self.fail(
                    "checkpoint",
                    name,
                    "consistency",
                    f"the first {checkpoint.tree_size} entries of the log do not "
                    f"hash to its root: an entry after position {anchored - 1} was changed, moved or removed",
                )
                continue
            anchored = checkpoint.tree_size

    # -- stored records ----------------------------------------------------------------------------------

    def check_records(self, origin: str) -> None:
        # Signatures are checked in other processes (Ed25519 is most of a verify's work; threads would
        # queue on the GIL behind this one), batch by batch, while this process rebuilds the records. Fewer
        # than a batch are checked here at the end.
        try:
            for kind, source in SOURCES.items():
                for row in stored_rows(self.session, kind):
                    self._check_row(origin, kind, source, row)
            if self.pool is None:
                failed = failed_signatures(self.pending)
            else:
                failed = []
                self._flush_signatures()
            for future in self.futures:
                failed.extend(future.result())
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
        for kind, identifier, position, key_id in failed:
            self.fail(
                kind,
                identifier,
                "signature",
                f"entry {position}'s signature does not verify under key {key_id} "
                "(replayed from another record, or forged)",
            )
        for (kind, identifier), latest in self.latest.items():
            if kind in SOURCES and (kind, identifier) not in self.stored and latest.position not in self.retracted:
                self.fail(
                    kind,
                    identifier,
                    "deleted",
                    f"is in the log (entry {latest.position}) but not in the database, and no retraction says why",
                )

    def _check_row(self, origin: str, kind: str, source: Source, row: Mapping[str, Any]) -> None:
        """Check one stored row: its record is logged, as signed, and its columns still copy it."""
        identifier = row["id"]
        record: Any = None
        try:
            if source.record_class is not None:
                # The row holds the very bytes that were signed: check them as they are, and rebuild the
                # record only where a later check reads its fields.
                canonical = str(row["record"]).encode("utf-8")
                version = source.record_class.SCHEMA_VERSION
                plain = parse_json(canonical)
                if kind in _REBUILT:
                    record = source.record_class.from_canonical(canonical)
                problem = column_problem(row, plain)
                if problem is not None:
                    self.fail(kind, identifier, "columns", problem)
            else:
                record = source.rebuild(row)
                if record is None:
                    return
                canonical, version, plain = record.canonical_bytes(), record.SCHEMA_VERSION, None
        except (NeuralTradeError, KeyError, TypeError, ValueError) as error:
            self.fail(kind, identifier, "record", f"its row no longer makes a {kind} record: {error}")
            return
        self.records += 1
        self.stored.add((kind, identifier))
        self._scope(kind, identifier, row, source.run_column)
        self._check_signed(kind, identifier, signed_message(origin, kind, version, canonical))
        self._note(kind, identifier, record if record is not None else plain, row)

    def _flush_signatures(self) -> None:
        if not self.pending:
            return
        if self.pool is None:
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(max_workers=_SIGNATURE_PROCESSES, mp_context=context)
        self.futures.append(self.pool.submit(failed_signatures, self.pending))
        self.pending = []

    def _scope(self, kind: str, identifier: uuid.UUID, row: Mapping[str, Any], run_column: str | None) -> None:
        if self.run_id is not None and run_column is not None and row.get(run_column) == self.run_id:
            self.in_scope.add(identifier)

    def _check_signed(self, kind: str, identifier: uuid.UUID, message: bytes) -> None:
        latest = self.latest.get((kind, identifier))
        if latest is None:
            self.fail(
                kind,
                identifier,
                "unlogged",
                "is stored but not in the log (inserted behind the log's back, "
                "or stored before provenance: `neuraltrade init` adopts those)",
            )
            return
        if latest.position in self.retracted:
            self.fail(kind, identifier, "retracted", f"is stored, but its entry {latest.position} was retracted")
            return
        if hashlib.sha256(message).digest() != latest.digest:
            self.fail(
                kind, identifier, "content", f"differs from what entry {latest.position} signed (a field changed)"
            )
            return
        key = self.keys.get(latest.key_id)
        self.signatures += 1
        if key is not None:
            self.pending.append((kind, identifier, latest.position, key, latest.signature, message))
            if len(self.pending) >= _SIGNATURE_BATCH:
                self._flush_signatures()

    def _note(self, kind: str, identifier: uuid.UUID, record: Any, row: Mapping[str, Any]) -> None:
        """Keep what the later checks need of `record` (stored as `row`): its references and the fields
        they read. An order's signal is a column of its row, not a field of the order."""
        refer = self.references.append
        if kind in _CONTEXT_KINDS:
            self.context[kind][identifier] = row
        if kind in ("order", "risk_rejection") and row.get("signal_id") is not None:
            refer((kind, identifier, "signal", row["signal_id"], "signal_id"))
        if kind == "signal":
            for link in record.causal_links:
                if link.cause_kind in _CAUSE_KINDS:
                    refer((kind, identifier, _CAUSE_KINDS[link.cause_kind], link.cause_id, link.relation.value))
                elif link.cause_kind is CauseKind.MODEL_VERSION:
                    refer((kind, identifier, "model_version", link.cause_id, link.relation.value))
        elif kind == "fill":
            refer((kind, identifier, "order", record.order_id, "fills"))
        elif kind == "closed_trade":
            for name, target in (
                ("signal_id", "signal"),
                ("entry_order_id", "order"),
                ("exit_order_id", "order"),
                ("entry_fill_id", "fill"),
                ("exit_fill_id", "fill"),
            ):
                if getattr(record, name) is not None:
                    refer((kind, identifier, target, getattr(record, name), name))
        elif kind == "episode":
            self.episodes_known[identifier] = record.outcome_known_at
            refer((kind, identifier, "observation", record.entry_observation_id, "entry_observation_id"))
            for name, target in (("signal_id", "signal"), ("entry_fill_id", "fill"), ("exit_fill_id", "fill")):
                if getattr(record, name) is not None and record.run_id is not None:
                    refer((kind, identifier, target, getattr(record, name), name))
        elif kind == "verdict":
            refer((kind, identifier, "episode", record.episode_id, "episode_id"))
            self.verdicts.setdefault(record.episode_id, []).append(record)
        elif kind == "critique":  # plain: the critique is not rebuilt
            refer((kind, identifier, "episode", uuid.UUID(record["episode_id"]), "episode_id"))
        elif kind == "pattern":
            self.patterns.append(record)
            refer((kind, identifier, "distillation", record.distillation_id, "distillation_id"))
        elif kind == "distillation":
            self.distillations[identifier] = record
        elif kind == "retrieval":
            self.retrievals.append(record)
        elif kind == "observation":
            self.observations[identifier] = (record.symbol, to_microseconds(record.timestamp))

    # -- links, patterns, retrievals ---------------------------------------------------------------------

    def check_links(self) -> int:
        model_versions = set(self.session.scalars(select(ModelVersionRecord.record_id)))
        logged = {key for key, latest in self.latest.items()}
        for kind, identifier, target, cause, relation in self.references:
            if target == "model_version":
                if cause not in model_versions:
                    self.fail(kind, identifier, "link", f"its model version {cause} ({relation}) is not stored")
            elif (target, cause) not in logged:
                self.fail(kind, identifier, "link", f"its {target} {cause} ({relation}) is not a logged record")
            elif (target, cause) not in self.stored and self.latest[(target, cause)].position not in self.retracted:
                self.fail(kind, identifier, "link", f"its {target} {cause} ({relation}) is not stored")
        return len(self.references)

    def check_context(self) -> None:
        """The columns a record is stored with but does not hold (its run; an order's signal) against what
        the signed records and the ids derived from them say: a record moved to another run, or an order
        re-pointed at another decision, is named."""
        signals, orders = self.context["signal"], self.context["order"]
        for identifier, row in signals.items():
            run = row["run_id"]
            if (
                run is not None
                and signal_id_for(run, row["strategy_id"], row["symbol"], row["timestamp"]) != identifier
            ):
                self.fail("signal", identifier, "context", f"its run column names run {run}, whose signal it is not")
        for identifier, row in self.context["closed_trade"].items():
            if stable_id("backtest_trade", row["run_id"], row["sequence"]) != identifier:
                self.fail(
                    "closed_trade",
                    identifier,
                    "context",
                    f"its run column names run {row['run_id']}, whose trade {row['sequence']} it is not",
                )
            entry = orders.get(row["entry_order_id"])
            if entry is not None and row["signal_id"] is not None and entry["signal_id"] != row["signal_id"]:
                self.fail(
                    "order",
                    row["entry_order_id"],
                    "context",
                    f"names signal {entry['signal_id']}, but the "
                    f"trade it opened was decided by signal {row['signal_id']}",
                )
        for identifier, row in orders.items():
            signal = signals.get(row["signal_id"]) if row["signal_id"] is not None else None
            if signal is not None and signal["run_id"] != row["run_id"]:
                self.fail(
                    "order",
                    identifier,
                    "context",
                    f"is stored in run {row['run_id']}, its signal in run {signal['run_id']}",
                )
        for identifier, row in self.context["fill"].items():
            order = orders.get(row["order_id"])
            if order is not None and order["run_id"] != row["run_id"]:
                self.fail(
                    "fill",
                    identifier,
                    "context",
                    f"is stored in run {row['run_id']}, its order in run {order['run_id']}",
                )

    def check_patterns(self) -> None:
        self.findings.extend(pattern_findings(self.patterns, self.distillations, self.verdicts, self.episodes_known))

    def check_retrievals(self) -> None:
        self.findings.extend(
            retrieval_findings(
                self.retrievals, self.episodes_known, self.patterns, self.distillations, self.observations
            )
        )


def verify_database(
    session: Session,
    keys: KeyList,
    checkpoints: Sequence[SignedCheckpoint],
    *,
    trusted: SignedCheckpoint | None = None,
    run_id: uuid.UUID | None = None,
) -> Report:
    """Verify the database of `session` against `keys` and `checkpoints` (see the module docstring)."""
    started = time.perf_counter()
    origin = stored_origin(session)
    audit = _Audit(session, keys, run_id)
    every = list(checkpoints) + ([trusted] if trusted is not None and trusted not in checkpoints else [])
    every.sort(key=lambda signed: signed.checkpoint.tree_size)
    audit.findings.extend(checkpoint_findings(keys, every))
    if origin is not None and origin != keys.origin:
        audit.fail("log", origin, "origin", f"the public key list is of log {keys.origin!r}")
    leaves = audit.read_log()
    audit.check_tree(leaves, [signed for signed in every if signed.problem(keys) is None])
    audit.check_records(origin or keys.origin)
    links = audit.check_links()
    audit.check_context()
    audit.check_patterns()
    audit.check_retrievals()
    anchor = trusted or (every[-1] if every else None)
    findings = audit.findings
    if run_id is not None:
        findings = [
            finding
            for finding in findings
            if finding.kind in ("checkpoint", "log") or _uuid(finding.record_id) in audit.in_scope
        ]
    return Report(
        origin=origin,
        log_size=len(leaves),
        checkpoint_size=None if anchor is None else anchor.checkpoint.tree_size,
        checkpoints=len(every),
        records=audit.records,
        signatures=audit.signatures,
        links=links,
        patterns=len(audit.patterns),
        retrievals=len(audit.retrievals),
        run_id=run_id,
        seconds=time.perf_counter() - started,
        findings=findings,
    )


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
