"""Specification of the study's statistics: `neuraltrade.research.evaluation` and `neuraltrade.research.meta_labels`,
and of the two baseline filters (`neuraltrade.research.baselines`)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.stats import norm

from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.market.history import PriceHistory
from neuraltrade.research.baselines import (
    EQUITY_FILTER_GRID,
    GATE_GRID,
    KNN_VOTE_GRID,
    EquityCurveFilter,
    EquityCurveFilterConfig,
    KnnVote,
    KnnVoteConfig,
    apply_vetoes,
)
from neuraltrade.research.evaluation import (
    deflated_sharpe_ratio,
    expected_maximum_sharpe,
    minimum_detectable_sharpe_difference,
    performance_summary,
    sharpe_difference_lower_bound,
    sharpe_ratio,
    spa_test,
)
from neuraltrade.research.meta_labels import brier_score, meta_label_confusion, wilson_interval
from neuraltrade.strategies.base import SignalFrame, verify_causality
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig


def noise(days: int, seed: int, mean: float = 0.0, scale: float = 0.01) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, scale, days)


# --- Sharpe ratios and their difference -----------------------------------------------------------------


def test_sharpe_ratio_is_the_annualised_mean_over_the_sample_deviation() -> None:
    returns = np.array([0.01, -0.005, 0.002, 0.007])

    assert sharpe_ratio(returns) == pytest.approx(returns.mean() / returns.std(ddof=1) * math.sqrt(252))
    assert sharpe_ratio(returns, periods=1) == pytest.approx(returns.mean() / returns.std(ddof=1))
    assert sharpe_ratio(np.zeros(10)) == 0.0


def test_the_performance_summary_compounds_returns_and_measures_the_deepest_fall() -> None:
    summary = performance_summary([0.1, -0.5, 0.2])

    assert summary["total_return"] == pytest.approx(1.1 * 0.5 * 1.2 - 1)
    assert summary["max_drawdown"] == pytest.approx(0.5)


def test_the_sharpe_difference_of_identical_series_is_zero_and_its_bound_not_above_zero() -> None:
    returns = noise(500, 1, mean=0.001)

    result = sharpe_difference_lower_bound(returns, returns.copy(), reps=200)

    assert result["estimate"] == 0.0
    assert result["lower_bound"] <= 0.0


def test_a_series_clearly_better_than_its_base_has_a_positive_lower_bound() -> None:
    base = noise(1000, 2)
    treated = base + 0.002 + noise(1000, 3, scale=0.002)

    result = sharpe_difference_lower_bound(treated, base, reps=500, seed=5)

    assert result["estimate"] > result["lower_bound"] > 0
    assert result["block_length"] >= 1
    assert result["treated_sharpe"] - result["base_sharpe"] == pytest.approx(result["estimate"])


def test_a_series_no_better_than_its_base_has_a_lower_bound_below_zero() -> None:
    base = noise(1000, 4)
    treated = base * 0.5 + noise(1000, 5) * 0.5

    result = sharpe_difference_lower_bound(treated, base, reps=500)

    assert result["lower_bound"] < 0


def test_the_bootstrap_is_reproducible_under_its_seed() -> None:
    base, treated = noise(300, 6), noise(300, 7)

    first = sharpe_difference_lower_bound(treated, base, reps=200, seed=11)
    second = sharpe_difference_lower_bound(treated, base, reps=200, seed=11)

    assert first == second


def test_unpaired_or_non_finite_series_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="paired"):
        sharpe_difference_lower_bound(noise(100, 1), noise(99, 2), reps=200)
    with pytest.raises(ValidationError, match="non-finite"):
        sharpe_difference_lower_bound(np.r_[noise(99, 1), np.nan], noise(100, 2), reps=200)
    with pytest.raises(ConfigError, match="reps"):
        sharpe_difference_lower_bound(noise(100, 1), noise(100, 2), reps=10)


# --- SPA ------------------------------------------------------------------------------------------------


def test_spa_finds_nothing_when_every_variant_is_the_benchmark() -> None:
    benchmark = noise(800, 8, mean=0.0005)

    result = spa_test(benchmark, np.column_stack([benchmark, benchmark]), reps=300)

    assert result["consistent"] == 1.0
    assert result["better"] == []
    assert result["left_out"] == 2


def test_spa_finds_nothing_when_variants_are_noise_around_the_benchmark() -> None:
    benchmark = noise(800, 8, mean=0.0005)
    variants = np.column_stack([benchmark + noise(800, seed, scale=0.003) for seed in (20, 21, 22)])

    result = spa_test(benchmark, variants, reps=300)

    assert result["consistent"] > 0.1


def test_spa_finds_a_variant_that_is_clearly_better() -> None:
    benchmark = noise(800, 9)
    variants = np.column_stack(
        [benchmark + noise(800, 10, scale=0.002), benchmark + 0.003 + noise(800, 11, scale=0.002)]
    )

    result = spa_test(benchmark, variants, reps=300)

    assert result["consistent"] < 0.05
    assert result["best"] == 1
    assert 1 in result["better"]


# --- Deflated Sharpe Ratio ------------------------------------------------------------------------------


def test_the_expected_maximum_sharpe_follows_bailey_and_lopez_de_prado() -> None:
    gamma = 0.5772156649015329
    expected = math.sqrt(0.04) * ((1 - gamma) * norm.ppf(1 - 1 / 100) + gamma * norm.ppf(1 - 1 / (100 * math.e)))

    assert expected_maximum_sharpe(100, 0.04) == pytest.approx(expected)
    assert expected_maximum_sharpe(1, 0.04) == 0.0


def test_the_deflated_sharpe_ratio_falls_as_trials_grow() -> None:
    returns = noise(1000, 12, mean=0.001)
    spread = np.random.default_rng(13).normal(0.0, 0.03, 1000)

    values = [deflated_sharpe_ratio(returns, spread[:count])["dsr"] for count in (2, 10, 100, 1000)]

    assert values == sorted(values, reverse=True)
    assert values[0] > values[-1]


def test_a_single_trial_deflates_to_the_probabilistic_sharpe_ratio_against_zero() -> None:
    returns = noise(1000, 14, mean=0.001)

    result = deflated_sharpe_ratio(returns, [0.05])

    assert result["expected_maximum_sharpe"] == 0.0
    assert 0.5 < result["dsr"] < 1.0


# --- minimum detectable difference ----------------------------------------------------------------------


def test_the_minimum_detectable_difference_shrinks_with_days_and_correlation() -> None:
    short = minimum_detectable_sharpe_difference(252)["minimum_detectable_difference"]
    long = minimum_detectable_sharpe_difference(252 * 16)["minimum_detectable_difference"]
    correlated = minimum_detectable_sharpe_difference(252 * 16, correlation=0.9)["minimum_detectable_difference"]

    assert short == pytest.approx(4 * long)
    assert correlated < long
    # Two independent series over one year: (1.645 + 0.842) * sqrt(2) is about 3.5 a year.
    assert short == pytest.approx((norm.ppf(0.95) + norm.ppf(0.8)) * math.sqrt(2), rel=1e-6)


def test_a_given_standard_error_sets_the_minimum_detectable_difference() -> None:
    result = minimum_detectable_sharpe_difference(1000, standard_error=0.1)

    assert result["minimum_detectable_difference"] == pytest.approx(0.1 * (norm.ppf(0.95) + norm.ppf(0.8)))


# --- meta-labels ----------------------------------------------------------------------------------------


def test_the_confusion_matrix_counts_winners_and_losers_kept_and_vetoed() -> None:
    success = [True, True, True, False, False, False, False, True]
    vetoed = [False, False, True, True, True, False, False, False]

    result = meta_label_confusion(success, vetoed)

    assert (result["winners_kept"], result["losers_kept"]) == (3, 2)
    assert (result["winners_vetoed"], result["losers_vetoed"]) == (1, 2)
    assert result["base_rate"] == pytest.approx(4 / 8)
    assert result["precision"] == pytest.approx(3 / 5)
    assert result["lift"] == pytest.approx(1.2)
    assert result["veto_precision"] == pytest.approx(2 / 3)
    assert result["precision_interval"] == pytest.approx(wilson_interval(3, 5))
    low, high = result["precision_interval"]
    assert low < 0.6 < high


def test_a_filter_that_vetoes_nothing_has_a_lift_of_one_and_no_veto_precision() -> None:
    result = meta_label_confusion(np.array([1, 0, 1]), np.zeros(3, dtype=bool))

    assert result["lift"] == 1.0
    assert math.isnan(result["veto_precision"])


def test_the_wilson_interval_of_three_successes_in_three_is_wide() -> None:
    low, high = wilson_interval(3, 3)

    assert low == pytest.approx(0.4385, abs=1e-4)
    assert high == pytest.approx(1.0)


def test_perfect_forecasts_score_zero_and_the_base_rate_scores_no_skill() -> None:
    outcomes = np.array([True, False, True, True])

    perfect = brier_score(outcomes.astype(float), outcomes)
    climatology = brier_score(np.full(4, 0.75), outcomes)

    assert perfect["brier"] == 0.0
    assert perfect["skill"] == 1.0
    assert climatology["brier"] == pytest.approx(climatology["reference_brier"])
    assert climatology["skill"] == pytest.approx(0.0)


def test_probabilities_outside_zero_and_one_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        brier_score([1.2], [True])


# --- baselines ------------------------------------------------------------------------------------------


def history(bars: int = 400, seed: int = 3) -> PriceHistory:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, bars)))
    stamps = 1_577_836_800_000_000 + np.arange(bars, dtype=np.int64) * 86_400_000_000
    return PriceHistory("SYM", stamps, close, close * 1.01, close * 0.99, close, np.full(bars, 1e6))


def test_every_filter_has_the_same_tuning_budget() -> None:
    assert len(GATE_GRID) == len(EQUITY_FILTER_GRID) == len(KNN_VOTE_GRID) == 4


def test_vetoes_drop_entries_from_flat_and_flatten_vetoed_flips() -> None:
    target = np.array([np.nan, 1.0, np.nan, -1.0, np.nan, 1.0, 0.0, -1.0])
    frame = SignalFrame(target=target, confidence=np.where(np.isnan(target), 0.0, 1.0))

    filtered = apply_vetoes(frame, lambda bar, side: bar in (3, 7))

    # bar 3's flip to short is vetoed: flat; bar 5's long from flat is taken; bar 7's short from flat vetoed.
    np.testing.assert_array_equal(filtered.target, [np.nan, 1.0, np.nan, 0.0, np.nan, 1.0, 0.0, np.nan])
    np.testing.assert_array_equal(np.flatnonzero(filtered.features["filter_vetoed"]), [3, 7])


def trade(exit_day: int, return_fraction: float) -> ClosedTrade:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    ids = [__import__("uuid").uuid4() for _ in range(4)]
    return ClosedTrade(
        "SYM", exit_day - 1, exit_day, start + timedelta(days=exit_day - 1), start + timedelta(days=exit_day),
        1.0, 100.0, 100.0 * (1 + return_fraction), 0.0, None, *ids,
    )  # fmt: skip


def test_the_equity_filter_vetoes_only_below_the_average_of_trades_closed_before_the_decision() -> None:
    bars = history()
    base = SmaCross(SmaCrossConfig(fast=5, slow=20))
    losing = [trade(day, -0.01) for day in range(30, 40)]
    config = EquityCurveFilterConfig(base="sma_cross", trades=5)

    frame = EquityCurveFilter(config, base, losing).signals(bars)
    vetoed = np.flatnonzero(frame.features["filter_vetoed"])
    entries = [bar for bar in base.signals(bars).decisions() if bar > 40]

    assert len(vetoed) and all(bar >= 35 for bar in vetoed)  # 5 losing trades closed (days 30..34) first
    assert set(entries) <= set(vetoed) | set(np.flatnonzero(np.isnan(frame.target)))
    verify_causality(EquityCurveFilter(config, base, losing), bars, frame)


def test_the_knn_vote_is_causal_and_vetoes_some_entries() -> None:
    bars = history(600)
    strategy = KnnVote(KnnVoteConfig(base="sma_cross", k=10, horizon=5), SmaCross(SmaCrossConfig(fast=5, slow=20)))

    frame = strategy.signals(bars)

    assert (
        0
        < frame.features["filter_vetoed"].sum()
        < len(SmaCross(SmaCrossConfig(fast=5, slow=20)).signals(bars).decisions())
    )
    verify_causality(strategy, bars, frame)


def test_a_filter_refuses_another_base_than_configured() -> None:
    with pytest.raises(ConfigError, match="mean_reversion"):
        KnnVote(KnnVoteConfig(base="mean_reversion"), SmaCross())
