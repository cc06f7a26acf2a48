"""The maintenance tasks: plain values in and out, the clock injected, progress reported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from models.dialects import dialect_for
from models.engine import session_scope
from models.vector_store import VectorDB
from neuraltrade.clock import FixedClock
from neuraltrade.errors import MemoryIntegrityError
from neuraltrade.memory.maintenance import MaintenanceConfig
from tasks import memory, progress

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FixedClock]:
    clock = FixedClock(NOW)
    monkeypatch.setattr(memory, "clock", clock)
    yield clock


@pytest.fixture
def store(database_url: str) -> VectorDB:
    vectors = np.random.default_rng(5).normal(size=(60, 16)).astype(np.float32)
    db = VectorDB(16, name="plain", database_url=database_url)
    db.insert_many(
        [f"k{i}" for i in range(60)],
        vectors,
        [{"symbol": "AAA"}] * 60,
        timestamps=[NOW - timedelta(days=i) for i in range(60)],
    )
    return db


def test_every_task_returns_plain_json_ready_values(
    database_url: str, store: VectorDB, fixed_clock: FixedClock
) -> None:
    config = MaintenanceConfig(retention_days=10)

    results: list[Any] = [
        memory.list_collections.fn(database_url),
        memory.check_integrity.fn(database_url, "plain"),
        memory.prune_collection.fn(database_url, "plain", config.retention_days),
        memory.plan_vacuum.fn(database_url, config),
        memory.rebuild_vector_table.fn(database_url, "plain"),
        memory.vacuum_database.fn(database_url),
        memory.optimize_database.fn(database_url),
        memory.refresh_index.fn(database_url, "plain", config),
        memory.audit_recall.fn(database_url, "plain", config),
    ]

    assert json.loads(json.dumps(results)) == results
    assert results[0] == ["plain"]
    assert (results[2]["deleted"], results[2]["remaining"]) == (49, 11)
    if dialect_for(database_url).compactable:
        assert results[5]["vacuumed_at"] == "2026-11-25T02:00:00.000000Z"
    else:  # PostgreSQL is not vacuumed by neuraltrade (autovacuum): no vacuum is recorded
        assert results[5]["action"] == results[6]["action"] == "skipped" and "vacuumed_at" not in results[5]
    assert (results[8]["recall"], results[8]["measured_at"]) == (1.0, "2026-11-25T02:00:00.000000Z")


def test_the_integrity_task_raises_the_error_naming_the_collection(database_url: str, store: VectorDB) -> None:
    with session_scope(database_url, write=True) as session:
        number = session.execute(text("SELECT id FROM memory_items WHERE key = 'k0'")).scalar_one()
        session.execute(
            text("DELETE FROM vec_plain WHERE item_sequence = (SELECT sequence FROM memory_items WHERE id = :id)"),
            {"id": number},
        )

    with pytest.raises(MemoryIntegrityError, match="collection 'plain'"):
        memory.check_integrity.fn(database_url, "plain")


def test_the_audit_reports_progress_once_per_collection_with_its_items(database_url: str, store: VectorDB) -> None:
    reports: list[tuple[str, str, int]] = []

    with progress.listening(lambda stage, item, units: reports.append((stage, item, units))):
        memory.audit_recall.fn(database_url, "plain", MaintenanceConfig(recall_samples=7))

    assert reports == [("maintain", "plain", 60)]
