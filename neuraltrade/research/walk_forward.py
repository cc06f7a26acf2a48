"""Walk-forward tests: optimise a strategy's parameters on each train window, trade them on the next test window.

`walk_forward` sweeps every train window (the sweep machinery of `neuraltrade.research.sweep`, one pool of
processes for all folds) and trades the best parameters on the following test window only. The test run
reads the bars of the train window as indicator history (warm-up) but its decisions before the first test
bar are dropped, so every trade is entered and every figure measured inside the test window; it is the
run the engine would make on the test window alone, minus the loss of the warm-up bars. Each fold's run
closes its trades at the end of its window (``close_at_end``), so that the next fold starts flat, from the
previous fold's ending equity.

`neuraltrade.research.sweep` re-exports the public names of this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.engine import run_backtest
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.run_spec import run_spec
from neuraltrade.backtest.statistics import compute_statistics
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.errors import ConfigError
from neuraltrade.research.parameter_space import Combination, Space, grid
from neuraltrade.research.sweep import (
    Progress,
    StrategySource,
    _Job,
    _run_windows,
    _sweep_result,
    build,
    check_metric,
    market_window,
)
from neuraltrade.strategies.base import verify_causality

__all__ = ["Fold", "FoldWindow", "WalkForwardResult", "fold_windows", "walk_forward"]

MODES = ("rolling", "anchored")


@dataclass(frozen=True, slots=True)
class FoldWindow:
    """Timeline positions of one fold: train ``[train_start, train_stop)``, then test ``[test_start, test_stop)``."""

    train_start: int
    train_stop: int
    test_start: int
    test_stop: int


def fold_windows(bars: int, *, train_bars: int, test_bars: int, mode: str = "rolling") -> list[FoldWindow]:
    """Return the folds of a walk-forward over `bars` bars; test windows tile the bars after the first train.

    ``rolling`` trains on the `train_bars` bars before each test window; ``anchored`` on every bar before
    it. Only whole test windows are made: the last ``(bars - train_bars) % test_bars`` bars are not tested.
    """
    for name, value in (("train_bars", train_bars), ("test_bars", test_bars)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ConfigError(f"walk-forward {name} must be an integer >= 2, was {value!r}")
    if mode not in MODES:
        raise ConfigError(f"walk-forward mode must be one of {', '.join(MODES)}, was {mode!r}")
    if train_bars + test_bars > bars:
        raise ConfigError(
            f"walk-forward needs train_bars ({train_bars}) + test_bars ({test_bars}) = {train_bars + test_bars} "
            f"bars, the market has {bars}"
        )
    starts = range(train_bars, bars - test_bars + 1, test_bars)
    return [
        FoldWindow(0 if mode == "anchored" else start - train_bars, start, start, start + test_bars) for start in starts
    ]


@dataclass(frozen=True, kw_only=True, eq=False)
class Fold:
    """One fold: its windows, the parameters chosen in sample, and what they did out of sample.

    `params` is None when no combination defined the metric in sample; the fold then stays in cash.
    `equity` holds the account at the close of every test bar; `trades` index the whole market's timeline;
    `statistics` are those of the test window alone, `in_sample` those of the chosen row on the train window.
    """

    number: int
    window: FoldWindow
    test_start_time: datetime
    test_end_time: datetime
    params: Combination | None
    in_sample: dict[str, Any] | None
    skipped: int
    starting_equity: float
    ending_equity: float
    equity: np.ndarray
    trades: tuple[ClosedTrade, ...]
    statistics: dict[str, Any]
    config_digest: str | None


@dataclass(frozen=True, kw_only=True, eq=False)
class WalkForwardResult:
    """Out-of-sample results only: per fold, and for the folds' test windows stitched end to end.

    ``equity[i]`` is the equity at the close of timeline bar ``first_bar + i``; `trades` index the whole
    market's timeline. A fold that ends with no equity left ends the walk.
    """

    mode: str
    metric: str
    train_bars: int
    test_bars: int
    folds: tuple[Fold, ...]
    first_bar: int
    equity: np.ndarray
    trades: tuple[ClosedTrade, ...]
    statistics: dict[str, Any]


def walk_forward(
    market: MarketData,
    strategy: StrategySource,
    space: Space | Sequence[Mapping[str, Any]],
    config: BacktestConfig | None = None,
    *,
    train_bars: int,
    test_bars: int,
    mode: str = "rolling",
    metric: str = "sharpe",
    workers: int | None = None,
    progress: Progress | None = None,
) -> WalkForwardResult:
    """Optimise `strategy` on each train window and report its out-of-sample results on the next test window.

    Parameters
    ----------
    market
        The bars; folds are cut on its timeline.
    strategy
        A registered strategy name or a factory (see `neuraltrade.research.sweep.sweep`).
    space
        A parameter space (expanded by `grid`) or a sequence of combinations (e.g. from `random_sample`).
    config
        The backtest configuration; every run closes its trades at its window's end, and each test run
        starts with the previous fold's ending equity as cash.
    train_bars, test_bars
        Bars per train window (the first one in ``anchored`` mode) and per test window.
    mode
        ``rolling`` (train windows of `train_bars` bars) or ``anchored`` (train from the first bar).
    metric
        The in-sample statistic maximised (minimised for drawdowns and other losses, see
        `neuraltrade.research.sweep.LOWER_IS_BETTER`).
    workers, progress
        As for `neuraltrade.research.sweep.sweep`; every fold's train sweep shares one pool of processes.
    """
    check_metric(metric)
    config = replace(config or BacktestConfig(), close_at_end=True)
    windows = fold_windows(len(market), train_bars=train_bars, test_bars=test_bars, mode=mode)
    combinations = grid(space) if isinstance(space, Mapping) else [dict(combination) for combination in space]
    if not combinations:
        raise ConfigError("walk-forward was given no parameter combinations")
    trains = [(window.train_start, window.train_stop) for window in windows]
    in_sample = _run_windows(_Job(market, strategy, config), trains, combinations, workers, progress)
    folds: list[Fold] = []
    equity = config.cash
    trades: tuple[ClosedTrade, ...]
    digest: str | None
    for number, (window, outcomes) in enumerate(zip(windows, in_sample, strict=True)):
        sweep_result = _sweep_result(metric, outcomes)
        best = sweep_result.best
        if best is None:
            curve, trades, digest = np.full(window.test_stop - window.test_start, equity), (), None
        else:
            curve, trades, digest = _out_of_sample(market, strategy, best.params, replace(config, cash=equity), window)
        folds.append(
            Fold(
                number=number,
                window=window,
                test_start_time=market.datetimes[window.test_start],
                test_end_time=market.datetimes[window.test_stop - 1],
                params=best.params if best is not None else None,
                in_sample=best.statistics if best is not None else None,
                skipped=len(sweep_result.skipped),
                starting_equity=equity,
                ending_equity=float(curve[-1]),
                equity=curve,
                trades=trades,
                statistics=_statistics(market, window.test_start, window.test_stop, curve, trades),
                config_digest=digest,
            )
        )
        equity = float(curve[-1])
        if equity <= 0:
            break
    first, last = folds[0].window.test_start, folds[-1].window.test_stop
    stitched = np.concatenate([fold.equity for fold in folds])
    every_trade = tuple(trade for fold in folds for trade in fold.trades)
    return WalkForwardResult(
        mode=mode,
        metric=metric,
        train_bars=train_bars,
        test_bars=test_bars,
        folds=tuple(folds),
        first_bar=first,
        equity=stitched,
        trades=every_trade,
        statistics=_statistics(market, first, last, stitched, every_trade),
    )


def _out_of_sample(
    market: MarketData, source: StrategySource, params: Combination, config: BacktestConfig, window: FoldWindow
) -> tuple[np.ndarray, tuple[ClosedTrade, ...], str]:
    """Run `params` over train and test bars, deciding on test bars only; equity and trades of the test window."""
    span = market_window(market, window.train_start, window.test_stop)
    strategy = build(source, params)
    begin = window.test_start - window.train_start
    frames = {}
    for symbol in span.symbols:
        history = span.histories[symbol]
        frame = strategy.signals(history)
        frame.check(history, strategy.strategy_id)
        # Given frames, the engine leaves the causality check to whoever computed them.
        if config.verify_causality:
            verify_causality(strategy, history, frame)
        before_test = span.bar_index[symbol] < begin
        frames[symbol] = replace(frame, target=np.where(before_test, np.nan, frame.target))
    spec = run_spec(strategy, config, span)
    result = run_backtest(span, strategy, config, frames=frames, run_id=spec.run_id)
    shift = window.train_start
    trades = tuple(
        trade._replace(entry_bar=trade.entry_bar + shift, exit_bar=trade.exit_bar + shift) for trade in result.trades
    )
    return result.equity[begin:], trades, spec.config_digest


def _statistics(
    market: MarketData, start: int, stop: int, equity: np.ndarray, trades: Sequence[ClosedTrade]
) -> dict[str, Any]:
    closes = market.close[:, start:stop]
    shifted = [trade._replace(entry_bar=trade.entry_bar - start, exit_bar=trade.exit_bar - start) for trade in trades]
    statistics = compute_statistics(
        equity=equity,
        timestamps=market.timestamps[start:stop],
        trades=shifted,
        prices=closes[0] if len(market.symbols) == 1 else closes.T,
    )
    return statistics.to_dict()
