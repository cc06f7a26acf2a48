"""State features and regimes: point in time, the documented formulas, the thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.regime import STATE_FEATURES, Regime, regime_of, state_feature_matrix, state_features
from neuraltrade.market.history import PriceHistory
from tests.domain.backtest_support import history


def walk(seed: int, count: int = 260, drift: float = 0.0, volatility: float = 0.02) -> PriceHistory:
    generator = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(generator.normal(drift, volatility, count)))
    return history("A", close.tolist())


def test_the_matrix_has_one_row_of_four_features_per_bar_nan_until_each_window_is_full():
    prices = walk(1)
    matrix = state_feature_matrix(prices)
    assert STATE_FEATURES == ("trend", "volatility", "momentum", "range_position")
    assert matrix.shape == (len(prices), 4)
    trend, volatility, momentum, position = matrix.T
    assert np.isnan(trend[:20]).all() and not np.isnan(trend[20:]).any()
    assert np.isnan(momentum[:20]).all() and not np.isnan(momentum[20:]).any()
    assert np.isnan(volatility[:100]).all() and not np.isnan(volatility[100:]).any()
    assert np.isnan(position[:99]).all() and not np.isnan(position[99:]).any()
    assert ((position[99:] >= 0) & (position[99:] <= 1)).all()


def test_each_feature_follows_its_documented_formula():
    prices = walk(2)
    close = prices.close
    returns = np.diff(np.log(close))
    bar = 180
    matrix = state_feature_matrix(prices)
    sigma = np.std(returns[bar - 20 : bar], ddof=1)
    long_sigma = np.std(returns[bar - 100 : bar], ddof=1)
    assert matrix[bar, 0] == pytest.approx(math.log(close[bar] / close[bar - 20]) / (sigma * math.sqrt(20)))
    assert matrix[bar, 1] == pytest.approx(math.log(sigma / long_sigma))
    assert matrix[bar, 2] == pytest.approx(math.log(close[bar] / close[bar - 5]) / (sigma * math.sqrt(5)))
    window = close[bar - 99 : bar + 1]
    assert matrix[bar, 3] == pytest.approx((close[bar] - window.min()) / (window.max() - window.min()))


def test_one_bar_s_features_are_exactly_the_matrix_row():
    prices = walk(3)
    matrix = state_feature_matrix(prices)
    for bar in range(len(prices)):
        np.testing.assert_array_equal(state_features(prices, bar), matrix[bar])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 200))
def test_a_row_never_reads_a_later_bar(seed: int, cut: int):
    prices = walk(seed, count=220)
    close = prices.close.copy()
    close[cut:] *= np.exp(np.random.default_rng(seed + 1).normal(0, 0.05, len(close) - cut))
    altered = history("A", close.tolist())
    np.testing.assert_array_equal(state_feature_matrix(altered)[:cut], state_feature_matrix(prices)[:cut])


def test_flat_prices_are_a_flat_normal_market_in_the_middle_of_its_range():
    matrix = state_feature_matrix(history("A", [50.0] * 130))
    np.testing.assert_array_equal(matrix[120], [0.0, 0.0, 0.0, 0.5])
    assert regime_of(matrix[120]) == Regime(trend="flat", volatility="normal")


def test_a_steady_rise_is_an_up_trend_at_the_top_of_its_range_and_a_fall_a_down_trend():
    rising = state_feature_matrix(walk(4, drift=0.01, volatility=0.005))[-1]
    falling = state_feature_matrix(walk(4, drift=-0.01, volatility=0.005))[-1]
    assert regime_of(rising).trend == "up" and rising[3] == pytest.approx(1.0, abs=0.1)
    assert regime_of(falling).trend == "down" and falling[3] == pytest.approx(0.0, abs=0.1)


def test_a_volatility_burst_reads_as_high_volatility_and_a_calm_spell_as_low():
    generator = np.random.default_rng(5)
    calm_then_wild = np.r_[generator.normal(0, 0.01, 200), generator.normal(0, 0.05, 20)]
    wild_then_calm = np.r_[generator.normal(0, 0.05, 200), generator.normal(0, 0.005, 20)]
    burst = state_feature_matrix(history("A", (100 * np.exp(np.cumsum(calm_then_wild))).tolist()))[-1]
    calm = state_feature_matrix(history("A", (100 * np.exp(np.cumsum(wild_then_calm))).tolist()))[-1]
    assert regime_of(burst).volatility == "high"
    assert regime_of(calm).volatility == "low"


@pytest.mark.parametrize(
    ("row", "trend", "volatility"),
    [
        ([0.51, 0.26, 0, 0], "up", "high"),
        ([-0.51, -0.26, 0, 0], "down", "low"),
        ([0.5, 0.25, 0, 0], "flat", "normal"),
        ([-0.5, -0.25, 0, 0], "flat", "normal"),
        ([math.nan, math.nan, math.nan, math.nan], "flat", "normal"),
    ],
)
def test_regime_thresholds(row: list[float], trend: str, volatility: str):
    assert regime_of(np.array(row)) == Regime(trend=trend, volatility=volatility)


def test_bad_inputs_are_refused_by_name():
    prices = walk(6, count=30)
    with pytest.raises(ConfigError, match="long_lookback"):
        state_feature_matrix(prices, lookback=20, long_lookback=20)
    with pytest.raises(ConfigError, match="lookback"):
        state_feature_matrix(prices, lookback=1)
    with pytest.raises(ValidationError, match="bar 30"):
        state_features(prices, 30)
    with pytest.raises(ValidationError, match="sideways"):
        Regime(trend="sideways", volatility="normal")
    with pytest.raises(ValidationError, match="given 3"):
        regime_of(np.zeros(3))
