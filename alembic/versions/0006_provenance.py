"""provenance: the log's origin, its entries, and the records only provenance stores

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-16 09:00:00

New tables only (models/provenance.py); nothing stored before is touched. Records stored before this
revision are not in the log: `neuraltrade init` signs and logs them ("adopts" them) once, and until then
`neuraltrade verify` names them as stored but not logged. Downgrade drops the three tables, and with them
the log and every signature.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_origin",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("origin", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_origin")),
    )
    op.create_table(
        "log_entries",
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("logged_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_log_entries")),
    )
    op.create_index(op.f("ix_log_entries_kind_record_id"), "log_entries", ["kind", "record_id"], unique=False)
    op.create_table(
        "provenance_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provenance_records")),
    )
    op.create_index(op.f("ix_provenance_records_kind"), "provenance_records", ["kind"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_provenance_records_kind"), table_name="provenance_records")
    op.drop_table("provenance_records")
    op.drop_index(op.f("ix_log_entries_kind_record_id"), table_name="log_entries")
    op.drop_table("log_entries")
    op.drop_table("log_origin")
