"""Flow `run_backtests`: every configured strategy on every symbol, each run stored with its trades and equity."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import call, call_each, run_hooks, task_runner
from neuraltrade.backtest import BacktestConfig
from neuraltrade.backtest.config import DEFAULT_COMMISSION
from neuraltrade.canonical import digest
from neuraltrade.errors import BacktestsFailed
from neuraltrade.trading.risk import RiskLimits
from neuraltrade.trading.sizing import VolatilityTarget
from tasks import progress
from tasks.backtest import StrategySpec, backtest_symbol
from tasks.database import prepare_database
from tasks.embed import list_symbols
from tasks.runs import current_run_id, finish_run, start_run
from tasks.strategy_context import cache_figures, cache_statistics

#: The strategies the platform ships, with their default parameters.
BASE_STRATEGIES = ("sma_cross", "mean_reversion", "momentum", "neural", "memory_vote")
#: What the night tests: every base strategy, and each gated by what the learning memory knows of it
#: (``gated:<name>``), so that what one night learns gates the next night's signals.
DEFAULT_STRATEGIES = BASE_STRATEGIES + tuple(f"gated:{name}" for name in BASE_STRATEGIES)
#: The night's risk limits: no leverage, and no new risk on a day that has lost 10%. No drawdown halt by
#: default: a halt never lifts by itself (a person lifts it), so over years of history one bad spell
#: would end every later trade and the night would measure nothing; pass ``max_drawdown_halt_pct`` to
#: have one.
DEFAULT_RISK = {"daily_loss_limit_pct": 0.1, "max_leverage": 1.0}
#: The night's sizing: each entry is the position whose annualised volatility, estimated from the last 20
#: daily returns, is 12% of equity, and never more than the equity itself (no leverage). All in, as
#: backtesting.py sizes, stakes the whole account on every signal of a single stock, so one bad spell
#: of a strategy wipes out years; sized by volatility, a run's return measures its decisions, and runs
#: of volatile and quiet symbols take comparable risk. 12% is about a diversified stock index's volatility.
DEFAULT_SIZING = {"annual_volatility": 0.12, "lookback": 20, "max_leverage": 1.0}


@flow(name="run_backtests", task_runner=task_runner(), **run_hooks())
def run_backtests(
    database_url: str | None = None,
    strategies: list[str] | None = None,
    parameters: dict[str, dict[str, Any]] | None = None,
    symbols: list[str] | None = None,
    cash: float = 10_000.0,
    commission: float = DEFAULT_COMMISSION,
    risk: dict[str, float] | None = None,
    sizing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Backtest `strategies` (default: all) on `symbols` (default: every stored symbol) and store each run.

    `parameters` maps a strategy name to its parameters; `risk` holds `RiskLimits` fields; `sizing`
    holds `VolatilityTarget` fields (default `DEFAULT_SIZING`: 12% annual volatility, at most 1 x equity)
    and is part of each run's id. The commission defaults to `DEFAULT_COMMISSION`, the command line's.
    A strategy that fails on one symbol (too little history for its model, no market memory yet) does
    not stop the others; the run then fails at the end, naming every failure. A strategy that needs more
    history than a symbol has is skipped for it, with the reason in the summary.

    The summary's ``cache`` holds what the process's L1 cache of memory reads did during this run (hits,
    misses, hit_rate, entries: `tasks.strategy_context.cache_figures`), which `neuraltrade memory stats` shows.
    """
    url = call(prepare_database, database_url)
    cache_before = cache_statistics()
    config = BacktestConfig(cash=cash, commission=commission)
    limits = RiskLimits(**(DEFAULT_RISK if risk is None else risk))
    sizer = VolatilityTarget(**(DEFAULT_SIZING if sizing is None else sizing))
    names = list(strategies or DEFAULT_STRATEGIES)
    chosen = symbols or call(list_symbols, url)
    specs = [StrategySpec(name=name, params=(parameters or {}).get(name, {})) for name in names]
    progress.expect("backtest", len(specs) * len(chosen))
    run_id = call(
        start_run,
        url,
        "run_backtests",
        digest(
            {
                "config": config.digest,
                "risk": limits.digest,
                "sizing": sizer.digest,
                "strategies": [vars(spec) for spec in specs],
            }
        ),
        str(current_run_id()),
    )
    pairs = [(spec, symbol) for spec in specs for symbol in chosen]
    outcomes = call_each(backtest_symbol, [((url, symbol, spec, config, limits, sizer), {}) for spec, symbol in pairs])
    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for (spec, symbol), outcome in zip(pairs, outcomes, strict=True):
        name = spec.name
        if isinstance(outcome, BaseException):
            failures.append({"strategy": name, "symbol": symbol, "error": str(outcome)})
        elif "skipped" in outcome:
            skipped.append(outcome)
        else:
            runs.append(outcome)
    summary = {
        "runs": runs,
        "skipped": skipped,
        "failures": failures,
        "backtested": len(runs),
        "failed": len(failures),
        "backtest_config_digest": config.digest,
        "commission": config.commission,
        "sizing": {"kind": "volatility_target", **vars(sizer)},
        "cache": cache_figures(cache_before),
    }
    call(finish_run, url, run_id, "failed" if failures else "completed", summary)
    if failures:
        raise BacktestsFailed(failures, len(pairs))
    return summary
