"""sqlite-vec's own SQL: the one place the project writes SQL that SQLAlchemy cannot make portable.

Each collection owns one ``vec0`` virtual table, ``vec_<name>``: the item id as rowid, the partition
value (when the collection has a partition key) and the searched vector (float32, int8 or bit).
Every statement here binds its values; table names come from validated collection names only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection

from models.tables import VECTOR_TABLE_PREFIX

#: Vectors per sqlite-vec chunk. Each partition allocates whole chunks, so a smaller chunk wastes
#: less space on short histories; 1,024 x 512 float32 is a 2 MiB blob.
CHUNK_SIZE = 1_024
#: sqlite-vec 0.1.9 refuses a KNN query for more neighbours than this.
MAX_K = 4_096
_ELEMENT_TYPES = {"none": "float", "int8": "int8", "binary": "bit"}
_WRAPPERS = {"none": "?", "int8": "vec_int8(?)", "binary": "vec_bit(?)"}
# sqlite-vec has no inner-product distance; such collections rank with numpy over their full vectors,
# so the distance named for them here is never used to rank.
_DISTANCES = {"cosine": "cosine", "l2": "L2", "inner_product": "L2"}


def table_name(collection: str) -> str:
    """Return the vector table of collection `collection` (a name `CollectionSpec` validated)."""
    return f"{VECTOR_TABLE_PREFIX}{collection}"


def create_table(
    connection: Connection, collection: str, *, dimension: int, metric: str, quantization: str, partitioned: bool
) -> None:
    """Create the vector table of a collection if it does not exist."""
    partition = "partition_value text partition key, " if partitioned else ""
    # Bit vectors have one distance only (Hamming), so they take no distance_metric option.
    distance = "" if quantization == "binary" else f" distance_metric={_DISTANCES[metric]}"
    connection.exec_driver_sql(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {table_name(collection)} USING vec0("
        f"item_id integer primary key, {partition}"
        f"embedding {_ELEMENT_TYPES[quantization]}[{dimension}]{distance}, chunk_size={CHUNK_SIZE})"
    )


def drop_table(connection: Connection, collection: str) -> None:
    """Drop the vector table of a collection (and sqlite-vec's shadow tables with it)."""
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table_name(collection)}")


def insert(
    connection: Connection,
    collection: str,
    quantization: str,
    ids: Sequence[int],
    partitions: Sequence[str] | None,
    payloads: np.ndarray,
) -> None:
    """Insert one searched vector per id; `payloads` rows are float32, int8 or packed bits."""
    value = _WRAPPERS[quantization]
    if partitions is None:
        connection.exec_driver_sql(
            f"INSERT INTO {table_name(collection)} (item_id, embedding) VALUES (?, {value})",
            [(ids[i], payloads[i]) for i in range(len(ids))],
        )
    else:
        connection.exec_driver_sql(
            f"INSERT INTO {table_name(collection)} (item_id, partition_value, embedding) VALUES (?, ?, {value})",
            [(ids[i], partitions[i], payloads[i]) for i in range(len(ids))],
        )


def delete(connection: Connection, collection: str, ids: Sequence[int]) -> None:
    """Delete the vectors `ids`, one id per statement.

    sqlite-vec takes ``DELETE ... WHERE item_id = ?`` at about 25,000 rows/s, while ``WHERE item_id IN
    (SELECT ...)`` over 20,000 rows had not finished after 12 minutes (docs/benchmarks.md).
    """
    if ids:
        connection.exec_driver_sql(
            f"DELETE FROM {table_name(collection)} WHERE item_id = ?", [(int(value),) for value in ids]
        )


def nearest_statement(
    collection: str,
    quantization: str,
    payload: np.ndarray,
    k: int,
    *,
    partition: str | None = None,
    ids: Sequence[int] | None = None,
) -> tuple[str, tuple[object, ...]]:
    """Return the driver SQL and parameters of a KNN query (see `nearest`)."""
    clauses = [f"embedding MATCH {_WRAPPERS[quantization]}", "k = ?"]
    parameters: list[object] = [payload, min(k, MAX_K)]
    if partition is not None:
        clauses.append("partition_value = ?")
        parameters.append(partition)
    if ids is not None:
        clauses.append("item_id IN (SELECT value FROM json_each(?))")
        parameters.append(json.dumps([int(value) for value in ids]))
    sql = f"SELECT item_id, distance FROM {table_name(collection)} WHERE {' AND '.join(clauses)} ORDER BY distance"
    return sql, tuple(parameters)


def count(connection: Connection, collection: str) -> int:
    """Return how many vectors the collection's vector table holds."""
    return int(connection.exec_driver_sql(f"SELECT count(*) FROM {table_name(collection)}").scalar_one())


def size_bytes(connection: Connection, collection: str) -> int | None:
    """Return the bytes the vector table and its shadow tables occupy, or None without ``dbstat``."""
    try:
        value = connection.exec_driver_sql(
            "SELECT sum(pgsize) FROM dbstat WHERE name LIKE ? ESCAPE '\\'",
            (table_name(collection).replace("_", "\\_") + "%",),
        ).scalar()
    except Exception:
        return None
    return None if value is None else int(value)
