"""Specification of the trial registry: `neuraltrade.research.trials`."""

from __future__ import annotations

import numpy as np
import pytest

from neuraltrade.errors import ValidationError
from neuraltrade.records import Record
from neuraltrade.research.trials import Trial, TrialRegistry

DAY_US = 86_400_000_000
START_US = 1_577_836_800_000_000


def trial(variant: str = "gated", returns: tuple[float, ...] = (0.01, -0.02, 0.005), **parameters: object) -> Trial:
    return Trial.create(
        family="memory_gate_walk_forward",
        variant=variant,
        strategy="sma_cross",
        parameters=parameters or {"veto_below": 0.45, "k": 10},
        symbols=("NVDA", "ORCL"),
        timestamps=[START_US + day * DAY_US for day in range(len(returns))],
        returns=returns,
    )


def test_a_trial_reads_back_from_its_canonical_form() -> None:
    original = trial(returns=(0.0, 2.0, -0.5, 1e-9))

    again = Trial.from_canonical(original.canonical_bytes())

    assert again == original
    assert again.canonical_bytes() == original.canonical_bytes()
    assert all(isinstance(value, float) for value in again.returns)
    assert isinstance(Record.from_canonical.__func__(Trial, original.to_json()), Trial)  # type: ignore[attr-defined]


def test_the_id_names_what_was_tried_not_what_it_earned() -> None:
    assert trial().id == trial(returns=(0.5, 0.5, 0.5)).id
    assert trial().id != trial(variant="equity_filter").id
    assert trial().id != trial(veto_below=0.5, k=10).id
    assert trial().id == Trial.id_for(
        "memory_gate_walk_forward", "gated", "sma_cross", {"k": 10, "veto_below": 0.45}, ["NVDA", "ORCL"]
    )


def test_a_trial_refuses_unpaired_unordered_or_non_finite_returns() -> None:
    with pytest.raises(ValidationError, match="timestamps but"):
        Trial.create(
            family="f", variant="v", strategy="s", parameters={}, symbols=("A",), timestamps=[1, 2], returns=[0.1]
        )
    with pytest.raises(ValidationError, match="strictly increasing"):
        Trial.create(
            family="f", variant="v", strategy="s", parameters={}, symbols=("A",), timestamps=[2, 1], returns=[0.1, 0.2]
        )
    with pytest.raises(ValidationError, match="non-finite"):
        Trial.create(
            family="f", variant="v", strategy="s", parameters={}, symbols=("A",), timestamps=[1], returns=[float("nan")]
        )
    with pytest.raises(ValidationError, match="symbols"):
        Trial.create(family="f", variant="v", strategy="s", parameters={}, symbols=(), timestamps=[1], returns=[0.1])


def test_the_registry_keeps_one_trial_per_id_in_order_and_refuses_a_second_series() -> None:
    registry = TrialRegistry()
    first, second = trial(), trial(variant="knn_vote")

    registry.add(first)
    registry.add(second)
    registry.add(trial())  # the same trial again changes nothing

    assert registry.trials() == (first, second)
    assert registry.trials(variant="knn_vote") == (second,)
    assert len(registry) == 2 and first.id in registry
    with pytest.raises(ValidationError, match="already registered"):
        registry.add(trial(returns=(0.3, 0.2, 0.1)))


def test_the_returns_matrix_lines_trials_up_by_day() -> None:
    early = trial(returns=(0.01, 0.02))
    late = Trial.create(
        family="f", variant="ungated", strategy="sma_cross", parameters={}, symbols=("NVDA",),
        timestamps=[START_US + DAY_US, START_US + 2 * DAY_US], returns=[0.03, 0.04],
    )  # fmt: skip
    registry = TrialRegistry([early, late])

    stamps, matrix = registry.returns_matrix()

    np.testing.assert_array_equal(stamps, [START_US, START_US + DAY_US, START_US + 2 * DAY_US])
    np.testing.assert_array_equal(matrix, [[0.01, np.nan], [0.02, 0.03], [np.nan, 0.04]])


def test_sharpe_ratios_are_per_day_unless_annualised() -> None:
    registry = TrialRegistry([trial()])
    returns = np.array([0.01, -0.02, 0.005])

    assert registry.sharpe_ratios()[0] == pytest.approx(returns.mean() / returns.std(ddof=1))
    assert registry.trials()[0].sharpe_ratio() == pytest.approx(returns.mean() / returns.std(ddof=1) * np.sqrt(252))
    assert registry.to_plain()[0]["kind"] == "trial"


def test_a_walk_forward_trial_counts_one_return_per_day_whatever_the_bars() -> None:
    from neuraltrade.research.trials import WALK_FORWARD_FAMILY, walk_forward_trial

    day = 86_400_000_000
    # Three bars on day 10 (intraday), one on day 11, two on day 13.
    moments = np.array([10 * day + 1, 10 * day + 2, 10 * day + 3, 11 * day, 13 * day + 5, 13 * day + 9])
    equity = np.array([101.0, 99.0, 102.0, 102.0, 100.0, 105.0])
    trial = walk_forward_trial(
        strategy="sma_cross", symbols=["A"], timestamps=moments, equity=equity, starting_equity=100.0, parameters={}
    )
    assert trial.family == WALK_FORWARD_FAMILY and trial.timestamps == (10 * day + 3, 11 * day, 13 * day + 9)
    np.testing.assert_allclose(trial.returns, [0.02, 0.0, 105.0 / 102.0 - 1.0])
