"""The memory study's controls at a small size: the test of "the memory helps" must see a leak and must not see
a memory whose outcomes were shuffled (docs/learning.md, section 1.9).

Two symbols of a synthetic market (1,500 bars each), `sma_cross` without costs (so that trading less is no
advantage in itself), the gate in its control configuration (`CONTROL_GATE`: the nearest episode decides),
out-of-sample days after the first 500 bars, the one-sided 95 % lower bound of the gated-minus-ungated
Sharpe difference (`sharpe_difference_lower_bound`).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.learning.retrieval import LearningMemory
from neuraltrade.market.history import PriceHistory
from neuraltrade.market.synthetic import MarketConfig, generate_market
from neuraltrade.research.evaluation import sharpe_difference_lower_bound
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
from neuraltrade.strategies.gated import GatedConfig, gated_class
from neuraltrade.strategies.sma_cross import SmaCross

BARS = 1_500
FIRST_TEST_BAR = 500
CONFIG = BacktestConfig(commission=0.0, fractional=True)
#: The gate's own tests hold it causal; checking it again here would triple the cost of each of the 21 runs.
GATED_CONFIG = replace(CONFIG, verify_causality=False)
REPS = 500


@cache
def histories() -> tuple[PriceHistory, ...]:
    market = MarketConfig(symbols=2, bars_per_symbol=BARS, seed=7)
    frame = generate_market(market)
    return tuple(PriceHistory.from_frame(frame, symbol) for symbol in market.names)


@cache
def evidence() -> BaseEvidence:
    return base_evidence(SmaCross(), histories(), CONFIG)


def pooled(returns: list[np.ndarray]) -> np.ndarray:
    return np.mean([series[FIRST_TEST_BAR:] for series in returns], axis=0)


def gated_returns(memory: LearningMemory) -> np.ndarray:
    strategy = gated_class("sma_cross")(GatedConfig(base="sma_cross", **CONTROL_GATE), SmaCross(), memory)
    return pooled([daily_returns(single_run(strategy, history, GATED_CONFIG)) for history in histories()])


def ungated_returns() -> np.ndarray:
    return pooled([evidence().returns[history.symbol] for history in histories()])


def test_a_memory_that_reads_outcomes_not_yet_known_comes_out_significant() -> None:
    result = sharpe_difference_lower_bound(gated_returns(leaking_memory(evidence())), ungated_returns(), reps=REPS)

    assert result["lower_bound"] > 0, result


def test_a_memory_with_outcomes_shuffled_within_folds_is_not_significant_in_19_of_20_seeds() -> None:
    windows = fold_windows(BARS, train_bars=FIRST_TEST_BAR, test_bars=250)
    folds = fold_of_bars(BARS, windows)
    groups = [int(folds[item.episode.decision_bar]) for item in evidence().judged]
    base = ungated_returns()
    bounds = [
        sharpe_difference_lower_bound(gated_returns(shuffled_memory(evidence(), groups, seed)), base, reps=REPS)[
            "lower_bound"
        ]
        for seed in range(20)
    ]

    assert sum(bound <= 0 for bound in bounds) >= 19, bounds
