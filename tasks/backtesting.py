"""Run a backtest and store it: the one path of the nightly's task and of ``neuraltrade backtest``.

`run_and_store` builds the strategy with its needs filled from the database (`tasks.strategy_context`),
derives the run's specification (`RunSpec`: its `run_id` is the run's one id, shown alike by the task's
summary, the command's JSON and the stored row), reuses the run stored under that id or runs the
backtest, and stores it whole with what the strategy produced (the model versions its signals link to).
Nothing here asks which strategy runs: what a strategy needs and makes, it declares
(`neuraltrade.strategies.needs`).

No Prefect here: the command line imports this module, and Prefect costs it seconds of start-up.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.backtest_runs import RunOverview, find_run, run_details, save_backtest
from models.engine import resolve_database_url, session_scope
from neuraltrade.backtest import BacktestConfig, BacktestResult, MarketData, run_backtest
from neuraltrade.backtest.controls import risk_check, sizer_for
from neuraltrade.backtest.run_spec import RunSpec, SizingConfig, run_spec
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.strategies.base import Strategy
from neuraltrade.strategies.registry import build_strategy
from neuraltrade.trading.risk import RiskLimits, RiskManager
from tasks.strategy_context import DatabaseContext


@dataclass(frozen=True, kw_only=True)
class StrategySpec:
    """A strategy by name with its parameters (strings or numbers, as on the command line)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, eq=False)
class StoredBacktest:
    """A backtest of `run_and_store`: its specification, strategy, statistics and details, and its result
    unless it was found stored (`result` None: not computed again)."""

    spec: RunSpec
    strategy: Strategy
    result: BacktestResult | None
    statistics: Mapping[str, Any]
    details: Mapping[str, Any]
    #: Whether the run is stored (found stored, or written now).
    stored: bool
    #: Whether this call wrote it.
    newly_stored: bool

    @property
    def run_id(self) -> uuid.UUID:
        """The run's one id (`RunSpec.run_id`)."""
        return self.spec.run_id


def run_and_store(
    database_url: str | None,
    market: MarketData,
    strategy: StrategySpec,
    config: BacktestConfig,
    limits: RiskLimits | None = None,
    sizing: SizingConfig | None = None,
    *,
    store: bool = True,
    reuse: bool = True,
    clock: Clock | None = None,
) -> StoredBacktest:
    """Backtest `strategy` on `market` under `config`, the risk `limits` and the `sizing`, and (if `store`)
    store the run in `database_url` (None: the configured database) under its specification's id.

    A run already stored under that id was computed from exactly these inputs by this engine: with
    `reuse` it is returned as stored and not computed again; without, it is computed again (to show its
    result) and nothing is written. The database is read only for what the strategy needs (a strategy
    that needs nothing, run with ``store=False``, never opens it).

    Raises
    ------
    UnknownStrategy, ConfigError
        If the strategy or a parameter is unknown or refused.
    NotEnoughHistory
        If `market` is too short for the strategy.
    """
    url = resolve_database_url(database_url) if store else database_url
    built = build_strategy(strategy.name, dict(strategy.params), context=DatabaseContext(url), symbols=market.symbols)
    spec = run_spec(built, config, market, limits=limits, sizing=sizing)
    found: RunOverview | None = None
    if store:
        assert url is not None
        with session_scope(url) as session:
            found = find_run(session, spec.run_id)
        if found is not None and reuse:
            return StoredBacktest(
                spec=spec,
                strategy=built,
                result=None,
                statistics=found.statistics,
                details=found.details,
                stored=True,
                newly_stored=False,
            )
    result = run_backtest(
        market,
        built,
        config,
        sizer=sizer_for(sizing) if sizing is not None else None,
        risk=risk_check(RiskManager(limits)) if limits is not None else None,
        # Storing the run's orders needs every order event, which only the bar-by-bar loop records.
        record_orders=store,
        run_id=spec.run_id,
    )
    if not store or found is not None:
        details = run_details(result, limits=limits, sizing=sizing)
        return StoredBacktest(
            spec=spec,
            strategy=built,
            result=result,
            statistics=result.statistics.to_dict(),
            details=found.details if found is not None else details,
            stored=found is not None,
            newly_stored=False,
        )
    # What the strategy made besides signals (a model fitted on the latest bars) costs a fit: only for a
    # run about to be stored.
    products = {symbol: built.products(market.histories[symbol], frame) for symbol, frame in result.frames.items()}
    details = run_details(result, limits=limits, sizing=sizing, products=products)
    versions = [version for made in products.values() for version in made.model_versions]
    retrievals = [retrieval for made in products.values() for retrieval in made.retrievals]
    with session_scope(url, write=True) as session:
        newly = save_backtest(
            session,
            result,
            spec,
            details,
            created_at=(clock or SystemClock()).now(),
            model_versions=versions,
            retrievals=retrievals,
        )
    return StoredBacktest(
        spec=spec,
        strategy=built,
        result=result,
        statistics=result.statistics.to_dict(),
        details=details,
        stored=True,
        newly_stored=newly,
    )
