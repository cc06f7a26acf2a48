"""Support of the crash-recovery trials (`tests/flows/test_recovery.py`): flows run in processes that can
be killed, and database states that can be copied.

A flow runs in a child forked from a fork server that imported the flows once (importing them costs
seconds; a fork, milliseconds). The fork server has no thread when it forks, so the child starts clean.
The child reports to the session's Prefect test server, and kills itself at a named point
(`models.kill_points`) when asked, or is killed by the test at a random moment.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

from models.collections import INDEX_FOLDER_VARIABLE
from models.kill_points import KILL_POINT_VARIABLE
from tasks.provenance import CHECKPOINT_DIRECTORY_VARIABLE

#: A named-point value that is never reached: the child counts the points it passes and reports them.
COUNT_ONLY = "commit:1000000000"
#: The modules the fork server imports once: every flow a trial runs.
FLOW_MODULES = ("ingest_bars", "embed_observations", "maintain_index", "run_backtests", "distill_reflexions")
#: Longest a flow of the trials may take, on a loaded two-core machine.
FLOW_SECONDS = 300.0


def fork_server() -> ForkServerContext:
    """The fork server context, its server importing every flow of the trials before its first fork."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.crash_trials", *(f"flows.{name}" for name in FLOW_MODULES)])
    return context


def run_flow(
    name: str,
    arguments: Mapping[str, Any],
    environment: Mapping[str, str],
    api_url: str,
    report: str,
) -> None:
    """Run flow `name` of `flows` (in the child); write how often each kill point was reached to `report`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from models import kill_points

    for variable in (KILL_POINT_VARIABLE, INDEX_FOLDER_VARIABLE, CHECKPOINT_DIRECTORY_VARIABLE):
        os.environ.pop(variable, None)
    os.environ.update(environment)
    flow = getattr(importlib.import_module(f"flows.{name}"), name)
    with temporary_settings({PREFECT_API_URL: api_url}):
        flow(**arguments)
    Path(report).write_text(json.dumps(kill_points.reached_points()), encoding="utf-8")


@dataclass
class Outcome:
    """How a child ended: its exit code (negative: the signal that killed it) and seconds it ran."""

    exit_code: int
    seconds: float
    reached: dict[str, int] = field(default_factory=dict)

    @property
    def killed(self) -> bool:
        return self.exit_code == -signal.SIGKILL


def start_and_end(
    context: ForkServerContext,
    name: str,
    arguments: Mapping[str, Any],
    environment: Mapping[str, str],
    api_url: str,
    folder: Path,
    *,
    kill_after: float | None = None,
) -> Outcome:
    """Run flow `name` in a child; kill it with SIGKILL after `kill_after` seconds if it is still running."""
    report = folder / f"reached-{time.monotonic_ns()}.json"
    child = context.Process(target=run_flow, args=(name, dict(arguments), dict(environment), api_url, str(report)))
    started = time.monotonic()
    child.start()
    child.join(kill_after if kill_after is not None else FLOW_SECONDS)
    if child.is_alive():
        child.kill()
        child.join(FLOW_SECONDS)
    seconds = time.monotonic() - started
    reached = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    report.unlink(missing_ok=True)
    assert child.exitcode is not None, f"flow {name} did not end"
    return Outcome(exit_code=child.exitcode, seconds=seconds, reached=reached)


def copy_folder(source: Path, target: Path) -> None:
    """Copy a state's folder (a SQLite file with its index files and checkpoints, or a server database's
    index files and checkpoints)."""
    shutil.copytree(source, target)
