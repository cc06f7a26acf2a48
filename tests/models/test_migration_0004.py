"""Specification of migration 0004 (lineage) on a database the previous release wrote.

`tests/data/previous_schema/revision_0003.db.gz` was written by the code of commit f881633 (schema
revision 0003; see `make_database.py` beside it): 600 NVDA daily bars, their observations and 16-d
market-state vectors, a `memory_vote` run and a `neural` run (with its model version), their trades,
signals, orders and risk rejections.
"""

from __future__ import annotations

import gzip
import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from alembic.script import ScriptDirectory

from alembic import command
from models import memory_items
from models.backtest_runs import find_run, list_runs, load_run
from models.base import from_microseconds
from models.engine import dispose_engines, get_engine, session_scope
from models.migrations import alembic_config, current_revision, downgrade_database, upgrade_database
from models.order_records import load_signals
from models.vector_store import VectorDB
from neuraltrade.canonical import legacy_stable_id, stable_id
from neuraltrade.memory.embedding import WindowEmbedder, WindowEmbedderConfig
from neuraltrade.memory.query import Filter, Query
from neuraltrade.records import CauseKind, Relation
from neuraltrade.strategies.needs import model_version_uuid
from neuraltrade.types import Observation

PREVIOUS = Path(__file__).parents[1] / "data" / "previous_schema" / "revision_0003.db.gz"
KEPT_TABLES = (
    "bars",
    "observations",
    "collections",
    "memory_items",
    "memory_vectors",
    "vec_market_state",
    "backtest_runs",
    "backtest_trades",
    "backtest_equity",
    "signals",
    "orders",
    "order_events",
    "risk_rejections",
    "model_versions",
)
#: Every table as 0003 had it, but the collections, whose version a re-keying bumps.
COMPARED_TABLES = tuple(name for name in KEPT_TABLES if name not in ("collections", "vec_market_state"))
DIMENSION = 16
LAST_WITH_MEMORY_VECTORS = "0006"


@pytest.fixture(scope="module")
def previous_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("previous") / "previous.db"
    with gzip.open(PREVIOUS, "rb") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    return path


@pytest.fixture
def url(previous_file: Path, tmp_path: Path) -> Iterator[str]:
    target = tmp_path / "migrated.db"
    shutil.copyfile(previous_file, target)
    yield f"sqlite:///{target}"
    dispose_engines()


def migration() -> ModuleType:
    script = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision("0004")
    assert script is not None
    return script.module


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as connection:
        return [tuple(row) for row in connection.exec_driver_sql(sql)]


def count(url: str, table: str) -> int:
    return rows(url, f"SELECT count(*) FROM {table}")[0][0]


def dump(url: str, table: str) -> list[tuple[Any, ...]]:
    return sorted(rows(url, f"SELECT * FROM {table}"), key=repr)


def vectors_by_moment(url: str) -> dict[tuple[str, int], tuple[bytes, bytes]]:
    """Each item's full vector and searched vector by its (symbol, timestamp), whatever its id."""
    found = rows(
        url,
        "SELECT i.partition, i.timestamp, f.vector, v.embedding FROM memory_items i "
        "JOIN memory_vectors f ON f.id = i.id JOIN vec_market_state v ON v.item_id = i.id",
    )
    return {(symbol, timestamp): (full, searched) for symbol, timestamp, full, searched in found}


def as_uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def test_the_vendored_database_is_small_and_at_revision_0003(url: str) -> None:
    assert PREVIOUS.stat().st_size < 2 * 2**20
    assert current_revision(url) == "0003"
    assert count(url, "bars") == 600
    assert count(url, "backtest_runs") == 2


def test_upgrading_keeps_every_bar_vector_run_trade_and_signal(url: str) -> None:
    before = {table: count(url, table) for table in KEPT_TABLES}
    vectors = vectors_by_moment(url)

    # The last revision with `memory_vectors`; test_migration_0007 takes it from there to the head.
    upgrade_database(url, LAST_WITH_MEMORY_VECTORS)

    assert current_revision(url) == LAST_WITH_MEMORY_VECTORS
    assert {table: count(url, table) for table in KEPT_TABLES} == before
    assert vectors_by_moment(url) == vectors  # every vector, byte for byte, full and searched
    assert len(vectors) == before["memory_items"] == 569
    assert rows(url, "PRAGMA foreign_key_check") == []


def test_upgraded_runs_stay_as_they_were_with_no_engine_version(url: str) -> None:
    runs = dict(rows(url, "SELECT id, statistics FROM backtest_runs"))
    pnl = rows(url, "SELECT run_id, pnl FROM backtest_trades ORDER BY run_id, sequence")

    upgrade_database(url)

    with session_scope(url) as session:
        after = {run.id: run for run in list_runs(session)}
        assert {run_id.hex for run_id in after} == set(runs)
        for run_id, run in after.items():
            assert run.engine_version is None and run.spec is None
            assert run.statistics == json.loads(runs[run_id.hex])
            stored = load_run(session, run_id)
            assert stored.trades
            assert [trade.pnl for trade in stored.trades] == [value for owner, value in pnl if owner == run_id.hex]
    # Each old trade keeps its signal, now a foreign key; its orders and fills were never recorded.
    assert rows(url, "SELECT count(*) FROM backtest_trades WHERE signal_id IS NULL") == [(0,)]
    assert rows(url, "SELECT count(*) FROM backtest_trades WHERE entry_order_id IS NOT NULL") == [(0,)]
    assert count(url, "fills") == 0


def test_upgrading_rekeys_observations_and_market_state_items_to_the_new_id_rule(url: str) -> None:
    upgrade_database(url, LAST_WITH_MEMORY_VECTORS)

    observations = rows(url, "SELECT id, symbol, timestamp FROM observations")
    assert all(
        as_uuid(stored) == Observation.id_for(symbol, from_microseconds(moment))
        for stored, symbol, moment in observations
    )
    items = rows(
        url,
        "SELECT id, collection_id, key, observation_id, json_extract(metadata, '$.observation_id') FROM memory_items",
    )
    for item_id, collection_id, key, observation_id, linked in items:
        assert key == str(as_uuid(observation_id)) == linked
        assert item_id == memory_items.item_id(collection_id, key)
    item_ids = {item[0] for item in items}
    assert {row[0] for row in rows(url, "SELECT id FROM memory_vectors")} == item_ids
    assert {row[0] for row in rows(url, "SELECT item_id FROM vec_market_state")} == item_ids


def test_the_upgraded_memory_answers_under_the_new_keys(url: str) -> None:
    [(old_key, old_vector)] = rows(
        url,
        "SELECT i.key, f.vector FROM memory_items i JOIN memory_vectors f ON f.id = i.id ORDER BY i.timestamp LIMIT 1",
    )
    [(version_before,)] = rows(url, "SELECT version FROM collections WHERE name = 'market_state'")

    upgrade_database(url)

    [(moment, symbol)] = rows(url, "SELECT timestamp, partition FROM memory_items ORDER BY timestamp LIMIT 1")
    new_key = str(Observation.id_for(symbol, from_microseconds(moment)))
    fingerprint = WindowEmbedder(WindowEmbedderConfig(dimension=DIMENSION)).fingerprint
    store = VectorDB(DIMENSION, name="market_state", fingerprint=fingerprint, database_url=url)
    assert store.get(old_key) is None
    item = store.get(new_key)
    assert item is not None
    assert item.vector.tobytes() == old_vector
    [nearest] = store.search(
        Query(np.frombuffer(old_vector, dtype=np.float32), k=1).filter(Filter.eq("symbol", "NVDA"))
    )
    assert nearest.id == new_key
    # The re-keying is a write: an HNSW index file built before reads as stale.
    assert rows(url, "SELECT version FROM collections WHERE name = 'market_state'") == [(version_before + 1,)]


def test_upgrading_types_every_causal_link_and_links_model_versions_by_record_id(url: str) -> None:
    upgrade_database(url)

    [(version_id, record_id)] = rows(url, "SELECT id, record_id FROM model_versions")
    assert as_uuid(record_id) == model_version_uuid(version_id) == stable_id("model_version", version_id)
    # The walk-forward refits a neural run names in its details were never stored, only the latest model.
    [(refits,)] = rows(
        url, "SELECT json_extract(details, '$.model_versions') FROM backtest_runs WHERE strategy = 'neural'"
    )
    versions = {model_version_uuid(version) for version in json.loads(refits)}
    observations = {as_uuid(row[0]) for row in rows(url, "SELECT id FROM observations")}
    with session_scope(url) as session:
        runs = {run.strategy: run.id for run in list_runs(session)}
        signals = {strategy: load_signals(session, run_id) for strategy, run_id in runs.items()}
    kinds: set[tuple[CauseKind, Relation]] = set()
    for strategy_signals in signals.values():
        for signal in strategy_signals:
            first, *others = signal.causal_links
            assert (first.cause_kind, first.relation) == (CauseKind.OBSERVATION, Relation.OBSERVED)
            assert first.cause_id == Observation.id_for(signal.symbol, signal.timestamp)
            for link in others:
                kinds.add((link.cause_kind, link.relation))
                if link.cause_kind is CauseKind.MEMORY_ITEM:
                    assert link.cause_id in observations  # a recalled market state, under its new id
                else:
                    assert link.cause_id in versions
    assert kinds == {(CauseKind.MEMORY_ITEM, Relation.RECALLED), (CauseKind.MODEL_VERSION, Relation.PREDICTED_BY)}
    assert all(len(signal.causal_links) > 1 for signal in signals["memory_vote"])


def test_the_upgraded_schema_matches_the_models(url: str) -> None:
    upgrade_database(url)

    command.check(alembic_config(url))  # raises if the migrated schema and the models differ


def test_downgrading_gives_back_the_previous_database(url: str) -> None:
    before = {table: dump(url, table) for table in COMPARED_TABLES}
    vectors = rows(url, "SELECT item_id, partition_value, embedding FROM vec_market_state ORDER BY item_id")
    upgrade_database(url)

    downgrade_database(url, "0003")

    assert current_revision(url) == "0003"
    assert {table: dump(url, table) for table in COMPARED_TABLES} == before
    assert rows(url, "SELECT item_id, partition_value, embedding FROM vec_market_state ORDER BY item_id") == vectors
    assert "fills" not in {row[0] for row in rows(url, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_downgraded_database_upgrades_again_to_the_same_rows(url: str) -> None:
    upgrade_database(url)
    # The head keeps each vector once, in the vector table (test_migration_0007).
    # Each re-keying is a write, so the items' written version moves with the collection's.
    tables = [*(name for name in COMPARED_TABLES if name != "memory_vectors"), "vec_market_state"]

    def dumps() -> dict[str, Any]:
        found = {table: dump(url, table) for table in tables}
        found["memory_items"] = [row[:-1] for row in found["memory_items"]]  # written_version is last
        return found

    first = dumps()
    downgrade_database(url, "0003")

    upgrade_database(url)

    assert dumps() == first
    command.check(alembic_config(url))
    with session_scope(url) as session:
        assert all(find_run(session, run.id) is not None for run in list_runs(session))


def test_the_migration_freezes_the_rules_it_re_keys_by() -> None:
    module = migration()
    moments = [0, 1_704_205_800_000_000, 1_704_205_800_123_456]

    assert module._legacy_observation_ids("NVDA", moments) == [
        legacy_stable_id("observation", "NVDA", from_microseconds(moment)) for moment in moments
    ]
    assert module._new_observation_ids("NVDA", moments) == [
        Observation.id_for("NVDA", from_microseconds(moment)) for moment in moments
    ]
    for key in ("state-1", str(uuid.uuid4()), "ünïcode"):
        assert module._item_id(7, key) == memory_items.item_id(7, key)
    assert legacy_stable_id("observation", "NVDA", datetime(2024, 1, 2, tzinfo=UTC)) != Observation.id_for(
        "NVDA", datetime(2024, 1, 2, tzinfo=UTC)
    )
