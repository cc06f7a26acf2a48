"""Prefect flows: composition only, one flow per module, named verb_noun.

A flow's body calls its tasks through `call` and `call_each`, so the same composition runs two ways:

- as a Prefect flow run (``ingest_bars(...)``: a deployment, a UI trigger, the nightly), where every call
  is a task run with its retries, concurrent on the flow's task runner and visible in the Prefect UI;
- in process, without any Prefect server (``ingest_bars.fn(...)``), where every call is the task's plain
  function, one after another. Small commands of the CLI run this way, so that they answer in seconds
  instead of paying ~10 s for Prefect's temporary server; their runs are still recorded in the
  project's own `run_summaries`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict

from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import Task

#: Worker threads per flow: SQLite has one writer at a time, so more threads only queue on its lock.
MAX_WORKERS = 2

#: Set (to any value) by `neuraltrade serve`: every top-level flow run then prints one line when it
#: starts and one when it ends, on the serving process's terminal (runs inherit its output).
ANNOUNCE_RUNS_VARIABLE = "NEURALTRADE_ANNOUNCE_RUNS"

#: The positional and keyword arguments of one task call.
Arguments = tuple[tuple[Any, ...], dict[str, Any]]


def task_runner() -> TaskRunner[Any]:
    """Return the task runner every flow uses: threads, capped at `MAX_WORKERS`."""
    runner: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=MAX_WORKERS)
    return runner


def in_flow_run() -> bool:
    """Return whether the caller runs inside a Prefect flow run (else: a flow's body called in process)."""
    return FlowRunContext.get() is not None


def call(task: Task[Any, Any], *args: Any, **kwargs: Any) -> Any:
    """Call `task` once: a task run inside a flow run, its plain function outside one."""
    if in_flow_run():
        return task(*args, **kwargs)
    return task.fn(*args, **kwargs)


def call_each(task: Task[Any, Any], calls: Sequence[Arguments]) -> list[Any]:
    """Call `task` once per ``(args, kwargs)`` of `calls`; return each outcome, in order.

    An outcome is the call's result or the exception it raised: one failure never hides the others.
    Inside a flow run the calls are submitted together to the flow's task runner; outside one they run
    one after another. `KeyboardInterrupt` and `SystemExit` are never captured.
    """
    if in_flow_run():
        futures = [task.submit(*args, **kwargs) for args, kwargs in calls]
        return [future.result(raise_on_failure=False) for future in futures]
    outcomes: list[Any] = []
    for args, kwargs in calls:
        try:
            outcomes.append(task.fn(*args, **kwargs))
        except Exception as error:
            outcomes.append(error)
    return outcomes


def results(outcomes: Sequence[Any]) -> list[Any]:
    """Return `outcomes` of `call_each`, raising the first exception among them."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return list(outcomes)


class RunHooks(TypedDict):
    """The state hooks of a flow, as `flow(...)` takes them."""

    on_running: list[Any]
    on_completion: list[Any]
    on_failure: list[Any]
    on_crashed: list[Any]
    on_cancellation: list[Any]


def run_hooks() -> RunHooks:
    """Return the state hooks every flow carries: the start and end lines of `ANNOUNCE_RUNS_VARIABLE`."""
    return {
        "on_running": [_announce],
        "on_completion": [_announce],
        "on_failure": [_announce],
        "on_crashed": [_announce],
        "on_cancellation": [_announce],
    }


def _announce(flow: Any, flow_run: Any, state: Any) -> None:
    if not os.environ.get(ANNOUNCE_RUNS_VARIABLE) or flow_run.parent_task_run_id is not None:
        return
    now = datetime.now(UTC)
    line = f"{now:%Y-%m-%d %H:%M:%S} UTC  {flow.name} run {flow_run.name!r}"
    if state.is_running():
        line += " started"
    else:
        started = flow_run.start_time
        seconds = f" after {(now - started).total_seconds():,.1f} s" if started else ""
        message = f": {state.message.splitlines()[0]}" if state.is_failed() and state.message else ""
        line += f" {state.name.lower()}{seconds}{message}"
    print(line, file=sys.stdout, flush=True)
