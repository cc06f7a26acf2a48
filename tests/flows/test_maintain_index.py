"""The maintenance flow, run for real under the session's Prefect harness, and what `memory stats` shows after it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from models.ann_index import HnswConfig
from models.dialects import dialect_for
from models.engine import session_scope
from models.tables import RunSummary
from models.vector_maintenance import RUN_KIND
from models.vector_store import VectorDB
from neuraltrade.errors import RecallBelowThreshold
from neuraltrade.memory.maintenance import MaintenanceConfig
from neuraltrade_cli.app import app

DIMENSION = 32
runner = CliRunner()


def fill(url: str, name: str, count: int, *, clustered: bool = True, **options: object) -> VectorDB:
    """Store `count` vectors (clustered, or isotropic noise), item i `i` days old, over three symbols."""
    rng = np.random.default_rng(len(name))
    centres = rng.normal(size=(12, DIMENSION)) if clustered else np.zeros((1, DIMENSION))
    noise = 0.35 if clustered else 1.0
    vectors = (centres[rng.integers(0, len(centres), count)] + noise * rng.normal(size=(count, DIMENSION))).astype(
        np.float32
    )
    db = VectorDB(DIMENSION, name=name, database_url=url, **options)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    db.insert_many(
        [f"k{i}" for i in range(count)],
        vectors,
        [{"symbol": ("AAA", "BBB", "CCC")[i % 3]} for i in range(count)],
        timestamps=[now - timedelta(days=i) for i in range(count)],
    )
    return db


def runs(url: str) -> list[RunSummary]:
    with session_scope(url) as session:
        return list(session.scalars(select(RunSummary).where(RunSummary.kind == RUN_KIND)))


def test_maintenance_prunes_compacts_reindexes_audits_and_records_what_stats_then_shows(
    prefect_harness: None, database_url: str
) -> None:
    from flows.maintain_index import maintain_index

    fill(database_url, "plain", 400)
    graph = fill(database_url, "graph", 1500, index_type="hnsw")
    graph.save_index()
    config = MaintenanceConfig(retention_days=100)

    summary = maintain_index(database_url=database_url, config=config)

    assert summary["collections"] == ["graph", "plain"]
    assert {name: report["deleted"] for name, report in summary["pruned"].items()} == {"graph": 1400, "plain": 300}
    if dialect_for(database_url).compactable:
        assert summary["vacuum"]["plan"]["due"] and "vacuumed_at" in summary["vacuum"]  # never vacuumed, and pruned
        assert summary["vacuum"]["bytes_after"] < summary["vacuum"]["bytes_before"]
    else:  # PostgreSQL's autovacuum reclaims the space: the flow says so and does not vacuum
        assert summary["vacuum"]["plan"]["reason"] == "not SQLite" and "vacuumed_at" not in summary["vacuum"]
    assert summary["index"]["graph"]["action"] == "rebuilt"  # pruning made it stale
    assert summary["index"]["plain"]["action"] == "none"
    assert summary["recall"]["plain"]["recall"] == 1.0 and summary["recall"]["plain"]["path"] == "exact"
    assert summary["recall"]["graph"]["path"] == "hnsw" and summary["recall"]["graph"]["recall"] >= 0.95
    [run] = runs(database_url)
    assert (run.status, run.config_digest) == ("completed", config.digest)
    assert run.details["recall"] == summary["recall"]

    shown = runner.invoke(app, ["memory", "stats", "--db", database_url])
    as_json = runner.invoke(app, ["memory", "stats", "--db", database_url, "--json"])

    assert shown.exit_code == 0, shown.output
    assert "1.000 @10 (exact)" in shown.output
    assert summary["recall"]["plain"]["measured_at"][:19].replace("T", " ") in shown.output
    assert "L1 cache hit rate: n/a" in shown.output
    statistics = {entry["collection"]: entry for entry in json.loads(as_json.output)["collections"]}
    assert statistics["graph"]["index_status"] == "fresh"
    assert (statistics["graph"]["items"], statistics["plain"]["vectors"]) == (100, 100)
    assert statistics["plain"]["last_recall"]["recall"] == 1.0


def test_recall_below_the_threshold_fails_the_run_after_storing_its_figures(
    prefect_harness: None, database_url: str
) -> None:
    from flows.maintain_index import maintain_index

    degenerate = HnswConfig(m=2, ef_construction=1, ef_search=1)
    fill(database_url, "graph", 1500, clustered=False, index_type="hnsw", hnsw=degenerate).rebuild_index()

    with pytest.raises(RecallBelowThreshold, match=r"collection 'graph' answered with recall@10 0\.\d+"):
        maintain_index(database_url=database_url, config=MaintenanceConfig(recall_samples=20))

    [run] = runs(database_url)
    assert run.status == "failed"
    assert run.details["recall"]["graph"]["recall"] < 0.95
    shown = runner.invoke(app, ["memory", "stats", "--db", database_url])
    assert f"{run.details['recall']['graph']['recall']:.3f} @10 (hnsw)" in shown.output
    assert "(failed run)" in shown.output
