"""Tasks that record what each flow run did in `run_summaries`, keyed by the Prefect flow-run id."""

from __future__ import annotations

import uuid
from typing import Any

from prefect import task
from prefect.runtime import flow_run

from models import repositories
from models.engine import session_scope
from neuraltrade.clock import Clock, SystemClock
from tasks.metrics import export_metrics, metrics_path
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient

clock: Clock = SystemClock()


def current_run_id() -> uuid.UUID:
    """Return the id of the Prefect flow run in progress, or a fresh id outside of one."""
    run_id = flow_run.get_id()
    return uuid.UUID(str(run_id)) if run_id else uuid.uuid4()


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def start_run(database_url: str, kind: str, config_digest: str, run_id: str) -> str:
    """Record that run `run_id` of `kind` started; return its id."""
    with session_scope(database_url, write=True) as session:
        repositories.start_run(
            session, kind=kind, config_digest=config_digest, now=clock.now(), run_id=uuid.UUID(run_id)
        )
    return run_id


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def finish_run(database_url: str, run_id: str, status: str, details: dict[str, Any]) -> None:
    """Record how run `run_id` ended and its figures, then export the metrics (`tasks.metrics`)."""
    with session_scope(database_url, write=True) as session:
        repositories.finish_run(session, uuid.UUID(run_id), status=status, details=details, now=clock.now())
    with session_scope(database_url) as session:
        export_metrics(session, metrics_path(database_url))
