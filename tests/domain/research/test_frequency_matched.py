"""Protocol v2 of the memory study at a small size (docs/learning.md, section 5): the gate against random vetoes
of as many of the base's entries per fold.

The random-veto benchmark vetoes the stated share of entries in each fold, the same ones for the same seed.
The controls run on the small market of `test_memory_controls.py` (two symbols, 1,500 bars, seed 7, `sma_cross`,
the control gate), but **with** the bench's 0.1 % commission, where trading less pays by itself and v1's
gated-minus-ungated comparison cannot tell a memory from a coin: against its frequency-matched benchmark a
leaking memory must still come out significant, and a shuffled one must not in at least 19 of 20 seeds.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

import numpy as np
import pytest

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.retrieval import LearningMemory
from neuraltrade.research.baselines import RandomVeto, RandomVetoConfig, entry_bars, random_vetoes
from neuraltrade.research.frequency_matched import (
    control_verdict,
    frequency_matched_test,
    median_draw,
    permutation_p_value,
    random_veto_returns,
    selected_vetoes,
    veto_shares,
)
from neuraltrade.research.memory_study import (
    CONTROL_GATE,
    BaseEvidence,
    base_evidence,
    daily_returns,
    fold_of_bars,
    leaking_memory,
    shuffled_memory,
    single_run,
)
from neuraltrade.research.walk_forward import fold_windows
from neuraltrade.strategies.base import SignalFrame
from neuraltrade.strategies.gated import GatedConfig, gated_class
from neuraltrade.strategies.sma_cross import SmaCross
from tests.domain.research.test_memory_controls import BARS, FIRST_TEST_BAR, REPS, histories

CONFIG = BacktestConfig(commission=0.001, fractional=True)
#: The gate's and the random vetoes' own tests hold them causal; checking again would triple each run's cost.
RUN_CONFIG = replace(CONFIG, verify_causality=False)
LABELS = fold_of_bars(BARS, fold_windows(BARS, train_bars=FIRST_TEST_BAR, test_bars=250))
DRAWS = 9


@cache
def evidence() -> BaseEvidence:
    return base_evidence(SmaCross(), histories(), CONFIG)


def base_frame(symbol: str) -> SignalFrame:
    return evidence().runs[symbol].frames[symbol]


def vetoed_entries(frame: SignalFrame, base: SignalFrame) -> np.ndarray:
    entries = entry_bars(base)
    return entries[frame.features["filter_vetoed"][entries] > 0]


def test_random_vetoes_veto_the_stated_share_of_entries_in_each_fold_the_same_ones_for_the_same_seed() -> None:
    base = base_frame(histories()[0].symbol)
    shares = (0.0, 0.5, 0.25, 1.0, 0.6, 0.0)
    entries = entry_bars(base)

    first = random_vetoes(base, LABELS, shares, seed=(3, 1))
    again = random_vetoes(base, LABELS, shares, seed=(3, 1))
    other = random_vetoes(base, LABELS, shares, seed=(4, 1))

    vetoed = vetoed_entries(first, base)
    assert float(first.features["filter_vetoed"].sum()) == len(vetoed)  # only entries are vetoed
    for fold, share in enumerate(shares):
        in_fold = int(np.sum(LABELS[entries] == fold))
        assert int(np.sum(LABELS[vetoed] == fold)) == int(np.floor(share * in_fold + 0.5)), fold
    assert np.array_equal(vetoed, vetoed_entries(again, base))
    assert np.array_equal(first.target, again.target, equal_nan=True)
    assert not np.array_equal(vetoed, vetoed_entries(other, base))
    strategy = RandomVeto(RandomVetoConfig(base="sma_cross", shares=shares, seed=(3, 1)), SmaCross(), LABELS)
    assert np.array_equal(strategy.signals(histories()[0]).target, first.target, equal_nan=True)


def test_random_vetoes_refuse_shares_outside_the_unit_interval_and_misaligned_folds() -> None:
    base = base_frame(histories()[0].symbol)
    with pytest.raises(ConfigError):
        random_vetoes(base, LABELS, (0.5, 1.5), seed=0)
    with pytest.raises(ValidationError):
        random_vetoes(base, LABELS[:-1], (0.5,), seed=0)


def test_the_veto_shares_of_a_walk_forward_selection_are_those_of_the_combination_chosen_per_fold() -> None:
    base = base_frame(histories()[0].symbol)
    entries = entry_bars(base)
    everything = random_vetoes(base, LABELS, (1.0,) * 6, seed=0)
    nothing = random_vetoes(base, LABELS, (0.0,) * 6, seed=0)

    # As if three test windows (labels 1-3) chose "everything", "nothing", "everything"; label 4 comes after
    # the last of them; label 0, before the first, takes the first fold's choice.
    flags = selected_vetoes([everything, nothing], [0, 1, 0], LABELS, feature="filter_vetoed")

    assert veto_shares(base, flags, LABELS) == (1.0, 1.0, 0.0, 1.0, 0.0)
    assert np.all(flags[entries[LABELS[entries] == 4]] == 0)


def test_the_permutation_p_value_and_the_median_draw() -> None:
    assert permutation_p_value(1.0, [0.0, 0.5, 2.0]) == 0.5
    assert permutation_p_value(3.0, [0.0, 0.5, 2.0]) == 0.25
    assert median_draw([0.3, -1.0, 0.1, 2.0, 0.2]) == 4
    with pytest.raises(ValidationError):
        median_draw([0.1, 0.2])


def matched(memory: LearningMemory, series: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled out-of-sample returns of the control gate on `memory`, and of its frequency-matched draws."""
    gate = gated_class("sma_cross")(GatedConfig(base="sma_cross", **CONTROL_GATE), SmaCross(), memory)
    treated, draws = [], []
    for index, history in enumerate(histories()):
        run = single_run(gate, history, RUN_CONFIG)
        shares = veto_shares(base_frame(history.symbol), run.frames[history.symbol].features["gate_vetoed"], LABELS)
        seeds = [(series, index, draw) for draw in range(DRAWS)]
        returns, _ = random_veto_returns(SmaCross(), history, RUN_CONFIG, LABELS, shares, seeds)
        treated.append(daily_returns(run)[FIRST_TEST_BAR:])
        draws.append(returns[:, FIRST_TEST_BAR:])
    return np.mean(treated, axis=0), np.mean(draws, axis=0)


@cache
def leak_test() -> dict[str, Any]:
    return frequency_matched_test(*matched(leaking_memory(evidence()), series=100), reps=REPS)


def test_a_leaking_memory_beats_its_frequency_matched_random_vetoes() -> None:
    result = leak_test()

    assert result["lower_bound"] > 0, result
    assert result["p_value"] == 1 / (DRAWS + 1)


def test_a_shuffled_memory_does_not_beat_its_frequency_matched_random_vetoes_in_19_of_20_seeds() -> None:
    groups = [int(LABELS[item.episode.decision_bar]) for item in evidence().judged]
    shuffled = [
        frequency_matched_test(*matched(shuffled_memory(evidence(), groups, seed), series=seed), reps=REPS)
        for seed in range(20)
    ]

    verdict = control_verdict(leak_test(), shuffled)
    assert verdict["shuffled_not_significant"] >= 19, [test["lower_bound"] for test in shuffled]
    assert verdict["passed"]
