"""The `memory_items` table: reads and writes of vector-collection items, and filters as SQL.

Everything here is portable SQLAlchemy: metadata filters become JSON-path comparisons whose paths and
values are bound parameters, so the same filter runs on SQLite and PostgreSQL and no SQL text is ever
made from a user's string.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from models.base import stored_microseconds, table_of
from models.bulk import execute_many
from models.dialects import dialect_for, json_kind, json_kind_names, vector_backend_for
from models.tables import CollectionRecord, MemoryItemRecord
from neuraltrade.memory.collection import CollectionSpec, Filter

#: Ids per statement: SQLite binds at most 32,766 variables.
IDS_PER_STATEMENT = 10_000
_ID_MASK = (1 << 63) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_ITEMS = table_of(MemoryItemRecord)
#: The name an update binds the matched key to (a column's own name is taken by its SET clause).
_MATCHED = "matched_sequence"
#: The columns an update in place keeps (`update_rows`).
_UNCHANGED = frozenset({"sequence", "id", "key", "collection_id", "partition"})


def item_id(collection_id: int, key: str) -> int:
    """Return the stable 63-bit id of item `key` in collection `collection_id`.

    Derived, not allocated, so that a re-run writes the same ids and concurrent writers need no
    counter. A key that is a UUID (a market state's observation id) is used as it is; any other key is
    hashed to 128 bits first.
    """
    value = None
    if len(key) == 36 and key[8] == "-":  # cheap test first: most keys are not UUIDs
        try:
            value = uuid.UUID(key).int
        except ValueError:
            value = None
    if value is None:
        value = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest(), "big")
    return ((value >> 64) ^ (collection_id * _GOLDEN)) & _ID_MASK


def chunks(values: Sequence[Any], size: int = IDS_PER_STATEMENT) -> Iterator[Sequence[Any]]:
    """Yield `values` in slices of at most `size`."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(frozen=True)
class StoredRow:
    """What a write needs of a stored item row: its key, its sequence, its partition, and the indexed
    fields a replacement may leave as they are (its timestamp in epoch microseconds, its observation)."""

    key: str
    sequence: int
    partition: str | None
    timestamp: int
    observation_id: uuid.UUID | None


def stored_rows(session: Session, ids: Sequence[int]) -> dict[int, StoredRow]:
    """Return the stored row of every one of `ids` that is stored, by id."""
    found: dict[int, StoredRow] = {}
    query = select(
        MemoryItemRecord.id,
        MemoryItemRecord.key,
        MemoryItemRecord.sequence,
        MemoryItemRecord.partition,
        stored_microseconds(MemoryItemRecord.timestamp),
        MemoryItemRecord.observation_id,
    ).where(MemoryItemRecord.id.in_(bindparam("ids", expanding=True)))
    for chunk in chunks(ids):
        for number, key, sequence, partition, moment, observation in session.execute(query, {"ids": list(chunk)}):
            found[int(number)] = StoredRow(
                key=key, sequence=int(sequence), partition=partition, timestamp=int(moment), observation_id=observation
            )
    return found


def insert_rows(session: Session, columns: dict[str, list[Any]]) -> None:
    """Insert item rows given column-wise (names as `memory_items` columns)."""
    execute_many(session, insert(_ITEMS), _ITEMS, columns)


def update_rows(session: Session, columns: dict[str, list[Any]]) -> None:
    """Update stored item rows given column-wise, each matched by its ``sequence`` (the primary key,
    which spares a lookup of the id's index). Its id, key, collection and partition stay as they are (the
    id derives from the first two; a write moving an item to another partition writes it anew): set
    again, each would cost an index entry rewritten."""
    values: dict[str, Any] = {name: bindparam(name) for name in columns if name not in _UNCHANGED}
    statement = update(_ITEMS).where(_ITEMS.c.sequence == bindparam(_MATCHED)).values(values)
    bound = {**{name: columns[name] for name in values}, _MATCHED: columns["sequence"]}
    execute_many(session, statement, _ITEMS, bound, aliases={_MATCHED: "sequence"})


def delete_rows(session: Session, ids: Sequence[int]) -> None:
    """Delete the item rows `ids` (their vectors go through the vector backend)."""
    for chunk in chunks(ids):
        session.execute(delete(MemoryItemRecord).where(MemoryItemRecord.id.in_(chunk)))


def item_ids(session: Session, collection_id: int) -> np.ndarray:
    """Return the id of every item of the collection (int64)."""
    query = select(MemoryItemRecord.id).where(MemoryItemRecord.collection_id == collection_id)
    return np.fromiter(session.scalars(query), dtype=np.int64)


def segment(session: Session, collection_id: int, after_version: int, partition: str | None = None) -> dict[int, int]:
    """Return the written version of every item of the collection (of `partition`, when given) written
    after `after_version`, by id."""
    return {
        int(row[0]): int(row[1]) for row in session.execute(_segment_query(collection_id, after_version, partition))
    }


def _segment_query(collection_id: Any, after_version: Any, partition: Any) -> Select[int, int]:
    query = select(MemoryItemRecord.id, MemoryItemRecord.written_version).where(
        MemoryItemRecord.collection_id == collection_id, MemoryItemRecord.written_version > after_version
    )
    return query if partition is None else query.where(MemoryItemRecord.partition == partition)


def count_written(
    session: Session, collection_id: int, after_version: int, through_version: int, partition: str | None = None
) -> int:
    """Return how many items of the collection (of `partition`, when given) were written after
    `after_version` and up to `through_version`."""
    return int(session.scalar(_count_query(collection_id, after_version, through_version, partition)) or 0)


def _count_query(collection_id: Any, after_version: Any, through_version: Any, partition: Any) -> Select[int]:
    query = select(func.count()).where(
        MemoryItemRecord.collection_id == collection_id,
        MemoryItemRecord.written_version > after_version,
        MemoryItemRecord.written_version <= through_version,
    )
    return query if partition is None else query.where(MemoryItemRecord.partition == partition)


def next_sequence(session: Session) -> int:
    """Return the first free item-row `sequence`: a write numbers its rows itself from there, so that
    it knows them without reading them back (a read of 10,000 rows cost 5% of the write). Safe while the
    writer holds the database's write lock, as every store write does (``BEGIN IMMEDIATE``); without it
    a concurrent writer's rows collide on the primary key and the later commit fails, losing nothing."""
    return int(session.scalar(select(func.coalesce(func.max(MemoryItemRecord.sequence), 0))) or 0) + 1


def partition_ids(session: Session, collection_id: int, partition: str) -> np.ndarray:
    """Return the id of every item of the collection's `partition` (int64)."""
    query = select(MemoryItemRecord.id).where(
        MemoryItemRecord.collection_id == collection_id, MemoryItemRecord.partition == partition
    )
    return np.fromiter(session.scalars(query), dtype=np.int64)


def partitions(session: Session, collection_id: int) -> list[str]:
    """Return every partition value the collection's items hold, sorted."""
    query = (
        select(MemoryItemRecord.partition)
        .where(MemoryItemRecord.collection_id == collection_id, MemoryItemRecord.partition.is_not(None))
        .distinct()
        .order_by(MemoryItemRecord.partition)
    )
    return [str(value) for value in session.scalars(query)]


def condition(
    where: Filter | None, *, partition_key: str | None, as_of: int | None = None
) -> ColumnElement[bool] | None:
    """Return `where` and the `as_of` bound (epoch microseconds, exclusive) as one SQL condition."""
    parts = []
    if where is not None:
        parts.append(_compile(where, partition_key))
    if as_of is not None:
        parts.append(stored_microseconds(MemoryItemRecord.timestamp) < as_of)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else and_(*parts)


def _compile(where: Filter, partition_key: str | None) -> ColumnElement[bool]:
    if where.operator in ("and", "or"):
        operands = [_compile(operand, partition_key) for operand in where.operands]
        return and_(*operands) if where.operator == "and" else or_(*operands)
    assert where.name is not None
    if where.name == partition_key:
        # The partition value is also a plain, indexed column.
        values = where.value if isinstance(where.value, tuple) else (where.value,)
        strings = [value for value in values if isinstance(value, str)]
        if where.operator in ("eq", "in"):
            return MemoryItemRecord.partition.in_(strings) if strings else false()
    values = where.value if isinstance(where.value, tuple) else (where.value,)
    comparisons = []
    for kind in (str, bool, float):
        same_kind = [value for value in values if _kind(value) is kind]
        if not same_kind:
            continue
        field = _field(where.name, kind)
        # Values compare within their kind only: SQL would happily compare 1 with true or 'abc' with 0.
        guard = json_kind(MemoryItemRecord.metadata_, literal(f'$."{where.name}"'), literal(where.name)).in_(
            json_kind_names(kind)
        )
        if where.operator in ("eq", "in"):
            test = field == same_kind[0] if len(same_kind) == 1 else field.in_(same_kind)
        else:
            operators = {"lt": field.__lt__, "le": field.__le__, "gt": field.__gt__, "ge": field.__ge__}
            test = operators[where.operator](same_kind[0])
        # CASE, not AND: only CASE promises that the test (a cast PostgreSQL refuses on a value of
        # another kind, such as 5 as a boolean) is evaluated after the guard has held.
        comparisons.append(case((guard, test), else_=false()))
    return comparisons[0] if len(comparisons) == 1 else or_(*comparisons)


def _kind(value: Any) -> type:
    if isinstance(value, bool):
        return bool
    return str if isinstance(value, str) else float


def _field(name: str, kind: type) -> Any:
    element = MemoryItemRecord.metadata_[name]
    if kind is str:
        return element.as_string()
    if kind is bool:
        return element.as_boolean()
    return element.as_float()


def count(
    session: Session,
    collection_id: int,
    partitions: Sequence[str] | None = None,
    extra: ColumnElement[bool] | None = None,
) -> int:
    """Return how many of the collection's items are in `partitions` and satisfy `extra`."""
    query = select(func.count()).where(MemoryItemRecord.collection_id == collection_id)
    if partitions is not None:
        query = query.where(MemoryItemRecord.partition.in_(partitions))
    if extra is not None:
        query = query.where(extra)
    return int(session.scalar(query) or 0)


def full_vectors(session: Session, spec: CollectionSpec, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Return (ids, float32 matrix) of the full-precision vectors of `ids` (those stored)."""
    return vector_backend_for(session).full_vectors(session.connection(), spec, ids)


def scan_full_vectors(
    session: Session,
    collection_id: int,
    spec: CollectionSpec,
    *,
    partitions: Sequence[str] | None = None,
    extra: ColumnElement[bool] | None = None,
    batch: int = 20_000,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (ids, float32 matrix) batches of the full-precision vectors of matching items."""
    backend = vector_backend_for(session)
    if partitions is None and extra is None:
        yield from backend.scan_full(session.connection(), spec, batch=batch)
        return
    query = select(MemoryItemRecord.id).where(MemoryItemRecord.collection_id == collection_id)
    if partitions is not None:
        query = query.where(MemoryItemRecord.partition.in_(partitions))
    if extra is not None:
        query = query.where(extra)
    ids = [int(value) for value in session.scalars(query)]
    for chunk in chunks(ids, batch):
        yield backend.full_vectors(session.connection(), spec, chunk)


def filter_ids(session: Session, ids: Sequence[int], extra: ColumnElement[bool]) -> set[int]:
    """Return which of `ids` satisfy `extra`."""
    query = select(MemoryItemRecord.id).where(extra)
    return {
        int(value) for chunk in chunks(ids) for value in session.scalars(query.where(MemoryItemRecord.id.in_(chunk)))
    }


class HotReader:
    """The two reads on every search, at driver speed: a collection's version and items by id.

    A SQLAlchemy session costs ~300 microseconds per search (measured), more than an HNSW query itself.
    These statements are still SQLAlchemy's, compiled once for the engine's dialect, then run on one
    raw driver connection per thread in autocommit; each read is its own snapshot, so a caller must
    tolerate an id deleted between the two reads (it is simply not described).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        dialect = engine.dialect
        version = select(CollectionRecord.version).where(CollectionRecord.id == bindparam("id"))
        self._version_sql = str(version.compile(dialect=dialect))
        self._positional = bool(version.compile(dialect=dialect).positional)
        self._describe_sql: dict[int, str] = {}
        self._compiled: dict[tuple[str, bool], Any] = {}
        self._decode = MemoryItemRecord.metadata_.type.result_processor(dialect, None)

    def _cursor(self) -> Any:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            connection = self._engine.raw_connection()
            dialect_for(self._engine).prepare_reader(connection.driver_connection)
            self._local.connection = connection
            cursor = self._local.cursor = connection.cursor()
        return cursor

    def rows(self, sql: str, parameters: tuple[object, ...]) -> list[Any]:
        """Run driver SQL (a vector backend's nearest-neighbour query) and return its rows."""
        cursor = self._cursor()
        cursor.execute(sql, parameters)
        return list(cursor.fetchall())

    def version(self, collection_id: int) -> int:
        """Return the collection's current version."""
        cursor = self._cursor()
        cursor.execute(self._version_sql, (collection_id,) if self._positional else {"id": collection_id})
        return int(cursor.fetchone()[0])

    def written_since(self, collection_id: int, after_version: int, partition: str | None) -> dict[int, int]:
        """`segment` at driver speed: a searching process runs it after every write, by any process."""
        rows = self._run(("segment", partition is None), _segment_query, collection_id, after_version, partition)
        return {int(row[0]): int(row[1]) for row in rows}

    def count_written(self, collection_id: int, after_version: int, through_version: int, partition: str | None) -> int:
        """`count_written` at driver speed."""
        shape = ("count", partition is None)
        [(count,)] = self._run(shape, _count_query, collection_id, after_version, through_version, partition)
        return int(count)

    def _run(self, shape: tuple[str, bool], build: Callable[..., Any], *values: Any) -> list[Any]:
        """Run the statement `build` makes of `values` (the last one a partition or None), compiled once
        per `shape` with a parameter in place of each value."""
        compiled = self._compiled.get(shape)
        names = [f"p{i}" for i in range(len(values))]
        if compiled is None:
            parameters: list[Any] = [bindparam(name) for name in names[:-1]]
            partition: Any = None if values[-1] is None else bindparam(names[-1])
            compiled = self._compiled[shape] = build(*parameters, partition).compile(dialect=self._engine.dialect)
        bound = dict(zip(names, values, strict=True))
        cursor = self._cursor()
        if compiled.positional:
            cursor.execute(str(compiled), tuple(bound[name] for name in compiled.positiontup or ()))
        else:
            cursor.execute(str(compiled), {name: bound[name] for name in compiled.params})
        return list(cursor.fetchall())

    def describe(self, ids: Sequence[int]) -> dict[int, tuple[str, Mapping[str, Any], int]]:
        """Return (key, metadata, timestamp in epoch microseconds) of each of `ids`, by id."""
        if not ids:
            return {}
        count = len(ids)
        sql = self._describe_sql.get(count)
        if sql is None:
            statement = select(
                MemoryItemRecord.id,
                MemoryItemRecord.key,
                MemoryItemRecord.metadata_,
                stored_microseconds(MemoryItemRecord.timestamp),
            ).where(MemoryItemRecord.id.in_([bindparam(f"id{i}") for i in range(count)]))
            sql = self._describe_sql[count] = str(statement.compile(dialect=self._engine.dialect))
        cursor = self._cursor()
        parameters = [int(value) for value in ids]
        cursor.execute(sql, parameters if self._positional else {f"id{i}": value for i, value in enumerate(parameters)})
        decode = self._metadata
        return {int(row[0]): (row[1], decode(row[2]), int(row[3])) for row in cursor.fetchall()}

    def _metadata(self, stored: Any) -> Mapping[str, Any]:
        # Items of one symbol often share their metadata text: decode each text once, and hand out
        # read-only views so that results sharing one mapping cannot change each other.
        if not isinstance(stored, str):
            return MappingProxyType(stored if self._decode is None else self._decode(stored))
        return _decoded_metadata(stored, self._decode)


@functools.lru_cache(maxsize=65_536)
def _decoded_metadata(text: str, decode: Any) -> Mapping[str, Any]:
    return MappingProxyType(decode(text) if decode is not None else json.loads(text))


_readers: dict[int, tuple[Engine, HotReader]] = {}
_readers_lock = threading.Lock()


def hot_reader(engine: Engine) -> HotReader:
    """Return the `HotReader` of `engine`, shared by every store on it (one driver connection per thread)."""
    with _readers_lock:
        held = _readers.get(id(engine))
        if held is None or held[0] is not engine:
            held = _readers[id(engine)] = (engine, HotReader(engine))
        return held[1]
