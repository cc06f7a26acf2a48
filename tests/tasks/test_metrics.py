"""Specification of what a batch run measures in its own process (`tasks.metrics`): search latency by
collection, task failures and retries; each run starts from zero."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task
from sqlalchemy.exc import OperationalError

from flows import call_each
from models.vector_store import VectorDB
from neuraltrade.memory.collection import Query
from tasks import metrics
from tasks.retry import is_transient


def sample(name: str, labels: dict[str, str]) -> float | None:
    return metrics.current_batch().registry.get_sample_value(name, labels)


def test_searches_are_timed_by_collection_and_a_new_batch_starts_from_zero(database_url: str) -> None:
    metrics.begin_batch()
    db = VectorDB(8, name="timed", database_url=database_url)
    db.insert_many(["a", "b"], np.eye(2, 8, dtype=np.float32), [{"symbol": "A"}] * 2)

    for _ in range(3):
        db.search(Query(np.ones(8, dtype=np.float32), k=1))
    counted = sample("neuraltrade_memory_search_seconds_count", {"collection": "timed"})
    seconds = sample("neuraltrade_memory_search_seconds_sum", {"collection": "timed"})
    metrics.begin_batch()

    assert counted == 3 and seconds is not None and seconds > 0
    assert sample("neuraltrade_memory_search_seconds_count", {"collection": "timed"}) is None


@task
def halve(value: int) -> float:
    if value % 2:
        raise ValueError(f"{value} is odd")
    return value / 2


class _FailedState:
    def __init__(self, error: BaseException) -> None:
        self._error = error

    def result(self, raise_on_failure: bool = True) -> Any:
        return self._error


def test_failed_task_calls_and_retries_are_counted_by_task() -> None:
    metrics.begin_batch()

    outcomes = call_each(halve, [((value,), {}) for value in (1, 2, 3)])
    locked = OperationalError("INSERT", {}, Exception("database is locked"))
    retried = is_transient(halve, None, _FailedState(locked))
    not_retried = is_transient(halve, None, _FailedState(ValueError("bad input")))

    assert [type(outcome) for outcome in outcomes] == [ValueError, float, ValueError]
    assert sample("neuraltrade_task_failures_total", {"task": "halve"}) == 2
    assert (retried, not_retried) == (True, False)
    assert sample("neuraltrade_task_retries_total", {"task": "halve"}) == 1
