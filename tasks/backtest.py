"""Backtest tasks: one strategy on one symbol's stored bars; store the run, its signals, orders and model.

A run's id derives from its configuration and the bars it read, so running the night again stores the
same run again (its trades and equity replaced, its signals and orders upserted), never a second copy.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from prefect import task

from models import repositories
from models.backtest_runs import (
    StoredModelVersion,
    StoredRun,
    find_run,
    load_run,
    save_model_version,
    save_run,
)
from models.engine import session_scope
from models.order_records import save_orders, save_rejections, save_signals
from models.vector_snapshot import snapshot
from neuraltrade.backtest import BacktestConfig, BacktestResult, MarketData, run_backtest
from neuraltrade.backtest.controls import SizingConfig, risk_check, sizer_for
from neuraltrade.backtest.result import configuration_digest, market_digest, run_id_for, signal_id_for
from neuraltrade.canonical import to_plain
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.errors import NotEnoughHistory, UnknownSymbol
from neuraltrade.paper import managed_orders
from neuraltrade.report import ReportData
from neuraltrade.risk import RiskLimits, RiskManager
from neuraltrade.strategies.base import PriceHistory, Strategy
from neuraltrade.strategies.neural import Neural, NeuralConfig, train_latest
from neuraltrade.strategies.registry import build_strategy
from tasks import progress
from tasks.embed import MARKET_STATE_COLLECTION
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient

clock: Clock = SystemClock()


@dataclass(frozen=True, kw_only=True)
class StrategySpec:
    """A strategy by name with its parameters (strings or numbers, as on the command line)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


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
    searcher = None
    memory: dict[str, Any] | None = None
    if strategy.name == "memory_vote":
        # The symbol's market states in memory, searched exactly and point in time (every query has its
        # as_of): the store's own exact search, answered from one read instead of a query per bar.
        searcher = snapshot(database_url, MARKET_STATE_COLLECTION, symbol)
        memory = {"collection": MARKET_STATE_COLLECTION, "items": len(searcher), "digest": searcher.digest}
    built = build_strategy(strategy.name, dict(strategy.params), searcher=searcher)
    config_digest = configuration_digest(
        built,
        config,
        risk=limits.digest if limits is not None else None,
        sizing=sizing.digest if sizing is not None else None,
        memory=memory["digest"] if memory is not None else None,
    )
    run_id = run_id_for(config_digest, market_digest(market))
    with session_scope(database_url) as session:
        stored = find_run(session, run_id)
    if stored is not None:
        progress.report("backtest", f"{built.name} {symbol}", 0)
        return _summary(run_id, built, symbol, stored.statistics, stored.details)
    try:
        result = _backtest(market, built, config, limits, sizing)
    except NotEnoughHistory as error:
        # Too short a history for this strategy is a fact about the data, not a failure of the night.
        progress.report("backtest", f"{built.name} {symbol}", 0)
        return {"strategy": built.name, "strategy_id": built.strategy_id, "symbol": symbol, "skipped": str(error)}
    details: dict[str, Any] = {key: to_plain(value) for key, value in result.frames[symbol].details.items()}
    details["rejections"] = len(result.rejections)
    if limits is not None:
        details["risk_limits_digest"] = limits.digest
    if memory is not None:
        details["memory"] = memory
    model = None
    if isinstance(built, Neural):
        assert isinstance(built.config, NeuralConfig)
        try:
            model = train_latest(history, built.config, walk_forward=result.frames[symbol])
            details["model_version"] = model.version_id
        except NotEnoughHistory as error:
            details["model_version"] = None
            details["model_skipped"] = str(error)
    now = clock.now()
    statistics = result.statistics.to_dict()
    with session_scope(database_url, write=True) as session:
        save_run(session, stored_run(result, run_id, config_digest, statistics, details, now))
        save_signals(session, result.signals(run_id), run_id)
        save_orders(session, managed_orders(result, run_id), run_id)
        save_rejections(session, result.rejections, run_id)
        if model is not None:
            save_model_version(
                session,
                StoredModelVersion(
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
                ),
            )
    progress.report("backtest", f"{built.name} {symbol}", len(market))
    return _summary(run_id, built, symbol, statistics, details)


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
        "sharpe": statistics["sharpe"],
        "max_drawdown_pct": statistics["max_drawdown_pct"],
        "rejections": details.get("rejections", 0),
        **extras,
    }


def _backtest(
    market: MarketData,
    strategy: Strategy,
    config: BacktestConfig,
    limits: RiskLimits | None,
    sizing: SizingConfig | None,
) -> BacktestResult:
    return run_backtest(
        market,
        strategy,
        config,
        sizer=sizer_for(sizing) if sizing is not None else None,
        risk=risk_check(RiskManager(limits), strategy.strategy_id) if limits is not None else None,
        record_orders=True,
    )


def stored_run(
    result: BacktestResult,
    run_id: uuid.UUID,
    config_digest: str,
    statistics: Mapping[str, Any],
    details: Mapping[str, Any],
    created_at: datetime,
) -> StoredRun:
    """The storable form of `result` as run `run_id`: identity, configuration, statistics, trades, equity.

    Each trade opened by a decision carries that decision's signal id (in its tag), which the store keeps.
    """
    times = result.market.datetimes
    strategy_id = result.strategy.strategy_id
    trades = tuple(
        trade._replace(tag=str(signal_id_for(run_id, strategy_id, trade.symbol, times[trade.decision_bar])))
        if trade.decision_bar is not None
        else trade
        for trade in result.trades
    )
    return StoredRun(
        id=run_id,
        strategy=result.strategy.name,
        strategy_id=strategy_id,
        config_digest=config_digest,
        strategy_config=to_plain(result.strategy.config),
        backtest_config=to_plain(result.config),
        symbols=tuple(result.market.symbols),
        start=times[0],
        end=times[-1],
        bars=len(result.market),
        data_digest=result.data_digest,
        statistics=dict(statistics),
        details=dict(details),
        created_at=created_at,
        trades=trades,
        timestamps=np.asarray(result.market.timestamps, dtype=np.int64),
        equity=result.equity,
        drawdown_pct=result.drawdown_pct,
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
    return ReportData(
        run_id=str(run.id),
        strategy=run.strategy_id,
        config={"strategy": dict(run.strategy_config), "backtest": dict(run.backtest_config)},
        config_digest=run.config_digest,
        statistics=dict(run.statistics),
        timestamps=run.timestamps,
        equity=run.equity,
        drawdown_pct=run.drawdown_pct,
        prices=prices,
        trades=trades,
    )
