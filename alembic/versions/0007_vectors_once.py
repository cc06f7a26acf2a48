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

`memory_items` is rebuilt: its rows are keyed by `sequence`, the order they were written in, and the
derived 63-bit item id becomes a unique column. A derived id is a hash, so keyed by it every write of
10,000 items landed on as many random pages of a table holding a million (0.145 s per write in a
million-row table, against 0.065 s in write order, measured). `written_version` is the collection version
of the write that stored the item (the items written after an HNSW graph was sealed are searched exactly
beside it); existing items get their collection's current version.

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


def _item_table(name: str, *, sequenced: bool) -> None:
    """`memory_items` as `sequenced` (this revision: rows in write order, the derived id unique) or not."""
    identity = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    columns = [sa.Column("sequence", identity, autoincrement=True, nullable=False)] if sequenced else []
    op.create_table(
        name,
        *columns,
        sa.Column("id", identity, autoincrement=False, nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("partition", sa.String(length=64), nullable=True),
        sa.Column("observation_id", sa.Uuid(), nullable=True),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("fingerprint_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        *([sa.Column("written_version", sa.BigInteger(), server_default="0", nullable=False)] if sequenced else []),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_memory_items_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_memory_items_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sequence" if sequenced else "id", name=op.f("pk_memory_items")),
        *([sa.UniqueConstraint("id", name=op.f("uq_memory_items_id"))] if sequenced else []),
    )


_ITEM_COLUMNS = "id, collection_id, key, partition, observation_id, timestamp, metadata, fingerprint_digest, created_at"


def _rebuild_items(*, sequenced: bool) -> None:
    """Copy `memory_items` into its other layout: rows grouped as a write stores them (collection,
    partition, time), each with its collection's current version as the version that wrote it."""
    op.drop_index(op.f("ix_memory_items_collection_id_partition_timestamp"), table_name="memory_items")
    op.drop_index(op.f("ix_memory_items_observation_id"), table_name="memory_items")
    if not sequenced:
        op.drop_index(op.f("ix_memory_items_collection_id_written_version"), table_name="memory_items")
    op.rename_table("memory_items", "_memory_items_old")
    if op.get_bind().dialect.name != "sqlite":
        # PostgreSQL names a primary key's or unique constraint's index after it, and index names are
        # unique per schema: the old table's must give theirs up before the new table takes them.
        for constraint in ("pk_memory_items", *(() if sequenced else ("uq_memory_items_id",))):
            op.execute(f"ALTER TABLE _memory_items_old RENAME CONSTRAINT {constraint} TO {constraint}_old")
    _item_table("memory_items", sequenced=sequenced)
    written = (
        ", (SELECT version FROM collections WHERE collections.id = _memory_items_old.collection_id)"
        if sequenced
        else ""
    )
    op.execute(
        f"INSERT INTO memory_items ({_ITEM_COLUMNS}{', written_version' if sequenced else ''}) "
        f"SELECT {_ITEM_COLUMNS}{written} FROM _memory_items_old ORDER BY collection_id, partition, timestamp"
    )
    op.drop_table("_memory_items_old")
    op.create_index(
        op.f("ix_memory_items_collection_id_partition_timestamp"),
        "memory_items",
        ["collection_id", "partition", "timestamp"],
        unique=False,
    )
    op.create_index(op.f("ix_memory_items_observation_id"), "memory_items", ["observation_id"], unique=False)
    if sequenced:
        op.create_index(
            op.f("ix_memory_items_collection_id_written_version"),
            "memory_items",
            ["collection_id", "written_version"],
            unique=False,
        )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        # No vector backend has stored anything in another database yet; a row here would have nowhere
        # to go, so it stops the upgrade rather than being dropped with the table.
        held = bind.execute(sa.text("SELECT count(*) FROM memory_vectors")).scalar_one()
        if held:
            raise RuntimeError(f"memory_vectors holds {held} vectors and this database has no vector tables; nothing was changed")
        op.drop_table("memory_vectors")
        _rebuild_items(sequenced=True)
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
    # After `memory_vectors` is gone: its rows would go with the old item table (ON DELETE CASCADE).
    op.drop_table("memory_vectors")
    _rebuild_items(sequenced=True)


def downgrade() -> None:
    bind = op.get_bind()
    # First, while `memory_vectors` does not exist yet (its rows would go with the old item table).
    _rebuild_items(sequenced=False)
    op.create_table(
        "memory_vectors",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["id"], ["memory_items.id"], name=op.f("fk_memory_vectors_id_memory_items"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_vectors")),
    )
    if bind.dialect.name == "sqlite":
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
