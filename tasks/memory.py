"""Maintenance tasks of the vector memory: one call of `models.vector_maintenance` each, plain dicts out.

Every task takes the database URL and one collection (or none, for database-wide steps), so a flow
calls each once per collection per step; sessions never cross a task boundary.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import task

from models import vector_compaction, vector_maintenance
from neuraltrade.canonical import format_timestamp
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.memory.maintenance import MaintenanceConfig
from tasks import progress
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient

clock: Clock = SystemClock()

#: The progress stage the audit reports to, once per collection: the last step of a collection's upkeep.
PROGRESS_STAGE = "maintain"


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def list_collections(database_url: str) -> list[str]:
    """Return the name of every vector collection."""
    return vector_maintenance.collection_names(database_url)


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def check_integrity(database_url: str, collection: str) -> dict[str, Any]:
    """Check that the collection's vectors, items, fingerprint and fresh index agree.

    Raises `MemoryIntegrityError`, naming the collection and the figures, when they do not.
    """
    return asdict(vector_maintenance.check_integrity(database_url, collection))


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def prune_collection(database_url: str, collection: str, retention_days: int | None) -> dict[str, Any]:
    """Delete the collection's items older than `retention_days` (None keeps everything)."""
    return asdict(vector_maintenance.prune(database_url, collection, retention_days, clock.now()))


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def plan_vacuum(database_url: str, config: MaintenanceConfig) -> dict[str, Any]:
    """Return whether VACUUM and vector-table rebuilds are due, and why."""
    return asdict(vector_compaction.plan_vacuum(database_url, config, clock.now()))


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def rebuild_vector_table(database_url: str, collection: str) -> dict[str, Any]:
    """Rewrite the collection's vector storage densely (sqlite-vec: reclaiming partly empty chunks)."""
    return asdict(vector_compaction.rebuild_vector_table(database_url, collection))


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def vacuum_database(database_url: str) -> dict[str, Any]:
    """VACUUM the database; the result carries ``vacuumed_at``, which later runs read to schedule the next."""
    started = clock.now()
    result = asdict(vector_compaction.vacuum(database_url))
    if result["action"] == "vacuumed":
        result["vacuumed_at"] = format_timestamp(started)
    return result


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def optimize_database(database_url: str) -> dict[str, Any]:
    """Refresh the query planner's statistics (SQLite's ``PRAGMA optimize``)."""
    return asdict(vector_compaction.optimize(database_url))


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def refresh_index(database_url: str, collection: str, config: MaintenanceConfig) -> dict[str, Any]:
    """Rebuild the collection's HNSW index if it is missing, or merge what was written since it was sealed."""
    return asdict(vector_maintenance.refresh_index(database_url, collection, config))


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def audit_recall(database_url: str, collection: str, config: MaintenanceConfig) -> dict[str, Any]:
    """Measure the collection's recall@k against brute force; the flow compares it with the threshold."""
    report = vector_maintenance.audit_recall(database_url, collection, config, clock.now())
    progress.report(PROGRESS_STAGE, collection, report.items)
    return asdict(report)
