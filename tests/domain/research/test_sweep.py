"""Specification of parameter research: `neuraltrade.research.sweep` (spaces, sweeps and walk-forward tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.backtest import BacktestConfig, MarketData, run_backtest
from neuraltrade.errors import ConfigError, LookAheadError
from neuraltrade.market.history import PriceHistory
from neuraltrade.market.ingest import read_bars
from neuraltrade.research.sweep import (
    SweepPool,
    SweepResult,
    SweepRow,
    grid,
    market_window,
    random_sample,
    sweep,
)
from neuraltrade.research.walk_forward import fold_windows, walk_forward
from neuraltrade.sample_data import sample_paths
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig

DAY_US = 86_400_000_000
START_US = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z
CONFIG = BacktestConfig(commission=0.002)


@cache
def nvda(bars: int) -> MarketData:
    path = next(path for path in sample_paths() if path.stem == "NVDA")
    return MarketData.from_frame(read_bars(path).frame.iloc[:bars])


def market_of(closes: np.ndarray, symbol: str = "PLANT") -> MarketData:
    opens = np.concatenate(([closes[0]], closes[:-1]))
    return MarketData.from_histories(
        [
            PriceHistory(
                symbol=symbol,
                timestamps=START_US + DAY_US * np.arange(len(closes), dtype=np.int64),
                open=opens,
                high=np.maximum(opens, closes),
                low=np.minimum(opens, closes),
                close=closes,
                volume=np.full(len(closes), 1e6),
            )
        ]
    )


@dataclass(frozen=True, kw_only=True)
class HoldConfig(StrategyConfig):
    side: int = 1


class Hold(Strategy):
    """Wants to hold one side on every bar: long (+1) or short (-1)."""

    name: ClassVar[str] = "hold"
    config: HoldConfig

    def signals(self, history: PriceHistory) -> SignalFrame:
        target = np.full(len(history), float(self.config.side))
        return SignalFrame(target=target, confidence=np.ones(len(history)))


def hold(params: Mapping[str, Any]) -> Strategy:
    return Hold(HoldConfig(**params))


def refuse_sides_above_one(params: Mapping[str, Any]) -> Strategy:
    if params["side"] > 1:
        raise RuntimeError(f"a bug, not a refusal: side {params['side']}")
    return hold(params)


# ----------------------------------------------------------------------------------------------------
# Spaces


def test_a_grid_holds_every_combination_with_the_last_parameter_varying_fastest() -> None:
    combinations = grid({"fast": [5, 10, 15], "slow": [20, 30], "average": ["rolling"]})

    assert len(combinations) == 3 * 2 * 1
    assert combinations[:3] == [
        {"fast": 5, "slow": 20, "average": "rolling"},
        {"fast": 5, "slow": 30, "average": "rolling"},
        {"fast": 10, "slow": 20, "average": "rolling"},
    ]


def test_an_integer_range_is_every_integer_in_it_and_a_float_range_has_no_grid() -> None:
    assert [combination["fast"] for combination in grid({"fast": (3, 6)})] == [3, 4, 5, 6]
    assert all(type(combination["fast"]) is int for combination in grid({"fast": np.arange(2, 5)}))
    with pytest.raises(ConfigError, match=r"threshold is the float range \(0.1, 0.9\)"):
        grid({"threshold": (0.1, 0.9)})


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "non-empty mapping"),
        ({"fast": "10"}, "fast values must be a list"),
        ({"fast": []}, "fast has no values"),
        ({"fast": (9, 3)}, r"fast range \(9, 3\) needs finite ends with low <= high"),
    ],
)
def test_a_malformed_space_is_refused_naming_the_parameter(space: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        grid(space)


def test_a_random_sample_is_the_same_for_the_same_seed_or_generator() -> None:
    space = {"fast": (2, 40), "slow": [20, 30, 50], "threshold": (0.1, 0.9)}

    first = random_sample(space, 8, seed=7)

    assert random_sample(space, 8, seed=7) == first
    assert random_sample(space, 8, rng=np.random.default_rng(7)) == first
    assert random_sample(space, 8, seed=8) != first


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), low=st.integers(-5, 5), width=st.integers(0, 6), count=st.integers(1, 20))
def test_random_samples_of_a_finite_space_are_distinct_and_inside_it(
    seed: int, low: int, width: int, count: int
) -> None:
    space = {"window": (low, low + width), "side": ["long", "short"]}
    size = (width + 1) * 2
    if count > size:
        with pytest.raises(ConfigError, match=f"the space holds {size} combinations, {count} were asked for"):
            random_sample(space, count, seed=seed)
        return

    sample = random_sample(space, count, seed=seed)

    assert len({tuple(combination.items()) for combination in sample}) == count
    assert all(
        type(combination["window"]) is int and low <= combination["window"] <= low + width for combination in sample
    )
    assert all(combination["side"] in ("long", "short") for combination in sample)


def test_a_random_sample_needs_a_seed_or_a_generator() -> None:
    with pytest.raises(ConfigError, match="exactly one of seed or rng"):
        random_sample({"fast": (2, 40)}, 3)


# ----------------------------------------------------------------------------------------------------
# Sweeps


def test_a_sweep_in_two_processes_gives_the_rows_of_a_sweep_in_this_one() -> None:
    combinations = grid({"fast": [5, 10, 20], "slow": [20, 30]})
    seen: list[tuple[int, int]] = []

    parallel = sweep(nvda(600), "sma_cross", combinations, CONFIG, workers=2, progress=lambda *step: seen.append(step))
    sequential = sweep(nvda(600), "sma_cross", combinations, CONFIG, workers=1)

    assert parallel == sequential
    assert [row.params for row in parallel.rows] == [c for c in combinations if c != {"fast": 20, "slow": 20}]
    assert all(row.statistics["trades"] > 0 for row in parallel.rows)
    assert seen[-1] == (6, 6) and [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_warm_pool_sweeps_again_and_again_with_the_results_of_a_sweep() -> None:
    market = nvda(600)
    first = grid({"fast": [5, 10], "slow": [20, 30]})
    second = grid({"fast": [8], "slow": [25, 40]})

    with SweepPool(market, "sma_cross", CONFIG, workers=2) as pool:
        again = [pool.sweep(first), pool.sweep(second)]

    assert again == [
        sweep(market, "sma_cross", first, CONFIG, workers=1),
        sweep(market, "sma_cross", second, CONFIG, workers=1),
    ]
    with pytest.raises(ConfigError, match="inside its `with` block"):
        pool.sweep(first)


def test_combinations_the_strategy_refuses_are_skipped_with_the_reason() -> None:
    combinations = [{"fast": 10, "slow": 20}, {"fast": 30, "slow": 20}, {"fast": 10, "window": 5}]

    result = sweep(nvda(300), "sma_cross", combinations, CONFIG, workers=1)

    assert [row.params for row in result.rows] == [{"fast": 10, "slow": 20}]
    assert [skipped.params for skipped in result.skipped] == combinations[1:]
    assert "fast (30) must be less than slow (20)" in result.skipped[0].reason
    assert "has no parameter 'window'" in result.skipped[1].reason


def test_an_error_that_is_not_a_refusal_stops_the_sweep_even_in_a_worker() -> None:
    with pytest.raises(RuntimeError, match="side 2"):
        sweep(nvda(100), refuse_sides_above_one, [{"side": 1}, {"side": -1}, {"side": 2}], workers=2)


def test_the_best_row_maximises_the_metric_except_for_drawdowns_and_other_losses() -> None:
    def row(name: str, sharpe: float | None, drawdown: float) -> SweepRow:
        return SweepRow(
            params={"name": name}, statistics={"sharpe": sharpe, "max_drawdown_pct": drawdown}, config_digest=""
        )

    rows = (row("a", 0.5, 30.0), row("b", None, 5.0), row("c", 1.5, 20.0), row("d", 1.5, 10.0))

    assert SweepResult(metric="sharpe", rows=rows, skipped=()).best == rows[2]
    assert [r.params["name"] for r in SweepResult(metric="max_drawdown_pct", rows=rows, skipped=()).ranked()] == [
        "b",
        "d",
        "c",
        "a",
    ]
    assert SweepResult(metric="sharpe", rows=(rows[1],), skipped=()).best is None


def test_an_unknown_metric_is_refused_listing_the_statistics() -> None:
    with pytest.raises(ConfigError, match=r"metric 'profit' is not a statistic; choose one of .*sharpe"):
        sweep(nvda(100), "sma_cross", [{}], metric="profit")


# ----------------------------------------------------------------------------------------------------
# Walk-forward


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
def test_test_windows_tile_the_bars_after_the_first_train_window_and_never_overlap_a_train_window(mode: str) -> None:
    windows = fold_windows(100, train_bars=40, test_bars=15, mode=mode)

    assert [(window.test_start, window.test_stop) for window in windows] == [(40, 55), (55, 70), (70, 85), (85, 100)]
    for window in windows:
        assert window.train_stop == window.test_start
        assert window.train_start == (0 if mode == "anchored" else window.test_start - 40)


@pytest.mark.parametrize(
    ("train", "test", "message"),
    [
        (80, 30, r"train_bars \(80\) \+ test_bars \(30\) = 110 bars, the market has 100"),
        (1, 30, "train_bars must be an integer >= 2, was 1"),
        (40, 2.5, "test_bars must be an integer >= 2, was 2.5"),
    ],
)
def test_window_sizes_that_do_not_fit_the_data_are_refused_naming_them(train: Any, test: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        walk_forward(nvda(100), "sma_cross", {"fast": [5]}, train_bars=train, test_bars=test)


def test_out_of_sample_figures_come_from_the_test_window_alone() -> None:
    # Up for 40 bars, then down for 20: holding long is perfect in sample and loses out of sample.
    closes = np.concatenate((np.linspace(100.0, 140.0, 40), np.linspace(139.0, 110.0, 20)))
    market = market_of(closes)

    result = walk_forward(market, hold, {"side": [1, -1]}, CONFIG, train_bars=40, test_bars=20, metric="return_pct")

    (fold,) = result.folds
    assert fold.params == {"side": 1} and fold.in_sample is not None and fold.in_sample["return_pct"] > 0
    assert fold.statistics["return_pct"] < 0 and result.statistics == fold.statistics
    assert fold.statistics["start"] == "2020-02-10T00:00:00.000000Z"  # bar 40, the first test bar
    assert [(trade.entry_bar, trade.exit_bar) for trade in fold.trades] == [(41, 59)]
    alone = run_backtest(market_window(market, 40, 60), hold({"side": 1}), replace(CONFIG, close_at_end=True))
    np.testing.assert_array_equal(fold.equity, alone.equity)
    np.testing.assert_array_equal(result.equity, alone.equity)


def test_a_test_window_reads_the_train_bars_as_indicator_history_but_trades_only_inside_itself() -> None:
    bars = np.arange(70)
    market = market_of(100.0 * np.exp(0.05 * np.sin(2 * np.pi * bars / 16)))
    params = {"fast": 2, "slow": 12}

    result = walk_forward(market, "sma_cross", [params], CONFIG, train_bars=60, test_bars=10)

    # Alone, ten bars never fill a 12-bar average; after 60 bars of history the crosses trade at once.
    alone = run_backtest(market_window(market, 60, 70), build_sma(params), CONFIG)
    assert alone.trades == ()
    (fold,) = result.folds
    assert fold.trades and all(60 < trade.entry_bar <= trade.exit_bar < 70 for trade in fold.trades)
    assert fold.statistics["trades"] == len(fold.trades)


def build_sma(params: Mapping[str, Any]) -> Strategy:
    from neuraltrade.strategies.registry import build_strategy

    return build_strategy("sma_cross", params)


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
def test_each_fold_starts_from_the_previous_folds_equity_and_the_stitched_curve_joins_them(mode: str) -> None:
    space = {"fast": [5, 10], "slow": [20, 40]}

    result = walk_forward(nvda(400), "sma_cross", space, CONFIG, train_bars=200, test_bars=50, mode=mode, workers=2)

    assert [fold.window.train_start for fold in result.folds] == ([0] * 4 if mode == "anchored" else [0, 50, 100, 150])
    assert result.folds[0].starting_equity == CONFIG.cash
    for previous, fold in zip(result.folds, result.folds[1:], strict=False):
        assert fold.starting_equity == previous.ending_equity == previous.equity[-1]
        assert fold.equity[0] == fold.starting_equity  # nothing is decided before the first test bar's close
    np.testing.assert_array_equal(result.equity, np.concatenate([fold.equity for fold in result.folds]))
    assert result.first_bar == 200 and len(result.equity) == 200
    assert result.statistics["equity_final"] == result.folds[-1].ending_equity
    assert result.statistics["trades"] == sum(len(fold.trades) for fold in result.folds) == len(result.trades)
    assert all(
        f.window.test_start < t.entry_bar <= t.exit_bar < f.window.test_stop for f in result.folds for t in f.trades
    )
    sequential = walk_forward(nvda(400), "sma_cross", space, CONFIG, train_bars=200, test_bars=50, mode=mode, workers=1)
    assert [fold.params for fold in sequential.folds] == [fold.params for fold in result.folds]
    np.testing.assert_array_equal(sequential.equity, result.equity)


@dataclass(frozen=True, kw_only=True)
class PeekConfig(StrategyConfig):
    lag: int = 1


class Peek(Strategy):
    """Long before every rise: it reads the next close."""

    name = "peek"

    def signals(self, history: PriceHistory) -> SignalFrame:
        target = np.full(len(history), np.nan)
        target[:-1] = np.where(history.close[1:] > history.close[:-1], 1.0, 0.0)
        return SignalFrame(target=target, confidence=np.where(np.isnan(target), np.nan, 1.0))


def _peek(params: Mapping[str, Any]) -> Strategy:
    return Peek(PeekConfig(**params))


def test_every_sweep_checks_its_strategies_for_look_ahead_again() -> None:
    market = nvda(300)
    for _ in range(2):
        with pytest.raises(LookAheadError, match="peek"):
            sweep(market, _peek, [{"lag": 1}], CONFIG, workers=1)
