"""Specification of the dialect seam (`models.dialects`) and the vector backend seam (`models.vector_backend`)."""

from __future__ import annotations

import pytest
from sqlalchemy import literal, select
from sqlalchemy.dialects import postgresql, sqlite

from models.dialects import (
    DIALECTS,
    DialectComponents,
    dialect_for,
    insert_statement,
    json_kind,
    json_kind_names,
    vector_backend_for,
)
from models.dialects.pgvector import PgvectorBackend
from models.dialects.postgresql import PostgresqlComponents
from models.dialects.sqlite import SqliteComponents
from models.dialects.sqlite_vec import SqliteVecBackend
from models.engine import SUPPORTED_BACKENDS, get_engine, session_scope
from models.tables import BarRecord, MemoryItemRecord
from neuraltrade.errors import StorageError
from neuraltrade.memory.collection import METRICS
from neuraltrade.memory.maintenance import MAX_AUDIT_K

POSTGRES_URL = "postgresql+psycopg://nobody@localhost/none"


def test_the_components_are_chosen_once_from_the_dialect_name_of_a_url_engine_or_session(database_url: str) -> None:
    with session_scope(database_url) as session:
        found = {dialect_for(database_url), dialect_for(get_engine(database_url)), dialect_for(session)}

    assert found == {DIALECTS["sqlite"]}
    assert isinstance(dialect_for(POSTGRES_URL), PostgresqlComponents)
    assert isinstance(dialect_for(sqlite.dialect()), SqliteComponents)
    assert set(SUPPORTED_BACKENDS) == set(DIALECTS) == {"sqlite", "postgresql"}


@pytest.mark.parametrize("url", ["mysql://trader@localhost/market", "not a url"])
def test_another_kind_of_database_is_a_storage_error_naming_it(url: str) -> None:
    with pytest.raises(StorageError, match=r"mysql|not a SQLAlchemy URL"):
        dialect_for(url)


def test_an_upsert_is_built_in_the_sessions_dialect(database_url: str) -> None:
    with session_scope(database_url) as session:
        statement = insert_statement(session, BarRecord.__table__).on_conflict_do_nothing()  # type: ignore[arg-type]

    assert "ON CONFLICT DO NOTHING" in str(statement.compile(dialect=sqlite.dialect()))


def test_a_json_kind_test_renders_in_each_dialects_own_function() -> None:
    kind = json_kind(MemoryItemRecord.metadata_, literal('$."regime"'), literal("regime"))
    statement = select(kind.in_(json_kind_names(str)))

    assert "json_type(" in str(statement.compile(dialect=sqlite.dialect()))
    assert "json_typeof(" in str(statement.compile(dialect=postgresql.dialect()))
    assert json_kind_names(str) == ("text", "string")
    assert json_kind_names(bool) == ("true", "false", "boolean")


def test_postgresql_stores_vectors_with_pgvector_ranking_every_metric() -> None:
    backend = vector_backend_for(POSTGRES_URL)

    assert isinstance(backend, PgvectorBackend)
    assert all(backend.ranks(metric) for metric in METRICS)
    assert backend.max_k >= MAX_AUDIT_K


def test_a_database_without_a_vector_backend_refuses_collections_naming_its_kind() -> None:
    class Elsewhere(SqliteComponents):
        name = "elsewhere"

    with pytest.raises(StorageError, match="elsewhere database yet"):
        DialectComponents.vector_backend(Elsewhere())


def test_sqlite_stores_vectors_with_sqlite_vec_ranking_every_metric_but_the_inner_product(database_url: str) -> None:
    backend = vector_backend_for(database_url)

    assert isinstance(backend, SqliteVecBackend)
    assert [metric for metric in METRICS if not backend.ranks(metric)] == ["inner_product"]
    # A recall audit never asks for more neighbours than the backend returns in one query.
    assert backend.max_k >= MAX_AUDIT_K


def test_only_sqlite_is_compacted_and_postgresql_refuses_to_be() -> None:
    assert [components.name for components in DIALECTS.values() if components.compactable] == ["sqlite"]
    with pytest.raises(StorageError, match="postgresql database is not vacuumed"):
        DIALECTS["postgresql"].vacuum(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("wanted", [100, 2_400], ids=["looked-up-by-id", "read-by-one-scan"])
def test_full_vectors_by_id_are_the_stored_ones_looked_up_or_scanned(database_url: str, wanted: int) -> None:
    """A few ids are looked up (counting a vec0 table would read all of it); a large share is one scan."""
    import numpy as np

    from models import memory_items
    from models.dialects.sqlite_vec import LOOKUP_ALWAYS_BELOW, SCAN_SHARE
    from models.vector_store import VectorDB

    vectors = np.random.default_rng(3).standard_normal((2_500, 8)).astype(np.float32)
    memory = VectorDB(8, name="lookups", database_url=database_url)
    memory.insert_many([f"k{row}" for row in range(2_500)], vectors, [{"symbol": "NVDA"}] * 2_500)
    ids = [memory_items.item_id(memory.collection_id, f"k{row}") for row in range(2_500)]
    assert (wanted < LOOKUP_ALWAYS_BELOW) != (wanted > SCAN_SHARE * 2_500)

    with session_scope(database_url) as session:
        found_ids, matrix = memory_items.full_vectors(session, memory.spec, ids[:wanted])

    by_id = dict(zip(found_ids.tolist(), matrix, strict=True))
    assert sorted(by_id) == sorted(ids[:wanted])
    for row in range(wanted):
        assert np.array_equal(by_id[ids[row]], vectors[row])
