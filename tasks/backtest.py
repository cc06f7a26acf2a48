"""Backtest tasks: one strategy on one symbol's stored bars; store the run, its signals, orders and model.

A run's id derives from its configuration and the bars it read (`models.backtest_runs.run_identity`), so
running the night again finds each run stored and writes nothing; a run is stored whole, as
``neuraltrade backtest`` stores its runs, by `models.backtest_runs.save_backtest`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prefect import task

from models import repositories
from models.backtest_runs import (
    StoredModelVersion,
    find_run,
    load_run,
    run_details,
    run_identity,
    save_backtest,
    save_model_version,
)
from models.engine import session_scope
from models.vector_snapshot import snapshot
from neuraltrade.backtest import BacktestConfig, BacktestResult, MarketData, run_backtest
from neuraltrade.backtest.controls import SizingConfig, risk_check, sizer_for
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.errors import NotEnoughHistory, UnknownSymbol
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.snapshot import MemorySnapshot
from neuraltrade.research.report import ReportData
from neuraltrade.strategies.base import Strategy
from neuraltrade.strategies.neural import Neural, NeuralConfig, train_latest
from neuraltrade.strategies.registry import build_strategy
from neuraltrade.trading.risk import RiskLimits, RiskManager
from tasks import progress
from tasks.embed import MARKET_STATE_COLLECTION
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient

clock: Clock = SystemClock()


@dataclass(frozen=True, kw_only=True)
class StrategySpec:
    """A strategy by name with its parameters (strings or numbers, as on the command line)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


def market_memory(database_url: str, symbol: str | None) -> tuple[MemorySnapshot, dict[str, Any]]:
    """The market states `memory_vote` searches (of `symbol`, or every symbol's if None) and what the run
    records of them: collection, items and digest.

    The store's own exact search, point in time (every query has its as_of), answered from one read
    instead of a query per bar.

    Raises
    ------
    CollectionNotFound
        If the database holds no market memory yet.
    """
    searcher = snapshot(database_url, MARKET_STATE_COLLECTION, symbol)
    return searcher, {"collection": MARKET_STATE_COLLECTION, "items": len(searcher), "digest": searcher.digest}


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def backtest_symbol(
    database_url: str,
    symbol: str,
    strategy: StrategySpec,
    config: BacktestConfig,
    limits: RiskLimits | None = None,
    sizing: SizingConfig | None = None,
) -> dict[str, Any]:
    """Backtest `strategy` on every stored bar of `symbol` and store the run; return its summary.

    The run's id derives from everything that shapes it: the strategy and its parameters, the backtest
    configuration, the risk limits, the sizing, the bars and (for the memory strategy) the memory read.
    A run already stored under that id was computed from exactly these and is not computed again, so a
    second night on the same data changes nothing and costs little.
    """
    with session_scope(database_url) as session:
        frame, _ = repositories.load_bars(session, symbol)
    if frame.empty:
        raise UnknownSymbol(symbol)
    history = PriceHistory.from_frame(frame)
    market = MarketData.from_histories([history])
    searcher, memory = market_memory(database_url, symbol) if strategy.name == "memory_vote" else (None, None)
    built = build_strategy(strategy.name, dict(strategy.params), searcher=searcher)
    identity = run_identity(built, config, market, limits=limits, sizing=sizing, memory=memory)
    with session_scope(database_url) as session:
        stored = find_run(session, identity.run_id)
    if stored is not None:
        progress.report("backtest", f"{built.name} {symbol}", 0)
        return _summary(identity.run_id, built, symbol, stored.statistics, stored.details)
    try:
        result = backtest(market, built, config, limits, sizing)
    except NotEnoughHistory as error:
        # Too short a history for this strategy is a fact about the data, not a failure of the night.
        progress.report("backtest", f"{built.name} {symbol}", 0)
        return {"strategy": built.name, "strategy_id": built.strategy_id, "symbol": symbol, "skipped": str(error)}
    details = run_details(result, limits=limits, sizing=sizing, memory=memory)
    now = clock.now()
    model_version = None
    if isinstance(built, Neural):
        assert isinstance(built.config, NeuralConfig)
        try:
            model = train_latest(history, built.config, walk_forward=result.frames[symbol])
        except NotEnoughHistory as error:
            details["model_version"] = None
            details["model_skipped"] = str(error)
        else:
            details["model_version"] = model.version_id
            model_version = StoredModelVersion(
                id=model.version_id,
                strategy=built.name,
                symbol=symbol,
                trained_from=model.trained_from,
                trained_to=model.trained_to,
                train_samples=model.train_samples,
                test_samples=model.test_samples,
                out_of_sample_hit_rate=model.out_of_sample_hit_rate,
                parameters=model.parameters,
                model=model.model,
                created_at=now,
            )
    with session_scope(database_url, write=True) as session:
        if save_backtest(session, result, identity, details, created_at=now) and model_version is not None:
            save_model_version(session, model_version)
    progress.report("backtest", f"{built.name} {symbol}", len(market))
    return _summary(identity.run_id, built, symbol, result.statistics.to_dict(), details)


def _summary(
    run_id: uuid.UUID, strategy: Strategy, symbol: str, statistics: Mapping[str, Any], details: Mapping[str, Any]
) -> dict[str, Any]:
    extras: dict[str, Any] = {
        name: details[name] for name in ("out_of_sample_hit_rate", "model_version") if name in details
    }
    if "memory" in details:
        extras["memory_items"] = details["memory"]["items"]
    return {
        "run_id": str(run_id),
        "strategy": strategy.name,
        "strategy_id": strategy.strategy_id,
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


def backtest(
    market: MarketData,
    strategy: Strategy,
    config: BacktestConfig,
    limits: RiskLimits | None = None,
    sizing: SizingConfig | None = None,
) -> BacktestResult:
    """Run `strategy` on `market` under the risk `limits` and the `sizing`, recording every order event
    (which storing the run's orders needs)."""
    return run_backtest(
        market,
        strategy,
        config,
        sizer=sizer_for(sizing) if sizing is not None else None,
        risk=risk_check(RiskManager(limits), strategy.strategy_id) if limits is not None else None,
        record_orders=True,
    )


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
    )
