"""The backtests' run summary records what the L1 cache of memory reads did, and `memory stats` shows it.

The flow runs in process (``run_backtests.fn``), over real bars and market states in a real database, with
a fresh cache in place of the process's so that the figures are this test's alone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from models import repositories
from models.engine import session_scope
from models.tables import RunSummary
from neuraltrade.market.ingest import read_bars
from neuraltrade.memory.embedding import WindowEmbedderConfig
from neuraltrade.memory.session import SessionMemory, SessionMemoryConfig
from neuraltrade_cli.app import app
from tasks import strategy_context
from tasks.embed import embed_symbol

SAMPLE = Path(__file__).parents[2] / "neuraltrade" / "sample_data" / "NVDA.csv"
DIMENSION = 16
STRATEGIES = ["memory_vote", "gated:memory_vote"]
PARAMETERS = {name: {"dimension": DIMENSION} for name in STRATEGIES}
runner = CliRunner()


@pytest.fixture
def embedded(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(strategy_context, "MEMORY_CACHE", SessionMemory(SessionMemoryConfig(max_results=8)))
    frame = read_bars(SAMPLE).frame.drop(columns=["line"], errors="ignore").iloc[:400]
    with session_scope(database_url, write=True) as session:
        repositories.upsert_bars(session, frame, source="test", now=datetime(2026, 1, 1, tzinfo=UTC))
    embed_symbol.fn(database_url, "NVDA", WindowEmbedderConfig(dimension=DIMENSION))
    return database_url


def backtest(url: str) -> dict[str, object]:
    from flows.run_backtests import run_backtests

    return run_backtests.fn(database_url=url, strategies=STRATEGIES, parameters=PARAMETERS, symbols=["NVDA"])


def recorded_caches(url: str) -> list[dict[str, object]]:
    with session_scope(url) as session:
        runs = session.scalars(
            select(RunSummary).where(RunSummary.kind == "run_backtests").order_by(RunSummary.started_at)
        )
        return [run.details["cache"] for run in runs]


def test_the_run_summary_records_the_cache_figures_and_memory_stats_shows_the_hit_rate(embedded: str) -> None:
    first = backtest(embedded)

    # memory_vote loads NVDA's market states (a miss); gated:memory_vote reads them again (a hit) and loads
    # what the learning loop knows of memory_vote (a miss).
    assert first["cache"] == {
        "hits": 1,
        "misses": 2,
        "hit_rate": pytest.approx(1 / 3),
        "entries": 2,
        "evictions": 0,
        "expirations": 0,
        "invalidations": 0,
    }
    shown = runner.invoke(app, ["memory", "stats", "--db", embedded])
    assert shown.exit_code == 0, shown.output
    assert "L1 cache hit rate: 33.3%, recorded by the run_backtests run of" in shown.output

    # The same night again, in the same process, with nothing written: every read is a hit, and the run
    # records its own figures, not the process's since it started.
    second = backtest(embedded)

    assert second["cache"] == {**first["cache"], "hits": 3, "misses": 0, "hit_rate": 1.0}
    assert recorded_caches(embedded) == [first["cache"], second["cache"]]
    shown = runner.invoke(app, ["memory", "stats", "--db", embedded])
    as_json = json.loads(runner.invoke(app, ["memory", "stats", "--db", embedded, "--json"]).output)
    assert "L1 cache hit rate: 100.0%, recorded by the run_backtests run of" in shown.output
    assert as_json["l1_cache"]["kind"] == "run_backtests"
    assert (as_json["l1_cache"]["hits"], as_json["l1_cache"]["misses"], as_json["l1_cache"]["entries"]) == (3, 0, 2)
