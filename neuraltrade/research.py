"""Parameter research: sweeps of a strategy's parameters over a market, and walk-forward tests.

Combinations come from `grid` or `random_sample` (`neuraltrade.parameter_space`, re-exported here).

`sweep` backtests every combination, in parallel processes: each worker receives the market once (its
pool initializer) and then chunks of combinations, so that the per-task cost of a process pool is paid
per chunk, not per backtest. Parameters a strategy refuses are reported as skipped, with the reason.

`walk_forward` optimises on each train window and trades the best parameters on the following test
window only. The test run reads the bars of the train window as indicator history (warm-up) but its
decisions before the first test bar are dropped, so every trade is entered and every figure measured
inside the test window; it is the run the engine would make on the test window alone, minus the loss
of the warm-up bars. Each fold's run closes its trades at the end of its window (``close_at_end``), so
that the next fold starts flat, from the previous fold's ending equity.

Nothing here prints: callers that want a progress bar pass ``progress(done, total)``.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.engine import StrategyFactory, run_backtest
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.statistics import Statistics, compute_statistics
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.errors import ConfigError, NotEnoughHistory, UnknownStrategy
from neuraltrade.parameter_space import Combination, Space, grid, random_sample
from neuraltrade.strategies.base import PriceHistory, Strategy, verify_causality
from neuraltrade.strategies.registry import build_strategy

__all__ = [
    "Fold",
    "FoldWindow",
    "SkippedCombination",
    "SweepPool",
    "SweepResult",
    "SweepRow",
    "WalkForwardResult",
    "build",
    "check_metric",
    "fold_windows",
    "grid",
    "market_window",
    "random_sample",
    "sweep",
    "walk_forward",
]

#: A strategy by registered name (see `neuraltrade.strategies.registry`) or a picklable factory.
StrategySource = str | StrategyFactory
Progress = Callable[[int, int], None]

MODES = ("rolling", "anchored")
#: Metrics for which a smaller value is the better one; every other statistic is maximised.
LOWER_IS_BETTER = frozenset(
    {
        "max_drawdown_pct",
        "avg_drawdown_pct",
        "max_drawdown_duration_days",
        "avg_drawdown_duration_days",
        "volatility_ann_pct",
        "var_95_pct",
        "cvar_95_pct",
        "commissions",
    }
)
METRICS = tuple(field.name for field in dataclasses.fields(Statistics) if field.name not in ("start", "end"))
#: Chunks per worker: enough to even out chunks of unequal cost, few enough that a chunk's fixed cost
#: (pickling the task and its rows) stays small beside its backtests.
CHUNKS_PER_WORKER = 4
#: Errors that mean "these parameters do not fit this strategy or these bars": the combination is skipped.
_SKIPPED_ERRORS = (ConfigError, UnknownStrategy, NotEnoughHistory)


# ----------------------------------------------------------------------------------------------------
# Sweeps


@dataclass(frozen=True, kw_only=True)
class SweepRow:
    """One backtested combination: its parameters, its statistics (`Statistics.to_dict`) and the run's digest."""

    params: Combination
    statistics: dict[str, Any]
    config_digest: str

    def value(self, metric: str) -> float | None:
        """The statistic `metric` of this run, None where it is undefined (NaN)."""
        value = self.statistics.get(metric)
        return float(value) if value is not None else None


@dataclass(frozen=True, kw_only=True)
class SkippedCombination:
    """A combination that was not backtested, and why (the strategy or the bars refused the parameters)."""

    params: Combination
    reason: str


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """The rows of a sweep in the order of its combinations, the skipped ones, and the metric that ranks them."""

    metric: str
    rows: tuple[SweepRow, ...]
    skipped: tuple[SkippedCombination, ...]

    def ranked(self) -> list[SweepRow]:
        """Rows with a defined metric, best first (ties keep the combinations' order)."""
        sign = 1.0 if self.metric in LOWER_IS_BETTER else -1.0
        defined = [row for row in self.rows if row.value(self.metric) is not None]
        return sorted(defined, key=lambda row: sign * (row.value(self.metric) or 0.0))

    @property
    def best(self) -> SweepRow | None:
        """The best row by the metric, None when no row defines it."""
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def records(self) -> list[dict[str, Any]]:
        """Every row as one flat dict (parameters, statistics, ``config_digest``), e.g. for a DataFrame."""
        return [{**row.params, **row.statistics, "config_digest": row.config_digest} for row in self.rows]


@dataclass(frozen=True, eq=False)
class _Job:
    """What every worker of a sweep holds: the bars, the strategy and the backtest configuration."""

    market: MarketData
    source: StrategySource
    config: BacktestConfig


Outcome = SweepRow | SkippedCombination
#: A task: the window of the market (first bar, bar after the last) and its (index, combination) items.
Task = tuple[tuple[int, int], list[tuple[int, Combination]]]

_worker_job: _Job | None = None
_worker_windows: dict[tuple[int, int], MarketData] = {}


def _initialise_worker(job: _Job) -> None:
    global _worker_job
    _worker_job = job
    _worker_windows.clear()


def _run_task(task: Task) -> list[tuple[int, Outcome]]:
    assert _worker_job is not None, "the pool initializer did not run"
    window, items = task
    if window not in _worker_windows:
        if len(_worker_windows) >= 4:  # a walk-forward's windows arrive in order: keep only the recent ones
            _worker_windows.clear()
        _worker_windows[window] = market_window(_worker_job.market, *window)
    market = _worker_windows[window]
    return [(index, _evaluate(market, _worker_job.source, _worker_job.config, params)) for index, params in items]


def build(source: StrategySource, params: Mapping[str, Any]) -> Strategy:
    """Build the strategy of `source` (a registered name or a factory) with `params`."""
    if isinstance(source, str):
        return build_strategy(source, params)
    return source(params)


def _evaluate(market: MarketData, source: StrategySource, config: BacktestConfig, params: Combination) -> Outcome:
    try:
        strategy = build(source, params)
        result = run_backtest(market, strategy, config)
        statistics = result.statistics.to_dict()
    except _SKIPPED_ERRORS as error:
        return SkippedCombination(params=params, reason=f"{type(error).__name__}: {error}")
    return SweepRow(params=params, statistics=statistics, config_digest=result.config_digest)


def check_metric(metric: str) -> str:
    """Return `metric` if it names a numeric statistic, else raise `ConfigError` listing them."""
    if metric not in METRICS:
        raise ConfigError(f"metric {metric!r} is not a statistic; choose one of {', '.join(METRICS)}")
    return metric


def sweep(
    market: MarketData,
    strategy: StrategySource,
    combinations: Sequence[Mapping[str, Any]],
    config: BacktestConfig | None = None,
    *,
    workers: int | None = None,
    metric: str = "sharpe",
    progress: Progress | None = None,
) -> SweepResult:
    """Backtest `strategy` with every combination of parameters on `market`.

    Parameters
    ----------
    market
        The bars every run reads.
    strategy
        A registered strategy name, or a factory from parameters to a `Strategy`. Workers are forked
        where the platform can (Linux), so they inherit it; elsewhere it must be picklable (a module-level
        function or class).
    combinations
        Parameter dicts, e.g. from `grid` or `random_sample`.
    config
        The backtest configuration of every run (default `BacktestConfig()`).
    workers
        Processes; ``1`` runs in this process. Default: the CPU count, capped by the number of chunks.
    metric
        The statistic that `SweepResult.ranked` and `SweepResult.best` rank by.
    progress
        Called as ``progress(done, total)`` as combinations finish.

    Returns
    -------
    SweepResult
        One row per backtested combination, in the order given, and the skipped combinations with reasons.
    """
    check_metric(metric)
    items = [dict(combination) for combination in combinations]
    outcomes = _run_windows(
        _Job(market, strategy, config or BacktestConfig()), [(0, len(market))], items, workers, progress
    )
    return _sweep_result(metric, outcomes[0])


class SweepPool:
    """Worker processes kept warm for many sweeps of one strategy on one market, as a context manager.

    A sweep starts its processes and ships them the market each time (~30 ms); research that sweeps
    again and again (an optimiser, a notebook) keeps one pool instead::

        with SweepPool(market, "sma_cross", config) as pool:
            first = pool.sweep(grid({"fast": [5, 10], "slow": [20, 50]}))
    """

    def __init__(
        self, market: MarketData, strategy: StrategySource, config: BacktestConfig | None = None, *, workers: int = 0
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"sweep pool workers must be a positive integer (0: the CPU count), was {workers!r}")
        self.job = _Job(market, strategy, config or BacktestConfig())
        self.workers = workers or os.cpu_count() or 1
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> SweepPool:
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=_pool_context(), initializer=_initialise_worker, initargs=(self.job,)
        )
        # Start every worker now, so that the first sweep finds them ready.
        list(self._executor.map(_ready, range(self.workers)))
        return self

    def __exit__(self, *exception: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def sweep(
        self, combinations: Sequence[Mapping[str, Any]], *, metric: str = "sharpe", progress: Progress | None = None
    ) -> SweepResult:
        """`sweep` of this pool's strategy and market over `combinations`, in the warm workers."""
        if self._executor is None:
            raise ConfigError("a SweepPool sweeps inside its `with` block only")
        check_metric(metric)
        items = [dict(combination) for combination in combinations]
        outcomes = _run_windows(self.job, [(0, len(self.job.market))], items, self.workers, progress, self._executor)
        return _sweep_result(metric, outcomes[0])


def _ready(_: int) -> bool:
    return _worker_job is not None


def _sweep_result(metric: str, outcomes: Sequence[Outcome]) -> SweepResult:
    return SweepResult(
        metric=metric,
        rows=tuple(outcome for outcome in outcomes if isinstance(outcome, SweepRow)),
        skipped=tuple(outcome for outcome in outcomes if isinstance(outcome, SkippedCombination)),
    )


def _chunks(windows: Sequence[tuple[int, int]], items: Sequence[Combination], processes: int) -> list[Task]:
    total = len(windows) * len(items)
    size = max(1, math.ceil(total / (processes * CHUNKS_PER_WORKER)))
    numbered = list(enumerate(items))
    return [(window, numbered[start : start + size]) for window in windows for start in range(0, len(numbered), size)]


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts a worker in milliseconds, with every module imported and the market in memory already;
    # spawn and forkserver start an interpreter that imports the caller's main module again, per worker.
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)


def _run_windows(
    job: _Job,
    windows: Sequence[tuple[int, int]],
    items: Sequence[Combination],
    workers: int | None,
    progress: Progress | None,
    executor: ProcessPoolExecutor | None = None,
) -> list[list[Outcome]]:
    """Evaluate every combination on every window; outcomes per window, in the combinations' order."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"sweep workers must be a positive integer, was {workers!r}")
    total = len(windows) * len(items)
    found: list[dict[int, Outcome]] = [{} for _ in windows]
    position = {window: number for number, window in enumerate(windows)}
    tasks = _chunks(windows, items, workers or os.cpu_count() or 1)
    processes = min(workers or os.cpu_count() or 1, len(tasks))
    done = 0
    if processes <= 1:
        for window in windows:
            market = market_window(job.market, *window)
            for index, params in enumerate(items):
                found[position[window]][index] = _evaluate(market, job.source, job.config, params)
                done += 1
                if progress is not None:
                    progress(done, total)
    else:
        pool = executor or ProcessPoolExecutor(
            max_workers=processes, mp_context=_pool_context(), initializer=_initialise_worker, initargs=(job,)
        )
        try:
            pending: dict[Future[list[tuple[int, Outcome]]], Task] = {
                pool.submit(_run_task, task): task for task in tasks
            }
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    window, _ = pending.pop(future)
                    outcomes = future.result()
                    found[position[window]].update(outcomes)
                    done += len(outcomes)
                    if progress is not None:
                        progress(done, total)
        finally:
            # Once every result is in (or one failed), waiting for the workers to exit gains nothing.
            if executor is None:
                pool.shutdown(wait=False, cancel_futures=True)
    return [[outcomes[index] for index in range(len(items))] for outcomes in found]


# ----------------------------------------------------------------------------------------------------
# Market windows


def market_window(market: MarketData, start: int, stop: int) -> MarketData:
    """Return the bars of timeline positions ``[start, stop)`` of `market` as market data of their own."""
    if not 0 <= start < stop <= len(market):
        raise ConfigError(f"window [{start}, {stop}) lies outside the market's {len(market)} bars")
    if start == 0 and stop == len(market):
        return market
    histories = []
    for symbol in market.symbols:
        first, last = np.searchsorted(market.bar_index[symbol], [start, stop]).tolist()
        if last > first:
            history = market.histories[symbol]
            arrays = {name: getattr(history, name)[first:last] for name in ("open", "high", "low", "close", "volume")}
            histories.append(PriceHistory(symbol=symbol, timestamps=history.timestamps[first:last], **arrays))
    return MarketData.from_histories(histories)


# ----------------------------------------------------------------------------------------------------
# Walk-forward


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
        A registered strategy name or a factory (see `sweep`).
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
        The in-sample statistic maximised (minimised for drawdowns and other losses, see `LOWER_IS_BETTER`).
    workers, progress
        As for `sweep`; every fold's train sweep shares one pool of processes.
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
    result = run_backtest(span, strategy, config, frames=frames)
    shift = window.train_start
    trades = tuple(
        trade._replace(entry_bar=trade.entry_bar + shift, exit_bar=trade.exit_bar + shift) for trade in result.trades
    )
    return result.equity[begin:], trades, result.config_digest


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
