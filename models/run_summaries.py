"""Run summaries (what each flow or command run did) and the row count of every table.

What `neuraltrade status` and the metrics export read. Kept apart from `models.repositories`, whose
bar upserts need pandas, so that the status command answers without importing it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import Base
from models.tables import RunSummary
from neuraltrade.errors import StorageError


def start_run(session: Session, *, kind: str, config_digest: str, now: datetime, run_id: uuid.UUID) -> uuid.UUID:
    """Record that a run of `kind` started; return its id."""
    session.merge(
        RunSummary(id=run_id, kind=kind, status="running", config_digest=config_digest, started_at=now, details={})
    )
    session.flush()
    return run_id


def finish_run(session: Session, run_id: uuid.UUID, *, status: str, details: dict[str, Any], now: datetime) -> None:
    """Record how run `run_id` ended and what it did."""
    run = session.get(RunSummary, run_id)
    if run is None:
        raise StorageError(f"run {run_id} was never started")
    run.status = status
    run.details = details
    run.finished_at = now


def last_runs(session: Session, limit: int = 10) -> list[RunSummary]:
    """Return the `limit` most recent runs, newest first."""
    return list(session.scalars(select(RunSummary).order_by(RunSummary.started_at.desc()).limit(limit)))


def latest_runs_by_kind(session: Session) -> list[RunSummary]:
    """Return the most recent run of every kind."""
    newest = (
        select(RunSummary.kind, func.max(RunSummary.started_at).label("started_at"))
        .group_by(RunSummary.kind)
        .subquery()
    )
    query = select(RunSummary).join(
        newest, (RunSummary.kind == newest.c.kind) & (RunSummary.started_at == newest.c.started_at)
    )
    return list(session.scalars(query.order_by(RunSummary.kind)))


def table_counts(session: Session) -> dict[str, int]:
    """Return the number of rows of every table the models define, by table name."""
    return {
        table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
        for table in Base.metadata.sorted_tables
    }
