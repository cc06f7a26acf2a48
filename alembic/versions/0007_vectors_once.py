"""vector memory: each vector stored once, and the written version of every item

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 19:30:00

Until now every full-precision vector was stored twice in the database: in its collection's sqlite-vec
table (the searched vector) and in `memory_vectors`. Now the collection's vector table is the one place:
an unquantized collection's searched vector is its full-precision one, and a quantized collection's
table gains a ``full`` float column beside its int8 or bit vector. `memory_vectors` goes.

Each vector table is rebuilt (sqlite-vec tables cannot be altered) by way of a plain copy table, with
chunks of 128 vectors (faster bulk writes, less space lost per partition), grouped by partition. The
copy's row count is checked against the item rows before anything is dropped, so no vector is lost.

`memory_items.written_version` is the collection version of the write that stored the item (the items
written after an HNSW graph was sealed are searched exactly beside it); existing items get their
collection's current version.

Downgrade restores `memory_vectors` from the vector tables and the old table layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COPY = "_vector_copy"
_METRICS = {"cosine": "cosine", "l2": "L2", "inner_product": "L2"}
_TYPES = {"none": "float", "int8": "int8", "binary": "bit"}
_WRAPPERS = {"none": "v", "int8": "vec_int8(v)", "binary": "vec_bit(v)"}


def _collections(bind: sa.Connection) -> list[sa.Row]:
    return list(
        bind.execute(sa.text("SELECT id, name, dimension, metric, quantization, partition_key FROM collections"))
    )


def _create(name: str, dimension: int, metric: str, quantization: str, partitioned: bool, *, full: bool) -> None:
    partition = "partition_value text partition key, " if partitioned else ""
    distance = "" if quantization == "binary" else f" distance_metric={_METRICS[metric]}"
    full_column = f"full float[{dimension}], " if full and quantization != "none" else ""
    chunk = 128 if full else 1024
    op.execute(
        f"CREATE VIRTUAL TABLE vec_{name} USING vec0(item_id integer primary key, {partition}"
        f"embedding {_TYPES[quantization]}[{dimension}]{distance}, {full_column}chunk_size={chunk})"
    )


def _check_count(bind: sa.Connection, collection_id: int, name: str) -> None:
    copied = bind.execute(sa.text(f"SELECT count(*) FROM {_COPY}")).scalar_one()
    items = bind.execute(
        sa.text("SELECT count(*) FROM memory_items WHERE collection_id = :id"), {"id": collection_id}
    ).scalar_one()
    if copied != items:
        raise RuntimeError(
            f"collection {name!r}: {copied} vectors to move for {items} items; nothing was changed. "
            "Run `neuraltrade memory check` to find the items without a vector"
        )


def _add_written_version() -> None:
    # After `memory_vectors` is gone: were SQLite's batch mode to rebuild `memory_items`, dropping the old
    # table would cascade to the vectors' rows.
    with op.batch_alter_table("memory_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("written_version", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_index(
            batch_op.f("ix_memory_items_collection_id_written_version"),
            ["collection_id", "written_version"],
            unique=False,
        )
    op.execute(
        "UPDATE memory_items SET written_version = "
        "(SELECT version FROM collections WHERE collections.id = memory_items.collection_id)"
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        _add_written_version()
        return
    for collection_id, name, dimension, metric, quantization, partition_key in _collections(bind):
        partitioned = partition_key is not None
        part = "v.partition_value" if partitioned else "NULL"
        op.execute(
            f"CREATE TABLE {_COPY} AS SELECT v.item_id AS id, {part} AS part, v.embedding AS v, f.vector AS f "
            f"FROM vec_{name} AS v JOIN memory_vectors AS f ON f.id = v.item_id ORDER BY part, id"
        )
        _check_count(bind, collection_id, name)
        op.execute(f"DROP TABLE vec_{name}")
        _create(name, dimension, metric, quantization, partitioned, full=True)
        columns = ["item_id"] + (["partition_value"] if partitioned else []) + ["embedding"]
        values = ["id"] + (["part"] if partitioned else []) + [_WRAPPERS[quantization]]
        if quantization != "none":
            columns.append("full")
            values.append("f")
        op.execute(
            # In the copy's order (grouped by partition): an ORDER BY here would drop the subtype that
            # vec_int8() and vec_bit() give their values, and sqlite-vec would refuse them.
            f"INSERT INTO vec_{name} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {_COPY}"
        )
        op.execute(f"DROP TABLE {_COPY}")
    op.drop_table("memory_vectors")
    _add_written_version()


def downgrade() -> None:
    bind = op.get_bind()
    # First, for the same reason as in `_add_written_version`: `memory_vectors` does not exist yet.
    with op.batch_alter_table("memory_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memory_items_collection_id_written_version"))
        batch_op.drop_column("written_version")
    if bind.dialect.name == "sqlite":
        op.create_table(
            "memory_vectors",
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
            sa.Column("vector", sa.LargeBinary(), nullable=False),
            sa.ForeignKeyConstraint(
                ["id"], ["memory_items.id"], name=op.f("fk_memory_vectors_id_memory_items"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_vectors")),
        )
        for _collection_id, name, dimension, metric, quantization, partition_key in _collections(bind):
            partitioned = partition_key is not None
            part = "partition_value" if partitioned else "NULL"
            full = "embedding" if quantization == "none" else "full"
            op.execute(
                f"CREATE TABLE {_COPY} AS SELECT item_id AS id, {part} AS part, embedding AS v, {full} AS f "
                f"FROM vec_{name} ORDER BY part, id"
            )
            op.execute(f"DROP TABLE vec_{name}")
            _create(name, dimension, metric, quantization, partitioned, full=False)
            columns = ["item_id"] + (["partition_value"] if partitioned else []) + ["embedding"]
            values = ["id"] + (["part"] if partitioned else []) + [_WRAPPERS[quantization]]
            op.execute(f"INSERT INTO vec_{name} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {_COPY}")
            op.execute(f"INSERT INTO memory_vectors (id, vector) SELECT id, f FROM {_COPY}")
            op.execute(f"DROP TABLE {_COPY}")
