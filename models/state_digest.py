"""A digest of what a database holds, table by table and vector by vector, to tell two states apart.

Two databases that did the same work hold the same digests, whatever order the work was done in, however
it was split into transactions and whether it was interrupted and run again: the crash-recovery trials
(`tests/flows/test_recovery.py`) compare a database re-run after a SIGKILL with one run once.

What a row *is* goes in; what says *when* or *by which process* it was written stays out, each such column
named below with the reason. They were found by digesting two uninterrupted runs of the same night into
two databases: only these columns differed. A surrogate key (drawn from a sequence, which a rolled-back
insert advances on PostgreSQL) is replaced by what it refers to, so a reference to a bar is compared by
the bar's symbol and time. Vectors are compared by item id, not by their place in the vector tables.

Each digest is a multiset hash (the sum of the rows' SHA-256 modulo 2^256): rows are read in batches in
any order, and memory stays flat however large the table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

# Every module that defines tables, so that the metadata holds them all whatever was imported before.
from models import learning, learning_store, provenance, trading  # noqa: F401
from models.base import Base
from models.collections import spec_of
from models.memory_items import scan_full_vectors
from models.tables import CollectionRecord

#: Columns left out of a table's digest, with why: each says when or by which process a row was written.
WRITE_HISTORY_COLUMNS: Mapping[str, Mapping[str, str]] = {
    "bars": {"id": "a surrogate key", "ingested_at": "when the bar was stored"},
    "observations": {"created_at": "when the observation was stored"},
    "collections": {
        "id": "a surrogate key",
        "created_at": "when the collection was made",
        "version": "how many writes the items came in, not what they hold",
    },
    "memory_items": {
        "sequence": "the order items were written in",
        "created_at": "when the item was stored",
        "written_version": "which write stored the item",
    },
    "quarantined_rows": {"id": "a surrogate key", "quarantined_at": "when the row was quarantined"},
    "log_entries": {
        "position": "the order records were appended in",
        "digest": "covers the record's write times",
        "signature": "signs the digest",
        "leaf_hash": "hashes the digest",
        "logged_at": "when the record was appended",
    },
    "model_versions": {"created_at": "when the model was stored"},
    "backtest_runs": {"created_at": "when the run was stored"},
}
#: Tables left out whole: they are the journal of the processes that ran, not what they produced.
WRITE_HISTORY_TABLES: Mapping[str, str] = {
    "run_summaries": "one row per process that ran a flow: a killed run's row stays beside its re-run's",
    "collection_versions": "one row per write (`models.tables.CollectionVersionRecord`)",
}
#: A surrogate key's references are compared by what they refer to: (table, column) -> (table, its columns).
REFERENCES: Mapping[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("observations", "bar_id"): ("bars", ("symbol", "timestamp")),
    ("memory_items", "collection_id"): ("collections", ("name",)),
}
_BATCH = 10_000
_MODULUS = 1 << 256


def state_digests(session: Session) -> dict[str, str]:
    """Return a digest of every table's rows and of every collection's vectors (``vectors:<name>``),
    each with its row count: ``{"bars": "300:9f2c...", ...}``."""
    digests = {}
    referred = {
        key: _natural_keys(session, Base.metadata.tables[table], columns)
        for key, (table, columns) in REFERENCES.items()
    }
    for table in Base.metadata.sorted_tables:
        if table.name in WRITE_HISTORY_TABLES:
            continue
        left_out = WRITE_HISTORY_COLUMNS.get(table.name, {})
        columns = [column for column in table.columns if column.name not in left_out]
        rows = (
            [
                referred[(table.name, column.name)].get(value) if (table.name, column.name) in referred else value
                for column, value in zip(columns, row, strict=True)
            ]
            for row in session.execute(select(*columns)).yield_per(_BATCH)
        )
        digests[table.name] = _multiset_digest(_encode(row) for row in rows)
    for record in session.scalars(select(CollectionRecord).order_by(CollectionRecord.name)):
        pieces = (
            int(item).to_bytes(8, "little", signed=True) + vector.astype("<f4").tobytes()
            for ids, matrix in scan_full_vectors(session, record.id, spec_of(record), batch=_BATCH)
            for item, vector in zip(ids.tolist(), matrix, strict=True)
        )
        digests[f"vectors:{record.name}"] = _multiset_digest(pieces)
    return digests


def _natural_keys(session: Session, table: Table, columns: tuple[str, ...]) -> dict[Any, str]:
    key = next(iter(table.primary_key.columns))
    chosen = [table.columns[name] for name in columns]
    return {row[0]: _encode(row[1:]).hex() for row in session.execute(select(key, *chosen)).yield_per(_BATCH)}


def _encode(row: Iterable[Any]) -> bytes:
    return json.dumps([_plain(value) for value in row], sort_keys=True, separators=(",", ":")).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, float):
        return repr(value)  # NaN and infinities too, which JSON has no form for
    if isinstance(value, (str, int, bool, type(None), list, dict)):
        return value
    return str(value)  # UUIDs, decimals


def _multiset_digest(pieces: Iterable[bytes]) -> str:
    total = count = 0
    for piece in pieces:
        total = (total + int.from_bytes(hashlib.sha256(piece).digest(), "big")) % _MODULUS
        count += 1
    return f"{count}:{total:064x}"
