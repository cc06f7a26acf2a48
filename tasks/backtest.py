"""Backtest tasks: one strategy on one symbol's stored bars; store the run, its signals, orders and models.

The task loads the bars, then runs and stores through `tasks.backtesting.run_and_store`, the function
``neuraltrade backtest`` calls too: a run's id is its specification's (`RunSpec.run_id`), so running the
night again finds each run stored and writes nothing, and the command on the same bars and settings
shows the same id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
from prefect import task

from models import repositories
from models.backtest_runs import load_run
from models.engine import session_scope
from neuraltrade.backtest import BacktestConfig, MarketData
from neuraltrade.backtest.run_spec import SizingConfig
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.errors import NotEnoughHistory, UnknownSymbol
from neuraltrade.market.history import PriceHistory
from neuraltrade.research.report import ReportData
from neuraltrade.strategies.base import strategy_id
from neuraltrade.strategies.registry import build_config
from neuraltrade.trading.risk import RiskLimits
from tasks import progress
from tasks.backtesting import StrategySpec, run_and_store
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient
from tasks.tracing import traced

__all__ = ["StrategySpec", "backtest_symbol", "clock", "load_market", "report_data"]

clock: Clock = SystemClock()


def load_market(database_url: str, symbol: str) -> MarketData:
    """Every stored bar of `symbol`, as market data.

    Raises
    ------
    UnknownSymbol
        If no bar of `symbol` is stored.
    """
    with session_scope(database_url) as session:
        frame, _ = repositories.load_bars(session, symbol)
    if frame.empty:
        raise UnknownSymbol(symbol)
    return MarketData.from_histories([PriceHistory.from_frame(frame)])


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
@traced("backtest", "strategy", "symbol")
def backtest_symbol(
    database_url: str,
    symbol: str,
    strategy: StrategySpec,
    config: BacktestConfig,
    limits: RiskLimits | None = None,
    sizing: SizingConfig | None = None,
) -> dict[str, Any]:
    """Backtest `strategy` on every stored bar of `symbol` and store the run; return its summary.

    The run's id derives from everything that shapes it (`RunSpec`): the strategy and its parameters,
    the backtest configuration, the risk limits, the sizing, the bars, what the strategy read besides
    them (the market memory) and the engine's version. A run already stored under that id was computed
    from exactly these and is not computed again, so a second night on the same data changes nothing
    and costs little.
    """
    market = load_market(database_url, symbol)
    item = f"{strategy.name} {symbol}"
    try:
        run = run_and_store(database_url, market, strategy, config, limits, sizing, clock=clock)
    except NotEnoughHistory as error:
        # Too short a history for this strategy is a fact about the data, not a failure of the night.
        progress.report("backtest", item, 0)
        identity = strategy_id(strategy.name, build_config(strategy.name, dict(strategy.params)))
        return {"strategy": strategy.name, "strategy_id": identity, "symbol": symbol, "skipped": str(error)}
    progress.report("backtest", item, 0 if run.result is None else len(market))
    return _summary(run.run_id, run.strategy.name, run.strategy.strategy_id, symbol, run.statistics, run.details)


def _summary(
    run_id: uuid.UUID,
    strategy: str,
    strategy_id: str,
    symbol: str,
    statistics: Mapping[str, Any],
    details: Mapping[str, Any],
) -> dict[str, Any]:
    extras: dict[str, Any] = {
        name: details[name] for name in ("out_of_sample_hit_rate", "model_version") if name in details
    }
    if "memory" in details:
        extras["memory_items"] = details["memory"]["items"]
    return {
        "run_id": str(run_id),
        "strategy": strategy,
        "strategy_id": strategy_id,
        "symbol": symbol,
        "trades": statistics["trades"],
        "return_pct": statistics["return_pct"],
        # Beside the return, what holding the symbol returned and how much of the time the run was in
        # the market: a return means little without them.
        "buy_hold_return_pct": statistics["buy_hold_return_pct"],
        "exposure_pct": statistics["exposure_pct"],
        "sharpe": statistics["sharpe"],
        "max_drawdown_pct": statistics["max_drawdown_pct"],
        "rejections": details.get("rejections", 0),
        **extras,
    }


def report_data(database_url: str | None, run_id: str) -> ReportData:
    """Read stored run `run_id` and the closes of its symbols into the report's input."""
    from models.engine import resolve_database_url
    from neuraltrade.errors import UnknownRun

    url = resolve_database_url(database_url)
    try:
        identifier = uuid.UUID(run_id)
    except ValueError:
        raise UnknownRun(run_id) from None
    with session_scope(url) as session:
        run = load_run(session, identifier)
        prices = {}
        for symbol in run.symbols:
            frame, _ = repositories.load_bars(session, symbol)
            history = PriceHistory.from_frame(frame) if not frame.empty else None
            closes = np.full(len(run.timestamps), np.nan)
            if history is not None:
                positions = np.searchsorted(history.timestamps, run.timestamps)
                inside = positions < len(history)
                found = inside.copy()
                found[inside] = history.timestamps[positions[inside]] == run.timestamps[inside]
                closes[found] = history.close[positions[found]]
            prices[symbol] = closes
        # The regret panel of the report: the run's simulated alternatives, when the nightly simulated them.
        from tasks.learning_report import regret_rows

        _, regret = regret_rows(session, run.id)
    trades = [trade.to_row() for trade in run.trades]
    sizing = run.details.get("sizing")
    config: dict[str, Any] = {"strategy": dict(run.strategy_config), "backtest": dict(run.backtest_config)}
    config.update(
        {name: run.details[key] for name, key in (("sizing", "sizing"), ("risk", "risk_limits")) if key in run.details}
    )
    return ReportData(
        run_id=str(run.id),
        strategy=run.strategy,
        strategy_id=run.strategy_id,
        parameters=dict(run.strategy_config),
        cash=float(run.backtest_config["cash"]),
        commission=float(run.backtest_config["commission"]),
        sizing=dict(sizing) if sizing else None,
        config=config,
        config_digest=run.config_digest,
        statistics=dict(run.statistics),
        timestamps=run.timestamps,
        equity=run.equity,
        drawdown_pct=run.drawdown_pct,
        prices=prices,
        trades=trades,
        regret=regret,
    )
