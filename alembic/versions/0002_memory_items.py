"""vector memory: generic items, quantization, partition key, collection versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 09:10:00

`embeddings` (market states only) becomes `memory_items`: any item of a collection, with a key and
metadata; `memory_vectors` keeps every item's full-precision vector (for exact filtered search and
re-scoring of quantized candidates). Existing rows keep their ids
(an item whose key is a UUID keeps the id the market-state embedding had), their key is the observation
id and their metadata {"symbol", "observation_id"}.

Each collection's sqlite-vec table is rebuilt with the new column names (sqlite-vec tables cannot be
renamed or altered), by way of a plain copy table, so no vector is lost. Downgrade keeps the items that
embed an observation and drops the others (the old schema cannot hold them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COPY = "_vector_copy"
_METRICS = {"cosine": "cosine", "l2": "L2", "inner_product": "L2"}


def _collections(bind: sa.Connection) -> list[sa.Row]:
    return list(bind.execute(sa.text("SELECT id, name, dimension, metric FROM collections")))


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quantization", sa.String(length=16), server_default="none", nullable=False))
        batch_op.add_column(sa.Column("index_type", sa.String(length=16), server_default="exact", nullable=False))
        batch_op.add_column(sa.Column("partition_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("int8_scale", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("version", sa.BigInteger(), server_default="0", nullable=False))
    op.execute("UPDATE collections SET partition_key = 'symbol'")

    op.create_table(
        "memory_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("partition", sa.String(length=64), nullable=True),
        sa.Column("observation_id", sa.Uuid(), nullable=True),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("fingerprint_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_items")),
    )
    with op.batch_alter_table("memory_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_memory_items_collection_id_partition_timestamp"),
            ["collection_id", "partition", "timestamp"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_memory_items_observation_id"), ["observation_id"], unique=False)

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
        # SQLAlchemy stores a UUID on SQLite as 32 hex digits; the key is its canonical dashed form.
        key = (
            "lower(substr(observation_id, 1, 8) || '-' || substr(observation_id, 9, 4) || '-' || "
            "substr(observation_id, 13, 4) || '-' || substr(observation_id, 17, 4) || '-' || "
            "substr(observation_id, 21))"
        )
        metadata = f"json_object('observation_id', {key}, 'symbol', symbol)"
    else:
        key = "observation_id::text"
        metadata = f"json_build_object('observation_id', {key}, 'symbol', symbol)"
    op.execute(
        "INSERT INTO memory_items (id, collection_id, key, partition, observation_id, timestamp, metadata, "
        "fingerprint_digest, created_at) "
        f"SELECT id, collection_id, {key}, symbol, observation_id, timestamp, {metadata}, "
        "fingerprint_digest, created_at FROM embeddings"
    )
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_embeddings_collection_id_symbol_timestamp"))
    op.drop_table("embeddings")

    if bind.dialect.name != "sqlite":
        return
    for _collection_id, name, dimension, metric in _collections(bind):
        op.execute(f"CREATE TABLE {_COPY} AS SELECT embedding_id AS id, symbol AS part, embedding AS v FROM vec_{name}")
        op.execute(f"DROP TABLE vec_{name}")
        op.execute(
            f"CREATE VIRTUAL TABLE vec_{name} USING vec0(item_id integer primary key, "
            f"partition_value text partition key, embedding float[{dimension}] "
            f"distance_metric={_METRICS[metric]}, chunk_size=1024)"
        )
        op.execute(
            f"INSERT INTO vec_{name} (item_id, partition_value, embedding) SELECT id, part, v FROM {_COPY} ORDER BY part"
        )
        op.execute(f"INSERT INTO memory_vectors (id, vector) SELECT id, v FROM {_COPY}")
        op.execute(f"DROP TABLE {_COPY}")


def downgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "embeddings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_embeddings_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_embeddings_observation_id_observations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embeddings")),
        sa.UniqueConstraint("collection_id", "observation_id", name=op.f("uq_embeddings_collection_id_observation_id")),
    )
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_embeddings_collection_id_symbol_timestamp"),
            ["collection_id", "symbol", "timestamp"],
            unique=False,
        )
    op.execute(
        "INSERT INTO embeddings (id, collection_id, observation_id, symbol, timestamp, fingerprint_digest, "
        "created_at) SELECT id, collection_id, observation_id, partition, timestamp, fingerprint_digest, "
        "created_at FROM memory_items WHERE observation_id IS NOT NULL AND partition IS NOT NULL"
    )
    if bind.dialect.name == "sqlite":
        for collection_id, name, dimension, metric in _collections(bind):
            op.execute(f"CREATE TABLE {_COPY} AS SELECT id, vector AS v FROM memory_vectors")
            op.execute(f"DROP TABLE vec_{name}")
            op.execute(
                f"CREATE VIRTUAL TABLE vec_{name} USING vec0(embedding_id integer primary key, "
                f"symbol text partition key, embedding float[{dimension}] "
                f"distance_metric={_METRICS[metric]}, chunk_size=1024)"
            )
            op.execute(
                f"INSERT INTO vec_{name} (embedding_id, symbol, embedding) SELECT e.id, e.symbol, c.v "
                f"FROM {_COPY} c JOIN embeddings e ON e.id = c.id WHERE e.collection_id = {int(collection_id)} "
                "ORDER BY e.symbol"
            )
            op.execute(f"DROP TABLE {_COPY}")
    op.drop_table("memory_vectors")
    with op.batch_alter_table("memory_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memory_items_observation_id"))
        batch_op.drop_index(batch_op.f("ix_memory_items_collection_id_partition_timestamp"))
    op.drop_table("memory_items")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch operation would copy and drop the
    # collections table, and dropping it cascades to every embedding row.
    for column in ("version", "int8_scale", "partition_key", "index_type", "quantization"):
        op.drop_column("collections", column)
