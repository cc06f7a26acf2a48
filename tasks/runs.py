"""Tasks that record what each flow run did in `run_summaries`, keyed by the Prefect flow-run id."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from prefect import task
from prefect.runtime import flow_run
from sqlalchemy.orm import Session

from models import run_summaries
from models.engine import create_database_engine, interrupt_statements, session_scope
from neuraltrade.clock import Clock, SystemClock
from tasks.metrics import begin_batch, export_metrics, metrics_path
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient

clock: Clock = SystemClock()

#: Seconds an interrupted command keeps trying to mark its runs cancelled: a worker thread may hold the
#: write lock, and an interrupt must end within seconds.
CANCEL_WAIT_SECONDS = 3.0
#: Seconds one attempt waits for the write lock before the worker's statements are interrupted again.
CANCEL_ATTEMPT_SECONDS = 0.2

#: Runs this process started and has not finished: run id -> database URL.
_unfinished: dict[str, str] = {}
_unfinished_lock = threading.Lock()


def current_run_id() -> uuid.UUID:
    """Return the id of the Prefect flow run in progress, or a fresh id outside of one."""
    run_id = flow_run.get_id()
    return uuid.UUID(str(run_id)) if run_id else uuid.uuid4()


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def start_run(database_url: str, kind: str, config_digest: str, run_id: str) -> str:
    """Record that run `run_id` of `kind` started; return its id."""
    with session_scope(database_url, write=True) as session:
        run_summaries.start_run(
            session, kind=kind, config_digest=config_digest, now=clock.now(), run_id=uuid.UUID(run_id)
        )
    _remember_unfinished(run_id, database_url)
    begin_batch()
    return run_id


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def finish_run(database_url: str, run_id: str, status: str, details: dict[str, Any]) -> None:
    """Record how run `run_id` ended and its figures, then export the metrics (`tasks.metrics`)."""
    with session_scope(database_url, write=True) as session:
        run_summaries.finish_run(session, uuid.UUID(run_id), status=status, details=details, now=clock.now())
    _forget_unfinished(run_id)
    with session_scope(database_url) as session:
        export_metrics(session, metrics_path(database_url))


# The tasks reach this process's registry through functions, never by naming it: Dask ships a task's
# function by value, with the module globals it names (a lock cannot be pickled), while a module's
# function travels by reference and finds the registry of the process it runs in.
def _remember_unfinished(run_id: str, database_url: str) -> None:
    with _unfinished_lock:
        _unfinished[run_id] = database_url


def _forget_unfinished(run_id: str) -> None:
    with _unfinished_lock:
        _unfinished.pop(run_id, None)


def cancel_unfinished(reason: str) -> list[str]:
    """Record every run this process started and did not finish as ``cancelled``; return their ids.

    Called when the command is interrupted, while worker threads may still be writing: until the
    write goes through or `CANCEL_WAIT_SECONDS` pass, it aborts the statements they run (their
    transactions roll back and free the write lock) and tries again. A run it cannot mark stays
    ``running``. A plain function, not a task: it runs while the flow is being torn down.
    """
    with _unfinished_lock:
        pending = dict(_unfinished)
        _unfinished.clear()
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    cancelled: list[str] = []
    for run_id, database_url in pending.items():
        engine = create_database_engine(database_url, busy_timeout_seconds=CANCEL_ATTEMPT_SECONDS)
        try:
            while True:
                interrupt_statements()
                try:
                    with engine.begin() as connection, Session(bind=connection) as session:
                        run_summaries.finish_run(
                            session,
                            uuid.UUID(run_id),
                            status="cancelled",
                            details={"cancelled_by": reason},
                            now=clock.now(),
                        )
                        session.flush()
                except Exception:
                    if time.monotonic() < deadline:
                        continue
                    break  # an interrupt must not end in a traceback; this run stays "running"
                cancelled.append(run_id)
                break
        finally:
            engine.dispose()
    return cancelled
