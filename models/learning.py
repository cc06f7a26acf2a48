"""ORM tables of the learning loop: episodes, verdicts, critiques, distillations, patterns, counterfactuals, trials.

Each row keeps its record whole in `record` (the record's canonical JSON, `neuraltrade.records.Record`),
from which `Record.from_canonical` rebuilds it; the other columns copy the fields that queries filter,
join or order on. A record never changes once written (its id is derived from what it says), so rows are
only inserted, never updated (`models.learning_store`).

Foreign keys cascade from the run down: deleting a backtest run deletes its episodes, their verdicts and
critiques, and the run's counterfactuals; deleting a distillation deletes its patterns. A paper trade's
episode and counterfactuals have no run (`run_id` NULL). `trade_id` is a plain column, not a foreign
key: a paper trade's id names no stored backtest trade. Timestamps are aware UTC datetimes stored as
microseconds since the Unix epoch (`models.base.UtcMicroseconds`), as in every other table.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

_RUN_FOREIGN_KEY = "backtest_runs.id"
_EPISODE_FOREIGN_KEY = "episodes.id"


class EpisodeRecord(Base):
    """A closed trade as the learning loop sees it (`neuraltrade.learning.episodes.Episode`).

    `trade_id` is the trade's id (a stored backtest trade's `backtest_trades.id`, or a paper trade's);
    `outcome_known_at` is when its outcome became known, the moment after which it may be read.
    """

    __tablename__ = "episodes"
    __table_args__ = (
        Index(None, "strategy", "outcome_known_at"),
        Index(None, "strategy_id", "outcome_known_at"),
        Index(None, "run_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    trade_id: Mapped[uuid.UUID]
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_RUN_FOREIGN_KEY, ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(128))
    strategy_id: Mapped[str] = mapped_column(Text)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[int] = mapped_column(Integer)
    decision_time: Mapped[datetime]
    outcome_known_at: Mapped[datetime]
    net_return: Mapped[float] = mapped_column(Float)
    record: Mapped[str] = mapped_column(Text)


class VerdictRecord(Base):
    """The judge's verdict on one episode under one judge configuration (`neuraltrade.learning.judge.Verdict`)."""

    __tablename__ = "verdicts"
    __table_args__ = (Index(None, "episode_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    episode_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(_EPISODE_FOREIGN_KEY, ondelete="CASCADE"))
    judge_digest: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float] = mapped_column(Float)
    known_at: Mapped[datetime]
    record: Mapped[str] = mapped_column(Text)


class CritiqueRecord(Base):
    """The structured critique of one episode and verdict (`neuraltrade.learning.reflexion.Critique`);
    `lessons` lists its lesson values, sorted."""

    __tablename__ = "critiques"
    __table_args__ = (Index(None, "episode_id"), Index(None, "verdict_id"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    episode_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(_EPISODE_FOREIGN_KEY, ondelete="CASCADE"))
    verdict_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("verdicts.id", ondelete="CASCADE"))
    config_digest: Mapped[str] = mapped_column(String(64))
    lessons: Mapped[list[str]] = mapped_column(JSON)
    known_at: Mapped[datetime]
    record: Mapped[str] = mapped_column(Text)


class DistillationRecord(Base):
    """One distillation of a strategy's episodes as of `as_of` (`neuraltrade.learning.patterns.Distillation`)."""

    __tablename__ = "distillations"
    __table_args__ = (Index(None, "strategy", "as_of"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    strategy: Mapped[str] = mapped_column(String(128))
    as_of: Mapped[datetime]
    config_digest: Mapped[str] = mapped_column(String(64))
    record: Mapped[str] = mapped_column(Text)


class PatternRecord(Base):
    """One pattern a distillation found (`neuraltrade.learning.patterns.Pattern`); `rank` 1 is the best."""

    __tablename__ = "patterns"
    __table_args__ = (Index(None, "distillation_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    distillation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("distillations.id", ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(128))
    side: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    interval_low: Mapped[float] = mapped_column(Float)
    record: Mapped[str] = mapped_column(Text)


class CounterfactualRecord(Base):
    """The regret of one trade against one simulated alternative
    (`neuraltrade.learning.counterfactual.Counterfactual`)."""

    __tablename__ = "counterfactuals"
    __table_args__ = (Index(None, "run_id"), Index(None, "trade_id"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(_RUN_FOREIGN_KEY, ondelete="CASCADE"))
    trade_id: Mapped[uuid.UUID]
    alternative: Mapped[str] = mapped_column(String(64))
    regret: Mapped[float] = mapped_column(Float)
    record: Mapped[str] = mapped_column(Text)


class TrialRecord(Base):
    """One evaluated variant with its out-of-sample daily returns (`neuraltrade.research.trials.Trial`)."""

    __tablename__ = "trials"
    __table_args__ = (Index(None, "family"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    family: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(128))
    strategy: Mapped[str] = mapped_column(String(128))
    record: Mapped[str] = mapped_column(Text)
