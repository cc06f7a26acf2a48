"""vector memory: a token for every write to a collection

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00

An HNSW graph file records the collection version it was sealed at. A version number alone does not name
a database state: a database restored from an older backup and written to again reaches the graph's
version with other items, and the graph would pass for fresh. Each write now stores a random token beside
its version (`collection_versions`); a graph file records the token of its version and is used only when
the database holds the same token at that version (issue 14, point 5).

Existing collections get a token for their current version. Graph files written before this revision
record no token and are checked by version alone, as before, until their next seal.

Downgrade drops the table.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    versions = op.create_table(
        "collection_versions",
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_versions_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("collection_id", "version", name=op.f("pk_collection_versions")),
    )
    bind = op.get_bind()
    written = bind.execute(sa.text("SELECT id, version FROM collections WHERE version > 0")).all()
    if written:
        op.bulk_insert(
            versions,
            [
                {"collection_id": identifier, "version": version, "token": uuid.uuid4().hex}
                for identifier, version in written
            ],
        )


def downgrade() -> None:
    op.drop_table("collection_versions")
