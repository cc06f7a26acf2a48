"""Parameter research: sweeps of a strategy's parameters over a market, in processes, and market windows.

Combinations come from `grid` or `random_sample` (`neuraltrade.research.parameter_space`, re-exported here).

`sweep` backtests every combination, in parallel processes: each worker receives the market once (its
pool initializer) and then chunks of combinations, so that the per-task cost of a process pool is paid
per chunk, not per backtest. Parameters a strategy refuses are reported as skipped, with the reason.

Walk-forward tests (`walk_forward`, `fold_windows` and their results) live in `neuraltrade.research.walk_forward`,
built on the sweeps here.

Nothing here prints: callers that want a progress bar pass ``progress(done, total)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.engine import StrategyFactory, run_backtest
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.run_spec import market_digest, run_spec
from neuraltrade.backtest.statistics import Statistics
from neuraltrade.errors import ConfigError, NotEnoughHistory, UnknownStrategy
from neuraltrade.market.history import PriceHistory
from neuraltrade.research.parameter_space import Combination, grid, random_sample
from neuraltrade.strategies.base import Strategy
from neuraltrade.strategies.registry import build_strategy

__all__ = [
    "SkippedCombination",
    "SweepPool",
    "SweepResult",
    "SweepRow",
    "build",
    "check_metric",
    "grid",
    "market_window",
    "random_sample",
    "sweep",
]

#: A strategy by registered name (see `neuraltrade.strategies.registry`) or a picklable factory.
StrategySource = str | StrategyFactory
Progress = Callable[[int, int], None]

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
Task = tuple[tuple[int, int], list[tuple[int, Combination]], int]

_worker_job: _Job | None = None
_worker_windows: dict[tuple[int, int], MarketData] = {}


def _initialise_worker(job: _Job) -> None:
    global _worker_job
    _worker_job = job
    _worker_windows.clear()


def _run_task(task: Task) -> list[tuple[int, Outcome]]:
    assert _worker_job is not None, "the pool initializer did not run"
    window, items, scope = task
    if window not in _worker_windows:
        if len(_worker_windows) >= 4:  # a walk-forward's windows arrive in order: keep only the recent ones
            _worker_windows.clear()
        _worker_windows[window] = market_window(_worker_job.market, *window)
    market = _worker_windows[window]
    job = _worker_job
    bars = market_digest(market)
    return [(index, _evaluate(market, bars, job.source, job.config, params, scope)) for index, params in items]


def build(source: StrategySource, params: Mapping[str, Any]) -> Strategy:
    """Build the strategy of `source` (a registered name or a factory) with `params`."""
    if isinstance(source, str):
        return build_strategy(source, params)
    return source(params)


#: Strategies (by id) this process has checked for look-ahead within one sweep or walk-forward (its scope):
#: a walk-forward evaluates the same combination on every fold's window, and the check is about the
#: strategy's code and parameters. Scoped per call, so that each new sweep checks every strategy again.
_checked: set[tuple[int, str]] = set()
_scopes = itertools.count()


def _evaluate(
    market: MarketData, bars: str, source: StrategySource, config: BacktestConfig, params: Combination, scope: int
) -> Outcome:
    """Backtest `params` on `market` (whose digest is `bars`: hashed once per window, not per combination)."""
    try:
        strategy = build(source, params)
        spec = run_spec(strategy, config, market, data_digest=bars)
        if config.verify_causality and (scope, strategy.strategy_id) in _checked:
            unchecked = dataclasses.replace(config, verify_causality=False)
            result = run_backtest(market, strategy, unchecked, run_id=spec.run_id)
        else:
            result = run_backtest(market, strategy, config, run_id=spec.run_id)
        if config.verify_causality:
            _checked.add((scope, strategy.strategy_id))
        statistics = result.statistics.to_dict()
    except _SKIPPED_ERRORS as error:
        return SkippedCombination(params=params, reason=f"{type(error).__name__}: {error}")
    return SweepRow(params=params, statistics=statistics, config_digest=spec.config_digest)


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


def _chunks(windows: Sequence[tuple[int, int]], items: Sequence[Combination], processes: int, scope: int) -> list[Task]:
    total = len(windows) * len(items)
    size = max(1, math.ceil(total / (processes * CHUNKS_PER_WORKER)))
    numbered = list(enumerate(items))
    return [
        (window, numbered[start : start + size], scope) for window in windows for start in range(0, len(numbered), size)
    ]


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
    scope = next(_scopes)
    tasks = _chunks(windows, items, workers or os.cpu_count() or 1, scope)
    processes = min(workers or os.cpu_count() or 1, len(tasks))
    done = 0
    if processes <= 1:
        for window in windows:
            market = market_window(job.market, *window)
            bars = market_digest(market)
            for index, params in enumerate(items):
                found[position[window]][index] = _evaluate(market, bars, job.source, job.config, params, scope)
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
                    window = pending.pop(future)[0]
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
