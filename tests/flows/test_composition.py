"""Specification of the flows' composition helpers (`flows.call`, `flows.call_each`, `flows.run_hooks`).

One flow body runs two ways: as a Prefect flow run (task runs, concurrent) and in process through
``flow.fn`` (plain calls, one after another), with the same outcomes.
"""

from __future__ import annotations

import pytest
from prefect import flow, task

from flows import ANNOUNCE_RUNS_VARIABLE, call, call_each, in_flow_run, results, run_hooks


@task
def halve(number: int) -> float:
    if number < 0:
        raise ValueError(f"cannot halve {number}")
    return number / 2


@flow(**run_hooks())
def halve_all(numbers: list[int]) -> dict[str, object]:
    outcomes = call_each(halve, [((number,), {}) for number in numbers])
    return {
        "inside": in_flow_run(),
        "first": call(halve, numbers[0]),
        "outcomes": [str(outcome) if isinstance(outcome, BaseException) else outcome for outcome in outcomes],
    }


EXPECTED_OUTCOMES = [1.0, "cannot halve -2", 3.0]


def test_a_flow_body_called_in_process_calls_its_tasks_as_plain_functions() -> None:
    # No Prefect server is reachable in the suite outside the harness: a task run would fail at once.
    summary = halve_all.fn([2, -2, 6])

    assert summary == {"inside": False, "first": 1.0, "outcomes": EXPECTED_OUTCOMES}


def test_a_flow_run_gives_the_same_outcomes_through_task_runs(prefect_harness: None) -> None:
    summary = halve_all([2, -2, 6])

    assert summary == {"inside": True, "first": 1.0, "outcomes": EXPECTED_OUTCOMES}


def test_results_raise_the_first_failure_and_pass_the_rest() -> None:
    assert results([1, 2]) == [1, 2]
    with pytest.raises(ValueError, match="first"):
        results([1, ValueError("first"), KeyError("second")])


def test_a_served_flow_run_says_when_it_starts_and_ends(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ANNOUNCE_RUNS_VARIABLE, "1")

    halve_all([4])

    lines = [line for line in capsys.readouterr().out.splitlines() if "halve-all run" in line]
    assert len(lines) == 2
    assert lines[0].endswith(" started")
    assert " completed after " in lines[1]


def test_a_flow_run_outside_serve_prints_nothing(prefect_harness: None, capsys: pytest.CaptureFixture[str]) -> None:
    halve_all([4])

    assert "halve-all run" not in capsys.readouterr().out
