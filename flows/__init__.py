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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict

from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import Task

from neuraltrade.errors import ConfigError
from tasks.metrics import count_failures
from tasks.tracing import configure_tracing

#: Worker threads per flow: SQLite has one writer at a time, so more threads only queue on its lock.
MAX_WORKERS = 2

# Prefect emits its flow and task spans once a tracer provider is set: before any flow runs.
configure_tracing()

#: Which task runner the flows use (`task_runner`), and the Dask scheduler or local worker count.
TASK_RUNNER_VARIABLE = "NEURALTRADE_TASK_RUNNER"
DASK_ADDRESS_VARIABLE = "NEURALTRADE_DASK_ADDRESS"
DASK_WORKERS_VARIABLE = "NEURALTRADE_DASK_WORKERS"
#: Worker processes of a local Dask cluster when none is named.
DASK_WORKERS = 2

#: Set (to any value) by `neuraltrade serve`: every top-level flow run then prints one line when it
#: starts and one when it ends, on the serving process's terminal (runs inherit its output).
ANNOUNCE_RUNS_VARIABLE = "NEURALTRADE_ANNOUNCE_RUNS"

#: The positional and keyword arguments of one task call.
Arguments = tuple[tuple[Any, ...], dict[str, Any]]


def task_runner(environment: Mapping[str, str] | None = None) -> TaskRunner[Any]:
    """Return the task runner every flow uses, as `environment` (default: this process's) configures it.

    ``NEURALTRADE_TASK_RUNNER`` is ``threads`` (the default: `MAX_WORKERS` threads) or ``dask``: Prefect's
    `DaskTaskRunner` (extra ``dask``), on the scheduler ``NEURALTRADE_DASK_ADDRESS`` names
    (``tcp://host:8786``: a cluster of several machines), else on a local cluster of
    ``NEURALTRADE_DASK_WORKERS`` worker processes (default 2) that lives as long as the flow run. Flows
    read it when they are imported, so it is set before a process starts.

    Raises
    ------
    ConfigError
        If the runner is neither, the worker count is not a positive integer, or prefect-dask is missing.
    """
    environment = os.environ if environment is None else environment
    kind = environment.get(TASK_RUNNER_VARIABLE, "threads").strip().lower() or "threads"
    if kind == "threads":
        runner: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=MAX_WORKERS)
        return runner
    if kind != "dask":
        raise ConfigError(f"{TASK_RUNNER_VARIABLE}={kind!r} is not a task runner: use threads or dask")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:
        raise ConfigError(
            f"{TASK_RUNNER_VARIABLE}=dask needs prefect-dask: pip install 'neuraltrade[dask]' ({error})"
        ) from error
    address = environment.get(DASK_ADDRESS_VARIABLE, "").strip()
    if address:
        return DaskTaskRunner(address=address)
    workers = environment.get(DASK_WORKERS_VARIABLE, str(DASK_WORKERS)).strip()
    # isdecimal, not isdigit: '²' is a digit that int() refuses.
    if not workers.isdecimal() or int(workers) < 1:
        raise ConfigError(f"{DASK_WORKERS_VARIABLE}={workers!r} is not a positive number of worker processes")
    # One thread per worker process: the tasks are numpy and database work that holds the GIL between
    # calls, and processes are what Dask adds over the thread runner.
    return DaskTaskRunner(cluster_kwargs={"n_workers": int(workers), "processes": True, "threads_per_worker": 1})


def in_flow_run() -> bool:
    """Return whether the caller runs inside a Prefect flow run (else: a flow's body called in process)."""
    return FlowRunContext.get() is not None


def call(task: Task[Any, Any], *args: Any, **kwargs: Any) -> Any:
    """Call `task` once: a task run inside a flow run, its plain function outside one."""
    try:
        if in_flow_run():
            return task(*args, **kwargs)
        return task.fn(*args, **kwargs)
    except Exception:
        count_failures(task.name, 1)
        raise


def call_each(task: Task[Any, Any], calls: Sequence[Arguments]) -> list[Any]:
    """Call `task` once per ``(args, kwargs)`` of `calls`; return each outcome, in order.

    An outcome is the call's result or the exception it raised: one failure never hides the others.
    Inside a flow run the calls are submitted together to the flow's task runner; outside one they run
    one after another. `KeyboardInterrupt` and `SystemExit` are never captured.
    """
    outcomes: list[Any] = []
    if in_flow_run():
        futures = [task.submit(*args, **kwargs) for args, kwargs in calls]
        outcomes = [future.result(raise_on_failure=False) for future in futures]
    else:
        for args, kwargs in calls:
            try:
                outcomes.append(task.fn(*args, **kwargs))
            except Exception as error:
                outcomes.append(error)
    count_failures(task.name, sum(isinstance(outcome, BaseException) for outcome in outcomes))
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
