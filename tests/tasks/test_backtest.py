"""The backtest task: a run stored with its trades, equity, signals, orders and rejections, idempotently."""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from models import repositories, run_summaries
from models.backtest_runs import find_model_versions, latest_model_version, load_run
from models.engine import session_scope
from models.order_records import load_rejections, load_signals
from neuraltrade.backtest import BacktestConfig
from neuraltrade.backtest.run_spec import ENGINE_VERSION
from neuraltrade.errors import UnknownRun, UnknownSymbol
from neuraltrade.market.ingest import read_bars
from neuraltrade.records import CauseKind
from neuraltrade.research.report import render_report
from neuraltrade.strategies.needs import model_version_uuid
from neuraltrade.trading.risk import RiskLimits
from neuraltrade.trading.sizing import VolatilityTarget
from tasks.backtest import StrategySpec, backtest_symbol, report_data

SAMPLE = Path(__file__).parent.parent.parent / "neuraltrade" / "sample_data" / "NVDA.csv"


@pytest.fixture
def with_bars(database_url: str) -> str:
    frame = read_bars(SAMPLE).frame.drop(columns=["line"], errors="ignore").iloc[:800]
    with session_scope(database_url, write=True) as session:
        repositories.upsert_bars(session, frame, source="test", now=datetime(2026, 1, 1, tzinfo=UTC))
    return database_url


def test_a_backtest_is_stored_with_its_trades_equity_signals_and_orders(with_bars: str) -> None:
    summary = backtest_symbol.fn(with_bars, "NVDA", StrategySpec(name="sma_cross"), BacktestConfig(commission=0.001))

    with session_scope(with_bars) as session:
        run = load_run(session, uuid.UUID(summary["run_id"]))
        counts = run_summaries.table_counts(session)
        signals = load_signals(session, run.id)
    assert run.strategy == "sma_cross" and run.symbols == ("NVDA",) and run.bars == 800
    assert len(run.trades) == summary["trades"] == run.statistics["trades"] > 0
    assert len(run.equity) == len(run.timestamps) == 800
    assert run.equity[0] == 10_000.0 and np.all(run.drawdown_pct >= 0)
    assert len(run.config_digest) == 64
    # Every decision is a signal linked to its bar's observation; every signal placed orders.
    assert len(signals) == counts["signals"] > 0
    assert all(signal.causal_links for signal in signals)
    assert counts["orders"] >= len(signals) and counts["order_events"] > counts["orders"]
    # Beside its return, the summary says what holding the symbol returned and how long the run held it.
    assert summary["buy_hold_return_pct"] == run.statistics["buy_hold_return_pct"]
    assert summary["exposure_pct"] == run.statistics["exposure_pct"] > 0


def _contents(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, so that a test sees any change, not only a change of counts."""
    from sqlalchemy import select

    from models.base import Base

    with session_scope(database_url) as session:
        return {
            table.name: sorted(map(tuple, session.execute(select(table)).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }


def test_running_a_backtest_again_changes_no_row(with_bars: str) -> None:
    spec = StrategySpec(name="mean_reversion", params={"lookback": "15"})
    limits = RiskLimits(max_order_notional=5_000.0)
    first = backtest_symbol.fn(with_bars, "NVDA", spec, BacktestConfig(), limits)
    before = _contents(with_bars)

    again = backtest_symbol.fn(with_bars, "NVDA", spec, BacktestConfig(), limits)

    assert again == first
    assert _contents(with_bars) == before


def test_other_risk_limits_make_another_run_and_leave_the_first_whole(with_bars: str) -> None:
    spec = StrategySpec(name="sma_cross")
    first = backtest_symbol.fn(with_bars, "NVDA", spec, BacktestConfig())
    with session_scope(with_bars) as session:
        first_signals = load_signals(session, uuid.UUID(first["run_id"]))

    second = backtest_symbol.fn(with_bars, "NVDA", spec, BacktestConfig(), RiskLimits(max_order_notional=100.0))

    assert second["run_id"] != first["run_id"]
    with session_scope(with_bars) as session:
        assert load_signals(session, uuid.UUID(first["run_id"])) == first_signals
        assert len(load_run(session, uuid.UUID(first["run_id"])).trades) == first["trades"]
        assert load_rejections(session, uuid.UUID(first["run_id"])) == []
        assert len(load_rejections(session, uuid.UUID(second["run_id"]))) == second["rejections"] > 0


def test_each_stored_trade_names_the_signal_that_opened_it(with_bars: str) -> None:
    from sqlalchemy import select

    from models.trading import BacktestTradeRecord

    summary = backtest_symbol.fn(with_bars, "NVDA", StrategySpec(name="sma_cross"), BacktestConfig())
    run_id = uuid.UUID(summary["run_id"])
    with session_scope(with_bars) as session:
        signal_ids = {signal.id for signal in load_signals(session, run_id)}
        linked = session.scalars(
            select(BacktestTradeRecord.signal_id).where(BacktestTradeRecord.run_id == run_id)
        ).all()
    assert linked and set(linked) <= signal_ids


def test_risk_rejections_are_stored_with_the_run(with_bars: str) -> None:
    limits = RiskLimits(max_order_notional=100.0)
    summary = backtest_symbol.fn(with_bars, "NVDA", StrategySpec(name="sma_cross"), BacktestConfig(), limits)

    with session_scope(with_bars) as session:
        rejections = load_rejections(session, uuid.UUID(summary["run_id"]))
    assert summary["trades"] == 0 and summary["rejections"] == len(rejections) > 0
    assert {rejection.rule for rejection in rejections} == {"max_order_notional"}
    assert all("max_order_notional 100.00" in rejection.reason for rejection in rejections)


def test_the_neural_strategy_stores_its_model_version_and_out_of_sample_hit_rate(with_bars: str) -> None:
    params = {"train_bars": "200", "min_train_samples": "150", "retrain_every": "100"}
    summary = backtest_symbol.fn(with_bars, "NVDA", StrategySpec(name="neural", params=params), BacktestConfig())

    assert 0.0 <= summary["out_of_sample_hit_rate"] <= 1.0
    with session_scope(with_bars) as session:
        run = load_run(session, uuid.UUID(summary["run_id"]))
        model = latest_model_version(session, "neural", "NVDA")
        signals = load_signals(session, run.id)
        linked = {
            link.cause_id
            for signal in signals
            for link in signal.causal_links
            if link.cause_kind is CauseKind.MODEL_VERSION
        }
        named = {model_version_uuid(version) for version in run.details["model_versions"]}
        stored = find_model_versions(session, named | linked)
    assert model is not None and model.id == run.details["model_version"] == summary["model_version"]
    assert model.model and model.out_of_sample_hit_rate == summary["out_of_sample_hit_rate"]
    # No dangling link: every model the run names is stored (described; the latest one with its bytes).
    assert linked and linked <= named and set(stored) == named
    assert all(version.model is None for version in stored.values() if version.id != model.id)


def test_a_run_stored_by_another_engine_is_computed_again_and_kept(
    with_bars: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = StrategySpec(name="sma_cross")
    first = backtest_symbol.fn(with_bars, "NVDA", spec, BacktestConfig())
    monkeypatch.setattr(importlib.import_module("neuraltrade.backtest.run_spec"), "ENGINE_VERSION", "next")

    second = backtest_symbol.fn(with_bars, "NVDA", spec, BacktestConfig())

    assert second["run_id"] != first["run_id"]
    with session_scope(with_bars) as session:
        runs = {run: load_run(session, uuid.UUID(run)) for run in (first["run_id"], second["run_id"])}
        assert run_summaries.table_counts(session)["backtest_runs"] == 2
    assert runs[first["run_id"]].engine_version == ENGINE_VERSION and runs[second["run_id"]].engine_version == "next"
    assert len(runs[second["run_id"]].trades) == len(runs[first["run_id"]].trades) == first["trades"]


def test_an_unknown_symbol_is_named(database_url: str) -> None:
    with pytest.raises(UnknownSymbol, match="'MSFT'"):
        backtest_symbol.fn(database_url, "MSFT", StrategySpec(name="sma_cross"), BacktestConfig())


def test_report_data_reads_a_stored_run_with_its_prices(with_bars: str) -> None:
    summary = backtest_symbol.fn(with_bars, "NVDA", StrategySpec(name="momentum"), BacktestConfig())
    data = report_data(with_bars, summary["run_id"])
    assert data.run_id == summary["run_id"] and len(data.prices["NVDA"]) == len(data.timestamps) == 800
    assert (data.strategy, data.strategy_id) == ("momentum", summary["strategy_id"])
    assert data.parameters["lookback"] == 60 and (data.cash, data.commission) == (10_000.0, 0.0)
    assert not np.isnan(data.prices["NVDA"]).any()
    with pytest.raises(UnknownRun):
        report_data(with_bars, str(uuid.UUID(int=1)))


def test_a_run_sized_by_volatility_is_another_run_that_stores_its_sizing_for_the_report(with_bars: str) -> None:
    from flows.run_backtests import DEFAULT_SIZING

    spec, config, limits = (
        StrategySpec(name="sma_cross"),
        BacktestConfig(commission=0.001),
        RiskLimits(max_leverage=1.0),
    )
    all_in = backtest_symbol.fn(with_bars, "NVDA", spec, config, limits)
    sizing = VolatilityTarget(**DEFAULT_SIZING)

    sized = backtest_symbol.fn(with_bars, "NVDA", spec, config, limits, sizing)

    assert sized["run_id"] != all_in["run_id"]
    with session_scope(with_bars) as session:
        stored = {run: load_run(session, uuid.UUID(run)) for run in (all_in["run_id"], sized["run_id"])}
    assert stored[sized["run_id"]].details["sizing"]["annual_volatility"] == DEFAULT_SIZING["annual_volatility"]
    assert "sizing" not in stored[all_in["run_id"]].details
    # A volatility target of 12% never holds more than the equity: its positions are the smaller ones.
    largest = {run: max(abs(trade.size * trade.entry_price) for trade in found.trades) for run, found in stored.items()}
    assert largest[sized["run_id"]] < largest[all_in["run_id"]]
    data = report_data(with_bars, sized["run_id"])
    assert data.sizing is not None and data.sizing["kind"] == "volatility_target"
    assert "<dt>Sizing</dt><dd>volatility target: annual_volatility=0.12, lookback=20" in render_report(data)
