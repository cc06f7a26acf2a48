"""Behaviour of position sizing (`neuraltrade.trading.sizing`)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.trading.sizing import (
    CappedKelly,
    FixedFraction,
    VolatilityTarget,
    kelly_fraction,
    size_capped_kelly,
    size_fixed_fraction,
    size_position,
    size_volatility_target,
)
from neuraltrade.types import Direction

PROPERTY = settings(max_examples=150, deadline=None)
LONG, SHORT, NEUTRAL = Direction.LONG, Direction.SHORT, Direction.NEUTRAL

equities = st.floats(min_value=1.0, max_value=1e9, allow_nan=False)
prices = st.floats(min_value=0.01, max_value=1e5, allow_nan=False)
fractions = st.floats(min_value=1e-4, max_value=1.0, allow_nan=False)
directions = st.sampled_from([LONG, SHORT])
period_returns = st.lists(st.floats(min_value=-0.2, max_value=0.2, allow_nan=False), min_size=2, max_size=60)
trade_returns = st.lists(st.floats(min_value=-0.5, max_value=0.5, allow_nan=False), max_size=80)


def closes_from(returns: list[float] | np.ndarray, start: float = 100.0) -> np.ndarray:
    return np.asarray(start * np.cumprod(np.concatenate([[1.0], 1.0 + np.asarray(returns)])))


def is_whole(units: float) -> bool:
    return float(units).is_integer()


# --- fixed fraction ------------------------------------------------------------------------------------------


def test_a_fixed_fraction_buys_the_whole_units_that_fraction_of_equity_affords() -> None:
    config = FixedFraction(fraction=0.25)

    assert size_fixed_fraction(config, equity=10_000.0, price=33.0, direction=LONG) == 75.0
    assert size_fixed_fraction(config, equity=10_000.0, price=33.0, direction=SHORT) == -75.0
    assert size_fixed_fraction(config, equity=10_000.0, price=33.0, direction=NEUTRAL) == 0.0
    assert size_fixed_fraction(config, equity=10_000.0, price=3_000.0, direction=LONG) == 0.0


def test_a_fractional_fixed_fraction_spends_the_fraction_exactly() -> None:
    config = FixedFraction(fraction=0.25, fractional=True)

    units = size_fixed_fraction(config, equity=10_000.0, price=33.0, direction=SHORT)

    assert units == pytest.approx(-2_500.0 / 33.0, rel=1e-15)
    assert abs(units) * 33.0 <= 2_500.0


def test_a_budget_that_is_a_whole_number_of_units_up_to_rounding_buys_that_number() -> None:
    # 0.3 / 0.1 is 2.9999999999999996 in floating point; the budget buys 3 units.
    assert size_fixed_fraction(FixedFraction(fraction=1.0), equity=0.3, price=0.1, direction=LONG) == 3.0


@PROPERTY
@given(equities, prices, fractions, directions, st.booleans())
def test_a_fixed_fraction_never_spends_more_than_its_fraction_and_whole_sizes_are_whole(
    equity: float, price: float, fraction: float, direction: Direction, fractional: bool
) -> None:
    units = size_fixed_fraction(
        FixedFraction(fraction=fraction, fractional=fractional), equity=equity, price=price, direction=direction
    )

    assert abs(units) * price <= equity * fraction * (1 + 1e-9)
    assert math.copysign(1, units) == (1 if direction is LONG else -1) or units == 0
    if not fractional:
        assert is_whole(units)
        assert (abs(units) + 1) * price > equity * fraction  # one more unit would not be affordable


# --- volatility target ---------------------------------------------------------------------------------------


def test_a_volatility_target_sizes_to_target_over_annualised_volatility() -> None:
    returns = [0.01, -0.01] * 10
    config = VolatilityTarget(annual_volatility=0.10, lookback=20, fractional=True)
    closes = closes_from(returns)
    volatility = 0.01 * math.sqrt(20 / 19) * math.sqrt(252)

    units = size_volatility_target(config, equity=1_000_000.0, closes=closes, direction=LONG)

    assert units * closes[-1] == pytest.approx(1_000_000.0 * 0.10 / volatility, rel=1e-12)


def test_a_volatility_target_is_capped_at_its_max_leverage() -> None:
    closes = closes_from([0.0001, -0.0001] * 10)
    config = VolatilityTarget(annual_volatility=0.20, lookback=20, max_leverage=1.5)

    units = size_volatility_target(config, equity=100_000.0, closes=closes, direction=SHORT)

    assert units == -math.floor(150_000.0 / closes[-1])


def test_prices_that_never_moved_get_the_cap_not_a_division_by_zero() -> None:
    config = VolatilityTarget(annual_volatility=0.20, lookback=5)

    assert size_volatility_target(config, equity=1_000.0, closes=[10.0] * 6, direction=LONG) == 100.0


def test_a_volatility_target_without_enough_closes_sizes_zero() -> None:
    config = VolatilityTarget(annual_volatility=0.20, lookback=20)

    assert size_volatility_target(config, equity=1_000.0, closes=closes_from([0.01] * 19), direction=LONG) == 0.0
    assert size_volatility_target(config, equity=1_000.0, closes=[], direction=LONG) == 0.0


@PROPERTY
@given(period_returns, period_returns, st.floats(min_value=1.5, max_value=4.0))
def test_a_volatility_target_reads_only_its_lookback_and_scales_inversely_with_volatility(
    history: list[float], returns: list[float], scale: float
) -> None:
    lookback = len(returns)
    assume(np.std(returns, ddof=1) > 1e-4)
    # A tiny target keeps both sizes below the leverage cap.
    config = VolatilityTarget(annual_volatility=1e-3, lookback=lookback, fractional=True)
    calm, wild = closes_from(returns), closes_from(np.asarray(returns) * scale)
    calm_with_history = np.concatenate([closes_from(history, start=7.0), calm])

    calm_size = size_volatility_target(config, equity=1e6, closes=calm, direction=LONG) * calm[-1]
    wild_size = size_volatility_target(config, equity=1e6, closes=wild, direction=LONG) * wild[-1]
    longer_size = size_volatility_target(config, equity=1e6, closes=calm_with_history, direction=LONG) * calm[-1]

    assert wild_size == pytest.approx(calm_size / scale, rel=1e-9)
    assert longer_size == pytest.approx(calm_size, rel=1e-12)


@PROPERTY
@given(period_returns, equities, st.floats(min_value=0.01, max_value=2.0), st.floats(min_value=0.1, max_value=3.0))
def test_a_volatility_target_never_exceeds_its_max_leverage_and_sizes_whole_units(
    returns: list[float], equity: float, target: float, max_leverage: float
) -> None:
    config = VolatilityTarget(annual_volatility=target, lookback=len(returns), max_leverage=max_leverage)
    closes = closes_from(returns)

    units = size_volatility_target(config, equity=equity, closes=closes, direction=SHORT)

    assert units <= 0
    assert is_whole(units)
    assert abs(units) * closes[-1] <= equity * max_leverage * (1 + 1e-9)


# --- capped Kelly --------------------------------------------------------------------------------------------


def test_kelly_is_win_rate_minus_loss_rate_over_the_payoff_ratio() -> None:
    # W = 0.5 (a zero return is not a win), mean win 0.02, mean loss 0.01: R = 2.
    returns = [0.03, 0.01, 0.02, 0.02, 0.02, -0.01, -0.005, -0.015, -0.01, 0.0]

    assert kelly_fraction(returns) == pytest.approx(0.5 - 0.5 / 2.0)
    assert kelly_fraction([0.03, 0.01, 0.02, -0.01, -0.01]) == pytest.approx(0.6 - 0.4 / 2.0)


@PROPERTY
@given(
    st.lists(
        st.floats(min_value=-1.0, max_value=1.0).filter(lambda x: x == 0 or abs(x) > 1e-12), min_size=1, max_size=50
    )
)
def test_kelly_matches_backtesting_py_where_its_formula_is_defined(returns: list[float]) -> None:
    values = np.asarray(returns)
    wins, losses = values[values > 0], values[values < 0]
    assume(len(wins) and len(losses))
    win_rate = float(np.mean(values > 0))
    # backtesting.py 0.6, _stats.py: win_rate - (1 - win_rate) / (pl[pl > 0].mean() / -pl[pl < 0].mean())
    reference = win_rate - (1 - win_rate) / (wins.mean() / -losses.mean())

    assert kelly_fraction(returns) == pytest.approx(reference, rel=1e-12, abs=1e-12)
    assert kelly_fraction(np.asarray(returns) * 100) == pytest.approx(reference, rel=1e-9, abs=1e-9)


def test_kelly_without_losses_is_the_win_rate_and_without_wins_is_negative() -> None:
    assert kelly_fraction([0.01, 0.02, 0.0, 0.03]) == 0.75
    assert kelly_fraction([-0.01, 0.0]) < 0
    assert kelly_fraction([]) == 0.0
    assert kelly_fraction([0.0, 0.0]) == 0.0


def test_capped_kelly_bets_a_fraction_of_kelly_clipped_to_its_cap() -> None:
    returns = [0.03, 0.01, 0.02, -0.01, -0.01] * 4  # Kelly 0.4
    half = CappedKelly(fraction=0.5, cap=0.25, min_trades=20)
    full = CappedKelly(fraction=1.0, cap=0.25, min_trades=20)

    assert size_capped_kelly(half, equity=10_000.0, price=10.0, trade_returns=returns, direction=LONG) == 200.0
    assert size_capped_kelly(full, equity=10_000.0, price=10.0, trade_returns=returns, direction=SHORT) == -250.0


def test_capped_kelly_with_a_losing_record_sizes_zero() -> None:
    config = CappedKelly(min_trades=5)

    units = size_capped_kelly(config, equity=10_000.0, price=10.0, trade_returns=[0.01, -0.05] * 5, direction=LONG)

    assert units == 0.0


def test_capped_kelly_with_too_few_trades_sizes_its_fallback() -> None:
    returns = [0.03, 0.01, 0.02, -0.01, -0.01] * 3  # 15 trades
    strict = CappedKelly(min_trades=20)
    fallback = replace(strict, fallback_fraction=0.05)

    assert size_capped_kelly(strict, equity=10_000.0, price=10.0, trade_returns=returns, direction=LONG) == 0.0
    assert size_capped_kelly(fallback, equity=10_000.0, price=10.0, trade_returns=returns, direction=LONG) == 50.0


def test_capped_kelly_reads_only_its_last_lookback_trades() -> None:
    recent = [0.03, 0.01, 0.02, -0.01, -0.01] * 4
    config = CappedKelly(lookback=20, min_trades=20)

    with_old_losses = size_capped_kelly(
        config, equity=10_000.0, price=10.0, trade_returns=[-0.5] * 30 + recent, direction=LONG
    )

    assert with_old_losses == size_capped_kelly(
        config, equity=10_000.0, price=10.0, trade_returns=recent, direction=LONG
    )
    assert with_old_losses == 200.0


@PROPERTY
@given(trade_returns, equities, prices, fractions, fractions, st.booleans())
def test_capped_kelly_never_allocates_more_than_its_cap_and_sizes_whole_units(
    returns: list[float], equity: float, price: float, fraction: float, cap: float, fractional: bool
) -> None:
    config = CappedKelly(fraction=fraction, cap=cap, lookback=None, min_trades=1, fractional=fractional)

    units = size_capped_kelly(config, equity=equity, price=price, trade_returns=returns, direction=LONG)

    assert 0 <= units * price <= equity * cap * (1 + 1e-9)
    if not fractional:
        assert is_whole(units)


# --- one entry point, validation and identity ----------------------------------------------------------------


def test_size_position_sizes_with_any_sizer_at_the_last_close() -> None:
    closes = closes_from([0.01, -0.01] * 10)
    returns = [0.03, 0.01, 0.02, -0.01, -0.01] * 4
    target = VolatilityTarget(annual_volatility=0.1)

    assert size_position(FixedFraction(fraction=0.5), equity=1_000.0, closes=[40.0, 50.0], direction=LONG) == 10.0
    assert size_position(target, equity=1e6, closes=closes, direction=LONG) == size_volatility_target(
        target, equity=1e6, closes=closes, direction=LONG
    )
    assert size_position(CappedKelly(), equity=10_000.0, closes=[10.0], trade_returns=returns, direction=LONG) == 200.0


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: size_fixed_fraction(FixedFraction(fraction=0.1), equity=0.0, price=1.0, direction=LONG), "equity"),
        (lambda: size_fixed_fraction(FixedFraction(fraction=0.1), equity=-1.0, price=1.0, direction=LONG), "equity"),
        (lambda: size_fixed_fraction(FixedFraction(fraction=0.1), equity=1.0, price=math.nan, direction=LONG), "price"),
        (
            lambda: size_fixed_fraction(FixedFraction(fraction=0.1), equity=1.0, price=1.0, direction="long"),  # type: ignore[arg-type]
            "direction",
        ),
        (
            lambda: size_volatility_target(
                VolatilityTarget(annual_volatility=0.1, lookback=2),
                equity=1.0,
                closes=[1.0, math.nan, 1.0],
                direction=LONG,
            ),
            "close 1 was nan",
        ),
        (
            lambda: size_volatility_target(
                VolatilityTarget(annual_volatility=0.1, lookback=2), equity=1.0, closes=[1.0, 0.0, 1.0], direction=LONG
            ),
            "close 1 was 0.0",
        ),
        (
            lambda: size_capped_kelly(
                CappedKelly(), equity=1.0, price=1.0, trade_returns=[0.1, math.inf], direction=LONG
            ),
            "finite",
        ),
        (
            lambda: size_position(FixedFraction(fraction=0.1), equity=1.0, closes=[], direction=LONG),
            "at least one close",
        ),
    ],
)
def test_invalid_sizing_inputs_are_refused_naming_the_value(call: Any, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        call()


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: FixedFraction(fraction=0.0), "fraction"),
        (lambda: FixedFraction(fraction=1.5), "fraction"),
        (lambda: FixedFraction(fraction=math.nan), "fraction"),
        (lambda: FixedFraction(fraction=0.5, fractional=1), "fractional"),  # type: ignore[arg-type]
        (lambda: VolatilityTarget(annual_volatility=0.0), "annual_volatility"),
        (lambda: VolatilityTarget(annual_volatility=0.1, lookback=1), "lookback"),
        (lambda: VolatilityTarget(annual_volatility=0.1, lookback=2.5), "lookback"),  # type: ignore[arg-type]
        (lambda: VolatilityTarget(annual_volatility=0.1, periods_per_year=0), "periods_per_year"),
        (lambda: VolatilityTarget(annual_volatility=0.1, max_leverage=-1.0), "max_leverage"),
        (lambda: CappedKelly(fraction=2.0), "fraction"),
        (lambda: CappedKelly(cap=0.0), "cap"),
        (lambda: CappedKelly(lookback=0), "lookback"),
        (lambda: CappedKelly(min_trades=0), "min_trades"),
        (lambda: CappedKelly(lookback=10, min_trades=20), "min_trades 20 exceeds lookback 10"),
        (lambda: CappedKelly(cap=0.1, fallback_fraction=0.2), "fallback_fraction 0.2 exceeds its cap 0.1"),
    ],
)
def test_an_invalid_sizer_is_refused_naming_the_value(make: Any, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        make()


def test_sizers_have_a_digest_that_changes_with_any_setting() -> None:
    kelly = CappedKelly()

    assert kelly.digest == CappedKelly().digest
    assert kelly.digest != replace(kelly, cap=0.2).digest
    assert kelly.digest != replace(kelly, fractional=True).digest
    assert FixedFraction(fraction=0.2).digest != FixedFraction(fraction=0.3).digest
    assert VolatilityTarget(annual_volatility=0.1).digest != VolatilityTarget(annual_volatility=0.1, lookback=30).digest
