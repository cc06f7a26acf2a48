"""Specification of the schema migrations (`models.migrations`, `alembic/`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import models.tables  # noqa: F401  (registers every table on the metadata)
from alembic import command
from models import collections, memory_items
from models.base import Base
from models.engine import dispose_engines, get_engine, session_scope
from models.migrations import alembic_config, current_revision, downgrade_database, head_revision, upgrade_database
from models.vector_backend import VECTOR_TABLE_PREFIX
from models.vector_store import VectorDB
from neuraltrade.memory.collection import CollectionSpec, Filter, Query
from neuraltrade.memory.embedding import EmbedderFingerprint

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
ALEMBIC_TABLE = "alembic_version"


def schema_tables(url: str) -> set[str]:
    with get_engine(url).connect() as connection:
        names = connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars()
        return {name for name in names if not name.startswith("sqlite_")}


def create_collection(url: str, name: str, dimension: int = 8) -> None:
    fingerprint = EmbedderFingerprint(name="test", version="1", dimension=dimension)
    with session_scope(url, write=True) as session:
        collections.ensure_collection(session, CollectionSpec(name=name, fingerprint=fingerprint), NOW)


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path}/empty.db"
    dispose_engines()


def test_upgrading_an_empty_file_creates_every_table_of_the_metadata(empty_url: str) -> None:
    assert current_revision(empty_url) is None

    upgrade_database(empty_url)

    assert schema_tables(empty_url) == {*Base.metadata.tables, ALEMBIC_TABLE}
    assert current_revision(empty_url) == head_revision()


def test_upgrading_twice_is_harmless(database_url: str) -> None:
    upgrade_database(database_url)

    assert schema_tables(database_url) == {*Base.metadata.tables, ALEMBIC_TABLE}


def test_downgrading_to_base_removes_every_table_and_the_vector_tables_of_collections(
    database_url: str,
) -> None:
    create_collection(database_url, "first")
    create_collection(database_url, "second", dimension=16)
    vector_tables = {name for name in schema_tables(database_url) if name.startswith(VECTOR_TABLE_PREFIX)}
    # sqlite-vec backs each vec0 table with shadow tables of the same prefix.
    assert {"vec_first", "vec_second"} < vector_tables

    downgrade_database(database_url, "base")

    assert schema_tables(database_url) <= {ALEMBIC_TABLE}
    assert current_revision(database_url) is None


def test_a_downgraded_database_can_be_upgraded_again(database_url: str) -> None:
    create_collection(database_url, "market_state")
    downgrade_database(database_url, "base")

    upgrade_database(database_url)
    create_collection(database_url, "market_state")

    assert {*Base.metadata.tables, "vec_market_state"} <= schema_tables(database_url)


def test_the_migrated_schema_matches_the_models_with_vector_tables_present(database_url: str) -> None:
    create_collection(database_url, "market_state")
    with get_engine(database_url).connect() as connection:
        naive = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    # Without the environment's include_name filter, sqlite-vec's tables would read as drift...
    assert naive, "expected vector tables to show up in an unfiltered comparison"
    assert all(
        operation[1].name.startswith(VECTOR_TABLE_PREFIX) for operation in naive if operation[0] == "remove_table"
    )

    # ...while `alembic check`, through alembic/env.py, reports none (it raises if it finds any).
    command.check(alembic_config(database_url))


def test_the_alembic_configuration_aims_at_the_given_database(database_url: str) -> None:
    config = alembic_config(database_url)

    assert config.get_main_option("sqlalchemy.url") == database_url
    assert Path(config.get_main_option("script_location") or "").joinpath("env.py").is_file()


def test_every_model_column_exists_after_upgrade(database_url: str) -> None:
    inspector = inspect(get_engine(database_url))
    for table in Base.metadata.sorted_tables:
        stored = {column["name"] for column in inspector.get_columns(table.name)}
        assert stored == set(table.columns.keys()), table.name


def store_at_revision_0001(url: str) -> tuple[list[str], np.ndarray]:
    """Write bars, observations and market-state vectors as revision 0001 stored them; return keys, vectors."""
    import uuid

    upgrade_database(url, "0001")
    vectors = np.random.default_rng(3).standard_normal((6, 8)).astype(np.float32)
    observation_ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"observation-{i}") for i in range(6)]
    fingerprint = {"name": "window", "version": "1", "dimension": 8, "parameters": {}}
    with get_engine(url).begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO collections (id, name, dimension, metric, fingerprint, fingerprint_digest, created_at) "
            "VALUES (1, 'market_state', 8, 'cosine', ?, 'digest', 0)",
            (json.dumps(fingerprint),),
        )
        connection.exec_driver_sql(
            "CREATE VIRTUAL TABLE vec_market_state USING vec0(embedding_id integer primary key, "
            "symbol text partition key, embedding float[8] distance_metric=cosine, chunk_size=1024)"
        )
        for i, observation in enumerate(observation_ids):
            symbol = "AAA" if i < 3 else "BBB"
            connection.exec_driver_sql(
                "INSERT INTO bars (id, symbol, timestamp, open, high, low, close, volume, source, ingested_at) "
                "VALUES (?, ?, ?, 1, 1, 1, 1, 1, 'test', 0)",
                (i + 1, symbol, i),
            )
            connection.exec_driver_sql(
                "INSERT INTO observations (id, bar_id, symbol, timestamp, price, volume, spread, metadata, created_at) "
                "VALUES (?, ?, ?, ?, 1, 1, 0, '{}', 0)",
                (observation.hex, i + 1, symbol, i),
            )
            item = memory_items.item_id(1, str(observation))
            connection.exec_driver_sql(
                "INSERT INTO embeddings (id, collection_id, observation_id, symbol, timestamp, fingerprint_digest, "
                "created_at) VALUES (?, 1, ?, ?, ?, 'digest', 0)",
                (item, observation.hex, symbol, i),
            )
            connection.exec_driver_sql(
                "INSERT INTO vec_market_state (embedding_id, symbol, embedding) VALUES (?, ?, ?)",
                (item, symbol, vectors[i].tobytes()),
            )
    return [str(observation) for observation in observation_ids], vectors


def test_upgrading_from_0001_keeps_every_market_state_vector_under_its_id_and_key(empty_url: str) -> None:
    keys, vectors = store_at_revision_0001(empty_url)

    upgrade_database(empty_url)

    with session_scope(empty_url) as session:
        spec = collections.spec_of(collections.get_collection(session, "market_state"))
        fingerprint = spec.fingerprint
    store = VectorDB(8, name="market_state", fingerprint=fingerprint, database_url=empty_url)
    assert store.count() == 6
    item = store.get(keys[4])
    assert item is not None
    np.testing.assert_array_equal(item.vector, vectors[4])
    assert item.metadata == {"symbol": "BBB", "observation_id": keys[4]}
    [nearest] = store.search(Query(vectors[1], k=1).filter(Filter.eq("symbol", "AAA")))
    assert nearest.id == keys[1]
    assert nearest.distance == pytest.approx(0.0, abs=1e-6)


def test_downgrading_to_0001_keeps_the_market_state_vectors(empty_url: str) -> None:
    _, vectors = store_at_revision_0001(empty_url)
    upgrade_database(empty_url)

    downgrade_database(empty_url, "0001")

    with get_engine(empty_url).connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT e.symbol, v.embedding FROM embeddings e JOIN vec_market_state v ON v.embedding_id = e.id "
            "ORDER BY e.timestamp"
        ).all()
    assert [row[0] for row in rows] == ["AAA"] * 3 + ["BBB"] * 3
    np.testing.assert_array_equal(np.stack([np.frombuffer(row[1], dtype=np.float32) for row in rows]), vectors)
