"""sqlite-vec's own SQL: the vector backend of a SQLite database.

Each collection owns one ``vec0`` virtual table, ``vec_<name>``: the item row's `sequence` as rowid
(``item_sequence``), the partition value (when the collection has a partition key), the searched vector
(float32, int8 or bit) and, for a quantized collection, the full-precision float32 vector (``full``). It
is the one place a vector is stored: an unquantized collection's searched vector is its full-precision
one. Every statement here binds its values; table names come from validated collection names only.

Keyed by the sequence, rows arrive in write order: each write of 10,000 appends to the rowid table
instead of dirtying pages all over it, as derived ids (hashes) did (revision 0008). The interface still
speaks item ids: each statement joins `memory_items` on the sequence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection

from models.vector_backend import ITEM_TABLE, RowReader, VectorBackend, check_insert, vector_table
from neuraltrade.memory.collection import CollectionSpec, distance_metric

#: Vectors per sqlite-vec chunk. Each partition allocates whole chunks, so a smaller chunk wastes
#: less space on short histories; and sqlite-vec writes each vector into its chunk's blob, which costs
#: more the larger the blob: 100,000 x 512 float32 over 50 partitions go in at 37,000/s with chunks of
#: 1,024 and 79,000/s with chunks of 128 (docs/benchmarks.md), whose exact search is as fast.
CHUNK_SIZE = 128
#: A bulk read of full vectors by id scans the whole table instead of looking ids up one by one when
#: it asks for more than this share of the collection (a scan reads 220,000 vectors/s, a lookup 70,000).
SCAN_SHARE = 0.25
#: Fewer ids than this are always looked up: counting a vec0 table reads all of it (18 ms at 100,000
#: rows, measured), which cost every refresh of an unsealed segment more than its few new vectors, and
#: a lookup of 2,000 ids (29 ms) is never far slower than a scan of a table small enough to beat it.
LOOKUP_ALWAYS_BELOW = 2_000
#: sqlite-vec 0.1.9 refuses a KNN query for more neighbours than this.
MAX_K = 4_096
_ELEMENT_TYPES = {"none": "float", "int8": "int8", "binary": "bit"}
_WRAPPERS = {"none": "?", "int8": "vec_int8(?)", "binary": "vec_bit(?)"}
# sqlite-vec's names of the distances it ranks by, by the geometry of `neuraltrade.memory.collection`'s
# metrics. It has no inner product: such collections rank with numpy over their full vectors, and
# their tables are declared L2, a distance never used to rank.
_DISTANCES = {"angular": "cosine", "euclidean": "L2"}
_UNRANKED_DISTANCE = "L2"


class SqliteVecBackend(VectorBackend):
    """Vector collections as sqlite-vec ``vec0`` tables, one per collection."""

    @property
    def max_k(self) -> int:
        return MAX_K

    def ranks(self, metric: str) -> bool:
        return distance_metric(metric).geometry in _DISTANCES

    def create_collection(self, connection: Connection, spec: CollectionSpec) -> None:
        partition = "partition_value text partition key, " if spec.partition_key is not None else ""
        # Bit vectors have one distance only (Hamming), so they take no distance_metric option.
        geometry = distance_metric(spec.metric).geometry
        declared = _DISTANCES.get(geometry, _UNRANKED_DISTANCE)
        distance = "" if spec.quantization == "binary" else f" distance_metric={declared}"
        full = "" if spec.quantization == "none" else f"full float[{spec.dimension}], "
        # A bit vector is stored in whole bytes (`quantize_binary` pads the last with zeros), and sqlite-vec
        # takes exactly as many bits as declared.
        width = -(-spec.dimension // 8) * 8 if spec.quantization == "binary" else spec.dimension
        connection.exec_driver_sql(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {vector_table(spec.name)} USING vec0("
            f"item_sequence integer primary key, {partition}"
            f"embedding {_ELEMENT_TYPES[spec.quantization]}[{width}]{distance}, {full}"
            f"chunk_size={CHUNK_SIZE})"
        )

    def drop_collection(self, connection: Connection, collection: str) -> None:
        # sqlite-vec's shadow tables go with the virtual table.
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
        columns, values = ["item_sequence"], ["?"]
        parts: list[Sequence[object] | np.ndarray] = [sequences]
        if partitions is not None:
            columns.append("partition_value")
            values.append("?")
            parts.append(partitions)
        columns.append("embedding")
        values.append(_WRAPPERS[spec.quantization])
        parts.append(payloads)
        check_insert(spec, ids, full, sequences)
        if full is not None:
            columns.append("full")
            values.append("?")
            parts.append(full)
        connection.exec_driver_sql(
            f"INSERT INTO {vector_table(spec.name)} ({', '.join(columns)}) VALUES ({', '.join(values)})",
            list(zip(*parts, strict=True)),
        )

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
        """A float32 vector is overwritten where it lies (89,000 rows/s). sqlite-vec 0.1.9 refuses int8 and
        bit vectors in an UPDATE (the subtype `vec_int8()` gives does not reach it), so those rows are
        deleted and inserted again under the same sequence."""
        table = vector_table(spec.name)
        if spec.quantization == "none":
            connection.exec_driver_sql(
                f"UPDATE {table} SET embedding = ? WHERE item_sequence = ?",
                list(zip(payloads, sequences, strict=True)),
            )
            return
        connection.exec_driver_sql(
            f"DELETE FROM {table} WHERE item_sequence = ?", [(int(value),) for value in sequences]
        )
        self.insert(connection, spec, sequences, partitions, payloads, full, sequences=sequences)

    def delete(self, connection: Connection, collection: str, ids: Sequence[int]) -> None:
        """One id per statement, before the item rows go: sqlite-vec takes ``DELETE ... WHERE
        item_sequence = ?`` at about 25,000 rows/s, while ``WHERE ... IN (SELECT ...)`` over 20,000 rows
        had not finished after 12 minutes (docs/benchmarks.md)."""
        if ids:
            connection.exec_driver_sql(
                f"DELETE FROM {vector_table(collection)} WHERE item_sequence = "
                f"(SELECT sequence FROM {ITEM_TABLE} WHERE id = ?)",
                [(int(value),) for value in ids],
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
        """Always exact (sqlite-vec has no approximate index): `breadth` is not used."""
        sql, parameters = nearest_statement(spec.name, spec.quantization, payload, k, partition=partition)
        return [(int(row[0]), float(row[1])) for row in rows(sql, parameters)]

    def full_vectors(
        self, connection: Connection, spec: CollectionSpec, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """By id (``json_each`` joined to the item rows, then to the table's rowid), or by one scan when
        `ids` are a large share of the collection."""
        column = _full_column(spec)
        if not ids:
            return np.empty(0, dtype=np.int64), np.empty((0, spec.dimension), dtype=np.float32)
        if len(ids) >= LOOKUP_ALWAYS_BELOW and len(ids) > SCAN_SHARE * self.count(connection, spec.name):
            wanted = np.asarray(ids, dtype=np.int64)
            found_ids, found = [], []
            for batch_ids, matrix in self.scan_full(connection, spec, batch=20_000):
                keep = np.isin(batch_ids, wanted)
                found_ids.append(batch_ids[keep])
                found.append(matrix[keep])
            return np.concatenate(found_ids), np.concatenate(found).reshape(-1, spec.dimension)
        rows = connection.exec_driver_sql(
            f"SELECT m.id, v.{column} FROM json_each(?) AS j JOIN {ITEM_TABLE} AS m ON m.id = j.value "
            f"JOIN {vector_table(spec.name)} AS v ON v.item_sequence = m.sequence",
            (json.dumps([int(value) for value in ids]),),
        ).all()
        return _matrix(rows, spec.dimension)

    def scan_full(
        self, connection: Connection, spec: CollectionSpec, *, batch: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rows = connection.exec_driver_sql(
            f"SELECT m.id, v.{_full_column(spec)} FROM {vector_table(spec.name)} AS v "
            f"JOIN {ITEM_TABLE} AS m ON m.sequence = v.item_sequence"
        )
        for chunk in rows.partitions(batch):
            yield _matrix(chunk, spec.dimension)

    def count(self, connection: Connection, collection: str) -> int:
        return int(connection.exec_driver_sql(f"SELECT count(*) FROM {vector_table(collection)}").scalar_one())

    def ids(self, connection: Connection, collection: str) -> np.ndarray:
        # Reads the rowids only, each joined to its item row by the primary key.
        rows = connection.exec_driver_sql(
            f"SELECT m.id FROM {vector_table(collection)} AS v JOIN {ITEM_TABLE} AS m ON m.sequence = v.item_sequence"
        )
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def size_bytes(self, connection: Connection, collection: str) -> int | None:
        """The bytes of the virtual table and its shadow tables, from ``dbstat`` (None without it)."""
        try:
            value = connection.exec_driver_sql(
                "SELECT sum(pgsize) FROM dbstat WHERE name LIKE ? ESCAPE '\\'",
                (vector_table(collection).replace("_", "\\_") + "%",),
            ).scalar()
        except Exception:
            return None
        return None if value is None else int(value)

    def compact(self, connection: Connection, spec: CollectionSpec, batch: int) -> int:
        """sqlite-vec frees a chunk once it is wholly empty, but never compacts partly empty ones: the
        vectors are copied to a temporary table, the table is dropped and created again, and the vectors
        go back grouped by partition."""
        copy = f"temp._rebuild_{spec.name}"  # the name is a validated collection name
        partition = "partition_value" if spec.partition_key is not None else "NULL"
        full = "NULL" if spec.quantization == "none" else "full"
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {copy}")
        connection.exec_driver_sql(
            f"CREATE TABLE {copy} AS SELECT item_sequence AS id, {partition} AS part, embedding AS v, {full} AS f "
            f"FROM {vector_table(spec.name)}"
        )
        self.drop_collection(connection, spec.name)
        self.create_collection(connection, spec)
        copied = 0
        rows = connection.exec_driver_sql(f"SELECT id, part, v, f FROM {copy} ORDER BY part, id")
        for chunk in rows.partitions(batch):
            payloads = np.frombuffer(b"".join(row[2] for row in chunk), dtype=np.uint8).reshape(len(chunk), -1)
            parts = None if spec.partition_key is None else [row[1] for row in chunk]
            full_vectors = None
            if spec.quantization != "none":
                full_vectors = np.frombuffer(b"".join(row[3] for row in chunk), dtype=np.float32)
                full_vectors = full_vectors.reshape(len(chunk), spec.dimension)
            sequences = [row[0] for row in chunk]
            self.insert(connection, spec, sequences, parts, payloads, full_vectors, sequences=sequences)
            copied += len(chunk)
        connection.exec_driver_sql(f"DROP TABLE {copy}")
        return copied


def _full_column(spec: CollectionSpec) -> str:
    return "embedding" if spec.quantization == "none" else "full"


def _matrix(rows: Sequence[Any], dimension: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), dimension)
    return ids, matrix


def nearest_statement(
    collection: str,
    quantization: str,
    payload: np.ndarray,
    k: int,
    *,
    partition: str | None = None,
) -> tuple[str, tuple[object, ...]]:
    """Return the driver SQL and parameters of a KNN query of at most `MAX_K` neighbours.

    Each neighbour's item id comes from its item row, joined on the sequence after the KNN has ranked.
    No id constraint: the search path filters candidates itself.
    """
    clauses = [f"embedding MATCH {_WRAPPERS[quantization]}", "k = ?"]
    parameters: list[object] = [payload, min(k, MAX_K)]
    if partition is not None:
        clauses.append("partition_value = ?")
        parameters.append(partition)
    sql = (
        f"SELECT m.id, k.distance FROM (SELECT item_sequence, distance FROM {vector_table(collection)} "
        f"WHERE {' AND '.join(clauses)} ORDER BY distance) AS k "
        f"JOIN {ITEM_TABLE} AS m ON m.sequence = k.item_sequence ORDER BY k.distance"
    )
    return sql, tuple(parameters)


#: The one backend of every SQLite database (it holds no state).
SQLITE_VEC = SqliteVecBackend()
