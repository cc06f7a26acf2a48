"""vector memory: vector rows keyed by their item row's sequence

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 03:00:00

Each collection's sqlite-vec table was keyed by the derived 63-bit item id, a hash: every write of
10,000 vectors inserted as many rowids at random places of the table's rowid index, dirtying nearly
every page of it, so the commit wrote the whole index again once the collection grew (measured on this
machine, one million 512-d vectors in writes of 10,000 over 50 partitions: 42,408 rows/s keyed by hash,
51,813/s keyed in write order). The rows are now keyed by `memory_items.sequence` (column
``item_sequence``), which only grows, so each write appends.

Each vector table is rebuilt (sqlite-vec tables cannot be altered) by way of a plain copy table, grouped
by partition. The copy must hold every vector of the table, each matched to its item row, before anything
is dropped, so no vector is lost. PostgreSQL has no vector tables yet: nothing to do there.

Downgrade keys the rows by item id again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COPY = "_vector_copy"
_METRICS = {"cosine": "cosine", "l2": "L2", "inner_product": "L2"}
_TYPES = {"none": "float", "int8": "int8", "binary": "bit"}
_WRAPPERS = {"none": "v", "int8": "vec_int8(v)", "binary": "vec_bit(v)"}


def _rekey(bind: sa.Connection, *, by_sequence: bool) -> None:
    """Rebuild every collection's vector table keyed by item sequence (`by_sequence`) or by item id."""
    old_key, new_key = ("item_id", "item_sequence") if by_sequence else ("item_sequence", "item_id")
    # The item row each vector belongs to, matched on the old key; the new key read from it.
    old_match, new_value = ("m.id", "m.sequence") if by_sequence else ("m.sequence", "m.id")
    collections = bind.execute(
        sa.text("SELECT name, dimension, metric, quantization, partition_key FROM collections")
    ).all()
    for name, dimension, metric, quantization, partition_key in collections:
        partitioned = partition_key is not None
        part = "v.partition_value" if partitioned else "NULL"
        full = "NULL" if quantization == "none" else "v.full"
        op.execute(
            f"CREATE TABLE {_COPY} AS SELECT {new_value} AS id, {part} AS part, v.embedding AS v, {full} AS f "
            f"FROM vec_{name} AS v JOIN memory_items AS m ON {old_match} = v.{old_key} ORDER BY part, id"
        )
        copied = bind.execute(sa.text(f"SELECT count(*) FROM {_COPY}")).scalar_one()
        stored = bind.execute(sa.text(f"SELECT count(*) FROM vec_{name}")).scalar_one()
        if copied != stored:
            raise RuntimeError(
                f"collection {name!r}: {stored} vectors in vec_{name} but only {copied} match an item row; "
                "nothing was changed. Run `neuraltrade memory check` to find the vectors without an item"
            )
        op.execute(f"DROP TABLE vec_{name}")
        partition = "partition_value text partition key, " if partitioned else ""
        distance = "" if quantization == "binary" else f" distance_metric={_METRICS[metric]}"
        full_column = "" if quantization == "none" else f"full float[{dimension}], "
        op.execute(
            f"CREATE VIRTUAL TABLE vec_{name} USING vec0({new_key} integer primary key, {partition}"
            f"embedding {_TYPES[quantization]}[{dimension}]{distance}, {full_column}chunk_size=128)"
        )
        columns = [new_key] + (["partition_value"] if partitioned else []) + ["embedding"]
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


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _rekey(bind, by_sequence=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _rekey(bind, by_sequence=False)
