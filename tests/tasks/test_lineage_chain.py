"""The chain of a stored run, end to end: every closed trade leads back through its fills, orders and signal
to the observations, memory items and model versions that caused it (`models.lineage.broken_links`),
on a new database and on one the previous release wrote, once migrated."""

from __future__ import annotations

import gzip
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models import repositories
from models.backtest_runs import list_runs, load_run
from models.engine import dispose_engines, session_scope
from models.lineage import broken_links
from models.migrations import upgrade_database
from neuraltrade.backtest import BacktestConfig
from neuraltrade.market.ingest import read_bars
from neuraltrade.memory.embedding import WindowEmbedderConfig
from neuraltrade.trading.risk import RiskLimits
from tasks.backtest import StrategySpec, backtest_symbol
from tasks.embed import embed_symbol

SAMPLE = Path(__file__).parents[2] / "neuraltrade" / "sample_data" / "NVDA.csv"
PREVIOUS = Path(__file__).parents[1] / "data" / "previous_schema" / "revision_0003.db.gz"
DIMENSION = 16
STRATEGIES = (
    StrategySpec(name="memory_vote", params={"dimension": DIMENSION, "min_confidence": 0.6}),
    StrategySpec(name="neural", params={"train_bars": 200, "min_train_samples": 100, "retrain_every": 100}),
    StrategySpec(name="sma_cross"),
)
#: Tight enough to refuse some orders, so that rejections are in the chain too.
LIMITS = RiskLimits(max_order_notional=12_000.0)


def backtest_every_strategy(url: str) -> list[dict[str, object]]:
    config = BacktestConfig(cash=10_000.0, commission=0.001)
    return [backtest_symbol.fn(url, "NVDA", strategy, config, limits=LIMITS) for strategy in STRATEGIES]


@pytest.fixture
def embedded(database_url: str) -> str:
    frame = read_bars(SAMPLE).frame.drop(columns=["line"], errors="ignore").iloc[:600]
    with session_scope(database_url, write=True) as session:
        repositories.upsert_bars(session, frame, source="test", now=datetime(2026, 1, 1, tzinfo=UTC))
    embed_symbol.fn(database_url, "NVDA", WindowEmbedderConfig(dimension=DIMENSION))
    return database_url


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "previous.db"
    with gzip.open(PREVIOUS, "rb") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    url = f"sqlite:///{path}"
    upgrade_database(url)
    yield url
    dispose_engines()


def test_every_trade_of_every_run_leads_back_to_what_caused_it(embedded: str) -> None:
    summaries = backtest_every_strategy(embedded)

    with session_scope(embedded) as session:
        for summary in summaries:
            run_id = uuid.UUID(str(summary["run_id"]))
            assert load_run(session, run_id).trades, summary["strategy"]
            assert broken_links(session, run_id) == [], summary["strategy"]
    assert sum(int(str(summary["rejections"])) for summary in summaries) > 0


def test_a_broken_chain_is_reported(embedded: str) -> None:
    summary = backtest_symbol.fn(embedded, "NVDA", STRATEGIES[0], BacktestConfig(), limits=LIMITS)
    with session_scope(embedded, write=True) as session:
        # Forgetting the market states (their observations and memory items go with them) cuts every
        # signal off from the bar it was decided on and the neighbours it recalled.
        session.connection().exec_driver_sql("DELETE FROM observations")

    with session_scope(embedded) as session:
        broken = broken_links(session, uuid.UUID(str(summary["run_id"])))
    assert broken and all(" (observed) is not stored" in line or " (recalled) is not stored" in line for line in broken)


def test_runs_made_after_migrating_a_previous_database_have_whole_chains_and_the_old_runs_stay(migrated: str) -> None:
    with session_scope(migrated) as session:
        old = {run.id: run for run in list_runs(session)}

    summaries = backtest_every_strategy(migrated)

    with session_scope(migrated) as session:
        runs = {run.id: run for run in list_runs(session)}
        new = [uuid.UUID(str(summary["run_id"])) for summary in summaries]
        for run_id in new:
            assert run_id not in old and runs[run_id].engine_version is not None
            assert broken_links(session, run_id) == []
    assert old.keys() <= runs.keys() and all(runs[run_id].engine_version is None for run_id in old)
