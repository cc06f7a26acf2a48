"""Prefect flows: composition only, one flow per module, named verb_noun."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

#: Worker threads per flow: SQLite has one writer at a time, so more threads only queue on its lock.
MAX_WORKERS = 2


def task_runner() -> TaskRunner[Any]:
    """Return the task runner every flow uses: threads, capped at `MAX_WORKERS`."""
    runner: TaskRunner[Any] = ThreadPoolTaskRunner(max_workers=MAX_WORKERS)
    return runner
