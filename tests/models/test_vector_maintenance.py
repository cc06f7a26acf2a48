"""Specification of the vector memory's upkeep (`models.vector_maintenance`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text

from models import vector_compaction, vector_maintenance, vector_statistics
from models.ann_index import HnswConfig, HnswIndex
from models.dialects import vector_backend_for
from models.engine import session_scope
from models.tables import RunSummary
from models.vector_store import VectorDB
from neuraltrade.canonical import format_timestamp
from neuraltrade.errors import ConfigError, MemoryIntegrityError, RecallBelowThreshold
from neuraltrade.memory.collection import Query, distance_matrix, distances
from neuraltrade.memory.maintenance import MaintenanceConfig
from tests.postgresql import sqlite_only

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
DIMENSION = 32
SYMBOLS = ("AAA", "BBB", "CCC")


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's stores run on SQLite and on PostgreSQL."""
    return storage_url


def clustered(count: int, dimension: int = DIMENSION, *, seed: int = 7, clusters: int = 20) -> np.ndarray:
    """Vectors around a few centres: the shape of real embeddings, on which HNSW does well."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dimension))
    points = centres[rng.integers(0, clusters, count)] + 0.35 * rng.normal(size=(count, dimension))
    return points.astype(np.float32)


def uniform(count: int, dimension: int = DIMENSION, *, seed: int = 11) -> np.ndarray:
    """Isotropic noise: no structure for a graph or a sign bit to exploit."""
    return np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)


def fill(url: str, name: str, vectors: np.ndarray, *, days_apart: float = 0.0, **options: object) -> VectorDB:
    """Store `vectors` as items k0, k1, ... spread over `SYMBOLS`, item i `i * days_apart` days before NOW."""
    db = VectorDB(vectors.shape[1], name=name, database_url=url, **options)  # type: ignore[arg-type]
    count = len(vectors)
    db.insert_many(
        [f"k{i}" for i in range(count)],
        vectors,
        [{"symbol": SYMBOLS[i % len(SYMBOLS)]} for i in range(count)],
        timestamps=[NOW - timedelta(days=i * days_apart) for i in range(count)],
    )
    return db


def execute(url: str, statement: str, **parameters: object) -> None:
    with session_scope(url, write=True) as session:
        session.execute(text(statement), parameters)


def item_number(url: str, name: str, key: str) -> int:
    with session_scope(url) as session:
        return int(session.execute(text("SELECT id FROM memory_items WHERE key = :key"), {"key": key}).scalar_one())


def vector_bytes(url: str, name: str) -> int:
    with session_scope(url) as session:
        size = vector_backend_for(session).size_bytes(session.connection(), name)
    assert size is not None
    return size


# -- configuration -------------------------------------------------------------------------------


def test_the_configuration_refuses_values_out_of_range_naming_them() -> None:
    with pytest.raises(ConfigError, match=r"recall_threshold .* 1\.5"):
        MaintenanceConfig(recall_threshold=1.5)
    with pytest.raises(ConfigError, match=r"retention_days .* 0"):
        MaintenanceConfig(retention_days=0)
    with pytest.raises(ConfigError, match="recall_samples"):
        MaintenanceConfig(recall_samples=0)


def test_the_configuration_digest_names_every_setting() -> None:
    assert MaintenanceConfig().digest == MaintenanceConfig().digest
    assert MaintenanceConfig(seed=1).digest != MaintenanceConfig(seed=2).digest
    assert MaintenanceConfig(hnsw_collections=["a"]).hnsw_collections == ("a",)  # type: ignore[arg-type]


# -- integrity -----------------------------------------------------------------------------------


def test_a_healthy_store_passes_its_integrity_check_with_its_figures(database_url: str) -> None:
    fill(database_url, "plain", clustered(300))
    fill(database_url, "packed", clustered(300), quantization="int8")
    fill(database_url, "graph", clustered(300), index_type="hnsw").rebuild_index()

    reports = {name: vector_maintenance.check_integrity(database_url, name) for name in ("plain", "packed", "graph")}

    assert all(report.problems == [] for report in reports.values())
    assert {(report.items, report.vectors, report.non_finite) for report in reports.values()} == {(300, 300, 0)}
    assert all(len(report.fingerprints) == 1 for report in reports.values())
    assert (reports["graph"].index_status, reports["graph"].index_size) == ("fresh", 300)
    assert reports["plain"].index_status == "none"


def test_a_vector_deleted_behind_the_stores_back_fails_the_check_naming_both_counts(database_url: str) -> None:
    fill(database_url, "plain", clustered(50))
    execute(
        database_url,
        "DELETE FROM vec_plain WHERE item_sequence = (SELECT sequence FROM memory_items WHERE id = :id)",
        id=item_number(database_url, "plain", "k3"),
    )

    with pytest.raises(
        MemoryIntegrityError,
        match=r"collection 'plain' .* 49 vectors in vec_plain but 50 item rows \(1 items without a vector, 0 vectors",
    ):
        vector_maintenance.check_integrity(database_url, "plain")


def test_a_vector_under_another_id_fails_the_check_though_the_counts_agree(database_url: str) -> None:
    vectors = clustered(50)
    spec = fill(database_url, "plain", vectors).spec
    number = item_number(database_url, "plain", "k3")
    with session_scope(database_url, write=True) as session:
        backend = vector_backend_for(session)
        backend.delete(session.connection(), "plain", [number])
        # Keyed by a sequence no item row has: the vector belongs to no item.
        backend.insert(session.connection(), spec, [number + 1], ["AAA"], vectors[3:4], sequences=[10**9])

    with pytest.raises(MemoryIntegrityError, match=r"1 items without a vector, 1 vectors without an item"):
        vector_maintenance.check_integrity(database_url, "plain")


def test_an_item_row_without_a_vector_fails_the_check(database_url: str) -> None:
    fill(database_url, "plain", clustered(50))
    execute(
        database_url,
        "INSERT INTO memory_items (sequence, id, collection_id, key, partition, timestamp, metadata, "
        "fingerprint_digest, created_at) SELECT (SELECT max(sequence) FROM memory_items) + 1, 12345, collection_id, "
        "'orphan', partition, timestamp, metadata, fingerprint_digest, created_at FROM memory_items WHERE key = 'k0'",
    )

    with pytest.raises(
        MemoryIntegrityError, match=r"'plain' .* 50 vectors in vec_plain but 51 item rows .* 50 full-precision vectors"
    ):
        vector_maintenance.check_integrity(database_url, "plain")


def test_items_of_a_second_fingerprint_fail_the_check_naming_both(database_url: str) -> None:
    fill(database_url, "plain", clustered(50))
    execute(database_url, "UPDATE memory_items SET fingerprint_digest = :digest WHERE key = 'k7'", digest="f" * 64)

    with pytest.raises(MemoryIntegrityError, match=r"'plain' .* items carry 2 fingerprints .*ffffffffffff"):
        vector_maintenance.check_integrity(database_url, "plain")


# pgvector refuses a NaN in a vector ("NaN not allowed in vector"): only a SQLite file can come to hold one.
@sqlite_only
def test_a_stored_vector_holding_nan_fails_the_check(database_url: str) -> None:
    fill(database_url, "packed", clustered(50), quantization="int8")
    poisoned = np.full(DIMENSION, np.nan, dtype=np.float32).tobytes()
    number = item_number(database_url, "packed", "k1")
    execute(
        database_url,
        "UPDATE vec_packed SET full = :vector WHERE item_sequence = (SELECT sequence FROM memory_items WHERE id = :id)",
        vector=poisoned,
        id=number,
    )

    with pytest.raises(MemoryIntegrityError, match=r"'packed' .* 1 stored vectors hold NaN or infinity"):
        vector_maintenance.check_integrity(database_url, "packed")


def test_a_fresh_but_empty_hnsw_index_fails_the_check_and_the_store_refuses_it(database_url: str) -> None:
    db = fill(database_url, "graph", clustered(200), index_type="hnsw")
    db.rebuild_index()
    assert db.index_file is not None
    _, state = HnswIndex.load(db.index_file)
    HnswIndex(dimension=DIMENSION, metric="cosine", config=HnswConfig()).save(db.index_file, state=state)
    reopened = VectorDB.open("graph", database_url=database_url, index_type="hnsw")
    assert reopened.index_status == "missing"
    assert len(reopened.search(Query(clustered(1, seed=9)[0], k=10))) == 10

    with pytest.raises(MemoryIntegrityError, match=r"'graph' .* HNSW index .* holds 0 vectors for 200 items"):
        vector_maintenance.check_integrity(database_url, "graph")


def test_an_index_behind_is_not_an_integrity_failure_and_the_refresh_merges_what_was_written(
    database_url: str,
) -> None:
    db = fill(database_url, "graph", clustered(200), index_type="hnsw")
    db.rebuild_index()
    writer = VectorDB.open("graph", database_url=database_url)
    writer.upsert("k0", clustered(1, seed=3)[0], {"symbol": "AAA"})
    writer.delete("k1")

    assert vector_maintenance.check_integrity(database_url, "graph").index_status == "behind"
    refresh = vector_maintenance.refresh_index(database_url, "graph", MaintenanceConfig())
    again = vector_maintenance.refresh_index(database_url, "graph", MaintenanceConfig())

    # The upserted item is merged in place, the deleted one leaves the graph: no rebuild.
    assert (refresh.status_before, refresh.action, refresh.size) == ("behind", "merged", 199)
    assert (again.status_before, again.action) == ("fresh", "skipped")
    assert vector_maintenance.check_integrity(database_url, "graph").index_status == "fresh"


def test_the_refresh_builds_a_missing_index_only_for_collections_that_ask_for_one(database_url: str) -> None:
    fill(database_url, "plain", clustered(100))
    config = MaintenanceConfig(hnsw_collections=("plain",))

    untouched = vector_maintenance.refresh_index(database_url, "plain", MaintenanceConfig())
    built = vector_maintenance.refresh_index(database_url, "plain", config)

    assert untouched.action == "none"
    assert (built.status_before, built.action, built.size) == ("missing", "rebuilt", 100)
    assert vector_maintenance.saved_index_status(database_url, "plain") == "fresh"


# -- recall --------------------------------------------------------------------------------------


def test_exact_search_audits_at_recall_one(database_url: str) -> None:
    fill(database_url, "plain", uniform(600))

    report = vector_maintenance.audit_recall(database_url, "plain", MaintenanceConfig(), NOW)

    assert (report.recall, report.path, report.queries, report.k) == (1.0, "exact", 50, 10)
    assert report.measured_at == format_timestamp(NOW)


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_the_audits_distances_are_the_stores_definitions(metric: str) -> None:
    queries, vectors = uniform(7, seed=1), np.vstack([uniform(300, seed=2), np.zeros((1, DIMENSION), np.float32)])

    batched = distance_matrix(metric, queries, vectors)

    rows, matrix = queries.astype(np.float64), vectors.astype(np.float64)
    dots = rows @ matrix.T
    norms = np.linalg.norm(rows, axis=1)[:, None] * np.linalg.norm(matrix, axis=1)[None, :]
    expected = {
        "cosine": 1.0 - np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0),
        "l2": np.linalg.norm(rows[:, None, :] - matrix[None, :, :], axis=2),
        "inner_product": 1.0 - dots,
    }[metric]
    np.testing.assert_allclose(batched, expected, rtol=1e-5, atol=1e-5)  # float32 dot products
    np.testing.assert_allclose(batched[3], distances(metric, queries[3], vectors), rtol=1e-5, atol=1e-5)


def test_hnsw_on_clustered_vectors_audits_at_the_default_threshold_or_better(database_url: str) -> None:
    fill(database_url, "graph", clustered(3000), index_type="hnsw").rebuild_index()

    report = vector_maintenance.audit_recall(database_url, "graph", MaintenanceConfig(), NOW)

    assert report.path == "hnsw"
    assert report.recall >= 0.95


def test_a_degenerate_hnsw_graph_audits_below_the_threshold(database_url: str) -> None:
    bad = HnswConfig(m=2, ef_construction=1, ef_search=1)
    fill(database_url, "graph", uniform(2000), index_type="hnsw", hnsw=bad).rebuild_index()

    report = vector_maintenance.audit_recall(database_url, "graph", MaintenanceConfig(), NOW)

    assert report.path == "hnsw"
    assert report.recall < 0.5
    with pytest.raises(RecallBelowThreshold, match=r"'graph' answered with recall@10 0\.\d+, below .* 0\.950"):
        vector_maintenance.check_recall(report, 0.95)


def test_binary_quantization_without_oversampling_audits_below_the_threshold(database_url: str) -> None:
    fill(database_url, "bits", uniform(1500), quantization="binary")

    starved = vector_maintenance.audit_recall(database_url, "bits", MaintenanceConfig(oversample=1), NOW)
    oversampled = vector_maintenance.audit_recall(database_url, "bits", MaintenanceConfig(oversample=64), NOW)

    assert starved.path == "binary"
    assert starved.recall < 0.95 < oversampled.recall


def test_the_audit_samples_the_same_queries_for_the_same_seed(database_url: str) -> None:
    fill(database_url, "bits", uniform(500), quantization="binary")
    config = MaintenanceConfig(oversample=1, recall_samples=20)

    first = vector_maintenance.audit_recall(database_url, "bits", config, NOW)
    second = vector_maintenance.audit_recall(database_url, "bits", config, NOW)

    assert first.recall == second.recall


# -- retention -----------------------------------------------------------------------------------


def test_pruning_deletes_exactly_the_old_items_and_leaves_the_rest_searchable(database_url: str) -> None:
    vectors = clustered(100)
    db = fill(database_url, "plain", vectors, days_apart=1.0)  # k0 is NOW, k99 is 99 days old

    report = vector_maintenance.prune(database_url, "plain", 30, NOW)
    again = vector_maintenance.prune(database_url, "plain", 30, NOW)

    assert (report.deleted, report.remaining) == (69, 31)
    assert (again.deleted, again.remaining) == (0, 31)
    assert db.count() == 31
    assert db.get("k30") is not None and db.get("k31") is None
    with session_scope(database_url) as session:
        assert vector_backend_for(session).count(session.connection(), "plain") == 31
    assert db.search(Query(vectors[5], k=1))[0].id == "k5"
    assert {result.id for result in db.search(Query(vectors[80], k=31))} == {f"k{i}" for i in range(31)}
    assert vector_maintenance.check_integrity(database_url, "plain").problems == []


def test_no_retention_keeps_everything(database_url: str) -> None:
    fill(database_url, "plain", clustered(20), days_apart=1000.0)

    report = vector_maintenance.prune(database_url, "plain", None, NOW)

    assert (report.deleted, report.remaining, report.cutoff) == (0, 20, None)


# -- compaction ----------------------------------------------------------------------------------


def test_rebuilding_a_mostly_deleted_vector_table_shrinks_it_and_keeps_every_vector(database_url: str) -> None:
    vectors = uniform(6000)
    db = fill(database_url, "plain", vectors, partition_key=None)
    # Nine in ten, spread over every chunk: sqlite-vec frees a chunk only once it is wholly empty.
    db.delete([f"k{i}" for i in range(6000) if i % 10])
    before = vector_bytes(database_url, "plain")
    expected = db.search(Query(vectors[0], k=5))

    report = vector_compaction.rebuild_vector_table(database_url, "plain")

    assert report.vectors == 600
    assert report.bytes_before == before
    assert vector_bytes(database_url, "plain") == report.bytes_after
    assert report.bytes_after is not None and report.bytes_after < before / 3
    assert VectorDB.open("plain", database_url=database_url).search(Query(vectors[0], k=5)) == expected
    assert vector_maintenance.check_integrity(database_url, "plain").problems == []


@pytest.mark.parametrize("quantization", ["int8", "binary"])
def test_rebuilding_a_quantized_partitioned_table_keeps_its_search_results(
    database_url: str, quantization: str
) -> None:
    vectors = clustered(400)
    db = fill(database_url, "packed", vectors, quantization=quantization)
    expected = [db.search(Query(vectors[i], k=5)) for i in (0, 1, 2)]

    vector_compaction.rebuild_vector_table(database_url, "packed")

    reopened = VectorDB.open("packed", database_url=database_url)
    assert [reopened.search(Query(vectors[i], k=5)) for i in (0, 1, 2)] == expected
    assert vector_maintenance.check_integrity(database_url, "packed").problems == []


def record_vacuum(url: str, when: datetime) -> None:
    with session_scope(url, write=True) as session:
        session.add(
            RunSummary(
                id=uuid.uuid4(),
                kind=vector_maintenance.RUN_KIND,
                status="completed",
                config_digest="0" * 64,
                started_at=when,
                finished_at=when,
                details={"vacuum": {"vacuumed_at": format_timestamp(when)}},
            )
        )


@sqlite_only
def test_vacuum_is_due_when_never_done_or_old_and_not_after_a_recent_one(database_url: str) -> None:
    config = MaintenanceConfig(vacuum_every_days=7)

    never = vector_compaction.plan_vacuum(database_url, config, NOW)
    record_vacuum(database_url, NOW - timedelta(days=8))
    old = vector_compaction.plan_vacuum(database_url, config, NOW)
    record_vacuum(database_url, NOW - timedelta(days=2))
    recent = vector_compaction.plan_vacuum(database_url, config, NOW)

    assert (never.due, never.reason) == (True, "never vacuumed")
    assert old.due and "7 days old" in old.reason
    assert not recent.due
    assert recent.last_vacuum == format_timestamp(NOW - timedelta(days=2))


@sqlite_only
def test_vacuum_is_due_when_free_pages_pass_the_ratio_and_reclaims_them(database_url: str) -> None:
    record_vacuum(database_url, NOW)
    fill(database_url, "plain", uniform(4000), partition_key=None).close()
    with session_scope(database_url, write=True) as session:
        vector_backend_for(session).drop_collection(session.connection(), "plain")

    plan = vector_compaction.plan_vacuum(database_url, MaintenanceConfig(max_free_page_ratio=0.2), NOW)
    compaction = vector_compaction.vacuum(database_url)

    assert plan.due and plan.free_page_ratio is not None and plan.free_page_ratio > 0.2
    assert compaction.action == "vacuumed"
    assert compaction.bytes_after is not None and compaction.bytes_before is not None
    assert compaction.bytes_after < compaction.bytes_before
    assert not vector_compaction.plan_vacuum(database_url, MaintenanceConfig(max_free_page_ratio=0.2), NOW).due


@sqlite_only
def test_optimize_runs_outside_a_transaction_and_skips_other_databases(database_url: str) -> None:
    assert vector_compaction.optimize(database_url).action == "optimized"
    skipped = vector_compaction.optimize("postgresql+psycopg://nobody@localhost/none")
    assert skipped.action == "skipped" and "SQLite only" in skipped.note


# -- statistics ----------------------------------------------------------------------------------


def test_statistics_describe_every_collection(database_url: str) -> None:
    fill(database_url, "graph", clustered(120), index_type="hnsw", metric="l2").rebuild_index()
    fill(database_url, "packed", clustered(30), quantization="binary", partition_key=None)

    statistics = {entry.collection: entry for entry in vector_statistics.collection_statistics(database_url)}

    graph, packed = statistics["graph"], statistics["packed"]
    assert (graph.items, graph.vectors, graph.dimension, graph.metric, graph.partitions) == (120, 120, 32, "l2", 3)
    assert (graph.index_status, packed.index_status) == ("fresh", "none")
    assert graph.index_bytes is not None and graph.index_bytes > 0 and packed.index_bytes is None
    assert (packed.quantization, packed.partition_key, packed.partitions) == ("binary", None, 0)
    assert packed.vector_bytes is not None and packed.vector_bytes > 0
    assert packed.full_vector_bytes == 30 * DIMENSION * 4  # binary search re-scores with full-precision vectors
    assert packed.item_bytes > 0
