"""The nightly flow, run for real under the session's Prefect harness."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from models import run_summaries
from models.backtest_runs import list_runs
from models.engine import session_scope
from models.lineage import broken_links
from models.tables import RunSummary
from neuraltrade.backtest.config import DEFAULT_COMMISSION
from neuraltrade.errors import IngestionFailed
from tasks.metrics import METRICS_ENVIRONMENT_VARIABLE

WINDOW = 32


def _counts(database_url: str) -> dict[str, int]:
    with session_scope(database_url) as session:
        return run_summaries.table_counts(session)


def _items(database_url: str, collection: str) -> int:
    from models.vector_store import VectorDB

    return VectorDB.open(collection, database_url=database_url).count()


@pytest.fixture
def metrics_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "metrics" / "neuraltrade.prom"
    monkeypatch.setenv(METRICS_ENVIRONMENT_VARIABLE, str(path))
    return path


def test_the_night_ingests_embeds_records_its_runs_and_exports_metrics(
    prefect_harness: None, database_url: str, sample_csv: Path, metrics_file: Path
) -> None:
    from flows.nightly import nightly

    summary = nightly(database_url=database_url, paths=[str(sample_csv)])

    assert summary["ingestion"]["rows_read"] == 120
    assert summary["ingestion"]["rows_stored"] + summary["ingestion"]["rows_quarantined"] == 120
    assert summary["embedding"]["embedded"] == 120 - WINDOW + 1
    counts = _counts(database_url)
    assert counts["bars"] == 120
    # An observation per bar (the market state a decision links to), a vector per full window, and a
    # reflection per judged episode decided after a full window.
    assert counts["observations"] == 120 and _items(database_url, "market_state") == 120 - WINDOW + 1
    assert 0 < _items(database_url, "reflections") <= counts["episodes"]
    assert counts["memory_items"] == _items(database_url, "market_state") + _items(database_url, "reflections")
    with session_scope(database_url) as session:
        runs = session.scalars(select(RunSummary)).all()
        assert sorted((run.kind, run.status) for run in runs) == [
            ("distill_reflexions", "completed"),
            ("embed_observations", "completed"),
            ("ingest_bars", "completed"),
            ("maintain_index", "completed"),
            ("run_backtests", "completed"),
            ("verify_provenance", "completed"),
        ]
    assert summary["maintenance"]["recall"]["market_state"]["recall"] == 1.0
    # Every shipped strategy backtested on the one symbol, and each gated by the learning memory, each run
    # stored with its trades and equity.
    backtests = summary["backtests"]
    base = ["mean_reversion", "memory_vote", "momentum", "neural", "sma_cross"]
    assert sorted(run["strategy"] for run in backtests["runs"]) == sorted(base + [f"gated:{name}" for name in base])
    assert counts["backtest_runs"] == counts["backtest_equity"] == 10
    # The learning loop reflected on every run; each closed trade whose window closed is an episode, judged.
    learning = summary["learning"]
    assert learning["runs_reflected"] == len([run for run in backtests["runs"] if run["trades"]])
    assert counts["episodes"] == counts["verdicts"] == counts["critiques"] == learning["episodes"]
    assert learning["episodes"] + learning["pending"] == counts["backtest_trades"]
    assert counts["backtest_trades"] == sum(run["trades"] for run in backtests["runs"]), backtests["runs"]
    # Every closed trade of the night leads back through its fills, orders and signal to the bar's
    # observation and whatever else the decision used (memory items, model versions).
    assert counts["backtest_trades"] > 0 and counts["fills"] >= 2 * counts["backtest_trades"]
    with session_scope(database_url) as session:
        for run in backtests["runs"]:
            assert broken_links(session, uuid.UUID(run["run_id"])) == [], run["strategy"]
    # Each run is stored under its specification's id, which names what the strategy read: the memory too.
    with session_scope(database_url) as session:
        stored = {overview.strategy: overview for overview in list_runs(session)}
    for run in backtests["runs"]:
        spec = stored[run["strategy"]].run_spec()
        assert spec is not None and str(spec.run_id) == run["run_id"] == str(stored[run["strategy"]].id)
    remembered = stored["memory_vote"].run_spec()
    assert remembered is not None and remembered.memory_digest == stored["memory_vote"].details["memory"]["digest"]
    # Each run is sized by the volatility target without leverage, at the command line's commission, and
    # reports what holding the symbol returned and how much of the time it held a position.
    assert backtests["sizing"]["kind"] == "volatility_target" and backtests["sizing"]["max_leverage"] == 1.0
    assert backtests["commission"] == DEFAULT_COMMISSION
    for run in backtests["runs"]:
        assert math.isfinite(run["buy_hold_return_pct"]) and 0.0 <= run["exposure_pct"] <= 100.0
    assert summary["maintenance"]["integrity"]["market_state"]["vectors"] == 120 - WINDOW + 1
    exported = metrics_file.read_text()
    assert 'neuraltrade_table_rows{table="bars"} 120.0' in exported
    assert f'neuraltrade_last_run_rows{{figure="embedded",kind="embed_observations"}} {120 - WINDOW + 1}.0' in exported
    assert 'neuraltrade_memory_recall{collection="market_state"} 1.0' in exported
    assert 'neuraltrade_last_run_rows{figure="backtested",kind="run_backtests"} 10.0' in exported
    # Last, the night's log was sealed by a signed checkpoint beside the database and verified against it.
    provenance = summary["provenance"]
    assert provenance["verify"]["ok"] and provenance["verify"]["log_size"] == provenance["checkpoint"]["tree_size"]
    assert Path(provenance["checkpoint"]["path"]).is_file()
    assert "neuraltrade_provenance_verified 1.0" in exported
    from prefect.artifacts import Artifact

    artifact = Artifact.get("provenance-checkpoint")
    assert artifact is not None and provenance["checkpoint"]["root_hash"] in str(artifact.data)


def test_running_the_night_again_changes_nothing_once_the_memory_has_settled(
    prefect_harness: None, database_url: str, sample_csv: Path, metrics_file: Path
) -> None:
    from flows.nightly import nightly

    # The second night's gated runs read what the first night learnt (new runs, when it learnt anything);
    # from then on the base runs, hence the memory, hence the gated runs are the same.
    nightly(database_url=database_url, paths=[str(sample_csv)])
    nightly(database_url=database_url, paths=[str(sample_csv)])
    before = _counts(database_url)

    again = nightly(database_url=database_url, paths=[str(sample_csv)])

    after = _counts(database_url)
    assert again["embedding"]["embedded"] == 0
    assert [report["rows_changed"] for report in again["ingestion"]["files"]] == [0]
    assert {table: count for table, count in after.items() if table != "run_summaries"} == {
        table: count for table, count in before.items() if table != "run_summaries"
    }
    assert after["run_summaries"] == before["run_summaries"] + 6


def test_a_rejected_file_fails_the_night_after_the_good_files_are_stored_and_embedded(
    prefect_harness: None, database_url: str, sample_csv: Path, tmp_path: Path, metrics_file: Path
) -> None:
    from flows.nightly import nightly

    broken = tmp_path / "BROKEN.csv"
    broken.write_text("when,price\n2024-01-02,10\n")

    with pytest.raises(IngestionFailed, match=r"BROKEN\.csv: header when, price matches no known layout") as raised:
        nightly(database_url=database_url, paths=[str(sample_csv), str(broken)])

    assert [outcome["failure"] is None for outcome in raised.value.summary["outcomes"]] == [True, False]
    counts = _counts(database_url)
    assert counts["bars"] == 120
    assert _items(database_url, "market_state") == 120 - WINDOW + 1
    with session_scope(database_url) as session:
        ingest_run = session.scalars(select(RunSummary).where(RunSummary.kind == "ingest_bars")).one()
    assert ingest_run.status == "failed"
    assert list(ingest_run.details["rejected_files"]) == [str(broken)]
