"""learning loop: episodes, verdicts, critiques, distillations, patterns, counterfactuals, trials

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09 09:00:00

New tables only (models/learning.py); nothing stored before is touched. Each row holds its record's
canonical JSON in `record` beside the columns queries use. Episodes and counterfactuals belong to a
backtest run (NULL for a paper trade) and go with it (ON DELETE CASCADE), verdicts and critiques with
their episode, patterns with their distillation. Timestamps are BIGINT microseconds since the Unix epoch
(models.base.UtcMicroseconds). Downgrade drops the seven tables with everything they hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _cascade(table: str, column: str, parent: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{parent}.id"], name=op.f(f"fk_{table}_{column}_{parent}"), ondelete="CASCADE"
    )


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns), unique=False)


def upgrade() -> None:
    op.create_table(
        "episodes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("trade_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("strategy", sa.String(length=128), nullable=False),
        sa.Column("strategy_id", sa.Text(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.Integer(), nullable=False),
        sa.Column("decision_time", sa.BigInteger(), nullable=False),
        sa.Column("outcome_known_at", sa.BigInteger(), nullable=False),
        sa.Column("net_return", sa.Float(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        _cascade("episodes", "run_id", "backtest_runs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
    )
    _index("episodes", "strategy", "outcome_known_at")
    _index("episodes", "strategy_id", "outcome_known_at")
    _index("episodes", "run_id")

    op.create_table(
        "verdicts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("episode_id", sa.Uuid(), nullable=False),
        sa.Column("judge_digest", sa.String(length=64), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("known_at", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        _cascade("verdicts", "episode_id", "episodes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verdicts")),
    )
    _index("verdicts", "episode_id")

    op.create_table(
        "critiques",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("episode_id", sa.Uuid(), nullable=False),
        sa.Column("verdict_id", sa.Uuid(), nullable=False),
        sa.Column("config_digest", sa.String(length=64), nullable=False),
        sa.Column("lessons", sa.JSON(), nullable=False),
        sa.Column("known_at", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        _cascade("critiques", "episode_id", "episodes"),
        _cascade("critiques", "verdict_id", "verdicts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_critiques")),
    )
    _index("critiques", "episode_id")
    _index("critiques", "verdict_id")

    op.create_table(
        "distillations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("strategy", sa.String(length=128), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.Column("config_digest", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distillations")),
    )
    _index("distillations", "strategy", "as_of")

    op.create_table(
        "patterns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("distillation_id", sa.Uuid(), nullable=False),
        sa.Column("strategy", sa.String(length=128), nullable=False),
        sa.Column("side", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("interval_low", sa.Float(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        _cascade("patterns", "distillation_id", "distillations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patterns")),
    )
    _index("patterns", "distillation_id")

    op.create_table(
        "counterfactuals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("trade_id", sa.Uuid(), nullable=False),
        sa.Column("alternative", sa.String(length=64), nullable=False),
        sa.Column("regret", sa.Float(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        _cascade("counterfactuals", "run_id", "backtest_runs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_counterfactuals")),
    )
    _index("counterfactuals", "run_id")
    _index("counterfactuals", "trade_id")

    op.create_table(
        "trials",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("family", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=128), nullable=False),
        sa.Column("strategy", sa.String(length=128), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
    )
    _index("trials", "family")


def downgrade() -> None:
    # Children before parents: SQLite enforces the foreign keys here (models.engine), and a parent
    # dropped first would cascade into rows about to be dropped anyway.
    for table, indexes in (
        ("trials", (("family",),)),
        ("counterfactuals", (("trade_id",), ("run_id",))),
        ("patterns", (("distillation_id",),)),
        ("distillations", (("strategy", "as_of"),)),
        ("critiques", (("verdict_id",), ("episode_id",))),
        ("verdicts", (("episode_id",),)),
        ("episodes", (("run_id",), ("strategy_id", "outcome_known_at"), ("strategy", "outcome_known_at"))),
    ):
        for columns in indexes:
            op.drop_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table_name=table)
        op.drop_table(table)
