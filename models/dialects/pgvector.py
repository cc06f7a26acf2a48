"""pgvector's SQL: the vector backend of a PostgreSQL database.

Each collection owns one table, ``vec_<name>``: the item row's `sequence` (``item_sequence``, the
primary key), the partition value, the searched vector and, for a quantized collection, the
full-precision one (``full_vector``: ``full`` is a reserved word here). The searched vector is a
``vector(d)`` (float32), a ``halfvec(d)`` holding the int8 codes exactly (pgvector has no int8 vector;
every integer from -128 to 127 is a half-precision float) or a ``bit(d)``. The table of a collection
whose store keeps an HNSW index also has pgvector's HNSW index on the searched vector (the metric's
operator class; Hamming for bits), which serves approximate searches the store's own graphs do not
answer (filtered ones, scanning iteratively); exact searches rank every row, as sqlite-vec does.

Vectors travel in binary: writes by ``COPY ... FROM STDIN (FORMAT BINARY)`` with pgvector's psycopg
adapters, reads on binary cursors. Every statement binds its values; table names come from validated
collection names only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection

from models.vector_backend import ITEM_TABLE, RowReader, VectorBackend, check_insert, vector_table
from neuraltrade.errors import StorageError
from neuraltrade.memory.collection import CollectionSpec, distance_metric

#: The most neighbours one exact query returns (a bound of the search paths' widening, not pgvector's).
MAX_K = 100_000
#: pgvector's HNSW index covers at most this many dimensions of each type; a wider collection has no
#: index and every search of it is exact.
HNSW_DIMENSIONS = {"none": 2_000, "int8": 4_000, "binary": 64_000}
#: pgvector's type of the searched vector, by quantization.
_TYPES = {"none": "vector", "int8": "halfvec", "binary": "bit"}
#: The distance operator and HNSW operator-class suffix, by metric geometry. pgvector's ``<#>`` is the
#: negative inner product: ``1 + (a <#> b)`` is this project's ``1 - a.b``.
_OPERATORS = {"angular": ("<=>", "cosine_ops"), "euclidean": ("<->", "l2_ops"), "dot": ("<#>", "ip_ops")}
#: pgvector's own limit on an HNSW search's candidate list.
MAX_EF_SEARCH = 1_000


class PgvectorBackend(VectorBackend):
    """Vector collections as pgvector tables with an HNSW index, one per collection."""

    @property
    def max_k(self) -> int:
        return MAX_K

    def ranks(self, metric: str) -> bool:
        return distance_metric(metric).geometry in _OPERATORS

    def create_collection(self, connection: Connection, spec: CollectionSpec) -> None:
        table = vector_table(spec.name)
        _create_extension(connection)
        full = "" if spec.quantization == "none" else f", full_vector vector({spec.dimension}) NOT NULL"
        connection.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {table} (item_sequence bigint PRIMARY KEY, partition_value text, "
            f"embedding {_TYPES[spec.quantization]}({spec.dimension}) NOT NULL{full})"
        )
        if spec.partition_key is not None:
            connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {table}_partition ON {table} (partition_value)")

    def ensure_index(self, connection: Connection, spec: CollectionSpec) -> None:
        """pgvector's HNSW index on the searched vectors, unless the collection is wider than it allows.

        Only for a collection whose store keeps an HNSW index: pgvector inserts each vector into its
        graph as it is written, which took 10,000 inserts of 512-d vectors from 15,989/s to 595/s
        (docs/benchmarks.md), a price an exact collection would pay for an index it never reads."""
        table = vector_table(spec.name)
        if spec.dimension <= HNSW_DIMENSIONS[spec.quantization]:
            connection.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (embedding {_operator_class(spec)})"
            )

    def drop_collection(self, connection: Connection, collection: str) -> None:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {vector_table(collection)}")

    def insert(
        self,
        connection: Connection,
        spec: CollectionSpec,
        ids: Sequence[int],
        partitions: Sequence[str] | None,
        payloads: np.ndarray,
        full: np.ndarray | None = None,
        *,
        sequences: Sequence[int],
    ) -> None:
        check_insert(spec, ids, full, sequences)
        driver = driver_connection(connection)
        columns = ["item_sequence", "partition_value", "embedding"] + ([] if full is None else ["full_vector"])
        types = ["int8", "text", _TYPES[spec.quantization]] + ([] if full is None else ["vector"])
        searched = searched_values(spec, payloads)
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {vector_table(spec.name)} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(types)
            for position, sequence in enumerate(sequences):
                partition = None if partitions is None else partitions[position]
                row = [int(sequence), partition, searched[position]]
                if full is not None:
                    row.append(full[position])
                copy.write_row(row)

    def replace(
        self,
        connection: Connection,
        spec: CollectionSpec,
        partitions: Sequence[str] | None,
        payloads: np.ndarray,
        full: np.ndarray | None = None,
        *,
        sequences: Sequence[int],
    ) -> None:
        """Deleted and copied in again under the same sequences: one COPY is faster than row updates,
        and the HNSW index takes a new vector as an insert either way."""
        driver_connection(connection).execute(
            f"DELETE FROM {vector_table(spec.name)} WHERE item_sequence = ANY(%s)",
            ([int(value) for value in sequences],),
        )
        self.insert(connection, spec, sequences, partitions, payloads, full, sequences=sequences)

    def delete(self, connection: Connection, collection: str, ids: Sequence[int]) -> None:
        if ids:
            driver_connection(connection).execute(
                f"DELETE FROM {vector_table(collection)} AS v USING {ITEM_TABLE} AS m "
                "WHERE m.id = ANY(%s) AND v.item_sequence = m.sequence",
                ([int(value) for value in ids],),
            )

    def nearest(
        self,
        rows: RowReader,
        spec: CollectionSpec,
        payload: np.ndarray,
        k: int,
        *,
        partition: str | None = None,
        breadth: int | None = None,
    ) -> list[tuple[int, float]]:
        """Exact unless `breadth` is given: the distance is then the indexed expression itself, which
        pgvector's HNSW index answers with that candidate list, scanning on (``relaxed_order``) until
        `k` rows pass the partition condition; otherwise the expression is one the index cannot
        answer, so every row is ranked."""
        if breadth is not None:
            rows(
                "SELECT set_config('hnsw.ef_search', %s, false), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', false)",
                (str(max(1, min(breadth, MAX_EF_SEARCH))),),
            )
        sql, parameters = nearest_statement(spec, payload, k, partition=partition, approximate=breadth is not None)
        return [(int(row[0]), float(row[1])) for row in rows(sql, parameters)]

    def full_vectors(
        self, connection: Connection, spec: CollectionSpec, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        if not ids:
            return np.empty(0, dtype=np.int64), np.empty((0, spec.dimension), dtype=np.float32)
        with driver_connection(connection).cursor(binary=True) as cursor:
            cursor.execute(
                f"SELECT m.id, v.{_full_column(spec)} FROM {ITEM_TABLE} AS m "
                f"JOIN {vector_table(spec.name)} AS v ON v.item_sequence = m.sequence WHERE m.id = ANY(%s)",
                ([int(value) for value in ids],),
            )
            return _matrix(cursor.fetchall(), spec.dimension)

    def scan_full(
        self, connection: Connection, spec: CollectionSpec, *, batch: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # A server-side cursor: a million vectors are not all held in this process at once.
        with driver_connection(connection).cursor(name=f"scan_{spec.name}", binary=True) as cursor:
            cursor.itersize = batch
            cursor.execute(
                f"SELECT m.id, v.{_full_column(spec)} FROM {vector_table(spec.name)} AS v "
                f"JOIN {ITEM_TABLE} AS m ON m.sequence = v.item_sequence"
            )
            while chunk := cursor.fetchmany(batch):
                yield _matrix(chunk, spec.dimension)

    def count(self, connection: Connection, collection: str) -> int:
        return int(connection.exec_driver_sql(f"SELECT count(*) FROM {vector_table(collection)}").scalar_one())

    def ids(self, connection: Connection, collection: str) -> np.ndarray:
        rows = connection.exec_driver_sql(
            f"SELECT m.id FROM {vector_table(collection)} AS v JOIN {ITEM_TABLE} AS m ON m.sequence = v.item_sequence"
        )
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def size_bytes(self, connection: Connection, collection: str) -> int | None:
        """The table with its indexes and TOAST, as PostgreSQL counts them."""
        value = connection.exec_driver_sql(
            "SELECT pg_total_relation_size(to_regclass(%s))", (vector_table(collection),)
        ).scalar()
        return None if value is None else int(value)

    def compact(self, connection: Connection, spec: CollectionSpec, batch: int) -> int:
        """The rows are copied aside, the table truncated (a new, empty file) and the rows written back
        grouped by partition; the indexes are rebuilt with it. (Autovacuum already lets PostgreSQL reuse
        the space of deleted rows; this also returns it to the file system.)"""
        table = vector_table(spec.name)
        copy = f"_rebuild_{spec.name}"  # the name is a validated collection name
        connection.exec_driver_sql(f"CREATE TEMPORARY TABLE {copy} ON COMMIT DROP AS SELECT * FROM {table}")
        connection.exec_driver_sql(f"TRUNCATE {table}")
        copied = connection.exec_driver_sql(
            f"INSERT INTO {table} SELECT * FROM {copy} ORDER BY partition_value, item_sequence"
        ).rowcount
        connection.exec_driver_sql(f"DROP TABLE {copy}")
        return int(copied)


def nearest_statement(
    spec: CollectionSpec,
    payload: np.ndarray,
    k: int,
    *,
    partition: str | None = None,
    approximate: bool = False,
) -> tuple[str, tuple[object, ...]]:
    """Return the driver SQL and parameters of a KNN query of at most `MAX_K` neighbours, each
    neighbour's item id from its item row (joined on the sequence after the ranking)."""
    operator = _distance_operator(spec)
    indexed = f"embedding {operator} %s"
    # `+ 0` makes the ordering an expression the HNSW index does not answer: the planner ranks every row.
    ordering = indexed if approximate else f"({indexed}) + 0"
    distance = f"1 + ({indexed})" if operator == "<#>" else indexed
    condition = "" if partition is None else "WHERE partition_value = %s "
    vector = searched_values(spec, np.atleast_2d(payload))[0]
    parameters: list[object] = [vector] + ([] if partition is None else [partition]) + [vector, min(k, MAX_K)]
    sql = (
        f"SELECT m.id, k.distance FROM (SELECT item_sequence, {distance} AS distance FROM {vector_table(spec.name)} "
        f"{condition}ORDER BY {ordering} LIMIT %s) AS k "
        f"JOIN {ITEM_TABLE} AS m ON m.sequence = k.item_sequence ORDER BY k.distance"
    )
    return sql, tuple(parameters)


def searched_values(spec: CollectionSpec, payloads: np.ndarray) -> Sequence[Any] | np.ndarray:
    """The rows of `payloads` as pgvector's adapters take them: float32 arrays, half-precision vectors
    of the int8 codes, or bit strings of the collection's dimension."""
    from pgvector import Bit, HalfVector

    if spec.quantization == "none":
        return np.ascontiguousarray(payloads, dtype=np.float32)
    if spec.quantization == "int8":
        return [HalfVector(row) for row in payloads.astype(np.float16)]
    length = struct.pack(">i", spec.dimension)
    return [Bit.from_binary(length + row.tobytes()) for row in np.ascontiguousarray(payloads, dtype=np.uint8)]


def driver_connection(connection: Connection) -> Any:
    """Return the psycopg connection under `connection`, with pgvector's types registered on it."""
    driver = connection.connection.driver_connection
    register_types(driver)
    return driver


def register_types(driver: Any) -> bool:
    """Register pgvector's types on a psycopg connection, once; return whether the database has them
    (False until the ``vector`` extension is created)."""
    if driver.adapters.types.get("vector") is not None:
        return True
    from pgvector.psycopg import register_vector
    from psycopg.types import TypeInfo

    if TypeInfo.fetch(driver, "vector") is None:
        return False
    register_vector(driver)
    return True


def _create_extension(connection: Connection) -> None:
    from sqlalchemy.exc import DBAPIError

    try:
        with connection.begin_nested():
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    except DBAPIError as error:
        raise StorageError(
            "vector collections on PostgreSQL need the pgvector extension: a superuser runs "
            f"CREATE EXTENSION vector; in this database once ({error.orig})"
        ) from error


def _distance_operator(spec: CollectionSpec) -> str:
    if spec.quantization == "binary":
        return "<~>"
    return _OPERATORS[distance_metric(spec.metric).geometry][0]


def _operator_class(spec: CollectionSpec) -> str:
    if spec.quantization == "binary":
        return "bit_hamming_ops"
    return f"{_TYPES[spec.quantization]}_{_OPERATORS[distance_metric(spec.metric).geometry][1]}"


def _full_column(spec: CollectionSpec) -> str:
    return "embedding" if spec.quantization == "none" else "full_vector"


def _matrix(rows: Sequence[Any], dimension: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    matrix = np.empty((len(rows), dimension), dtype=np.float32)
    for position, row in enumerate(rows):
        matrix[position] = row[1].to_numpy()
    return ids, matrix


#: The one backend of every PostgreSQL database (it holds no state).
PGVECTOR = PgvectorBackend()
