"""Prometheus metrics of the platform, exported as a text file after every run.

Flow runs are batch jobs, often in short-lived processes, so the metrics are rebuilt from the database
after each run and written atomically to a file in Prometheus' text format, for node_exporter's
textfile collector (or any scraper that reads files). Nothing is kept in process memory, so every
process writes the same, complete picture.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from sqlalchemy.orm import Session

from models import run_summaries
from models.engine import database_file
from models.vector_statistics import last_recalls

METRICS_ENVIRONMENT_VARIABLE = "NEURALTRADE_METRICS_FILE"
_FIGURES = ("rows_read", "rows_stored", "rows_quarantined", "embedded", "backtested", "failed")


def metrics_path(database_url: str) -> Path:
    """Return where the metrics of `database_url` go: ``$NEURALTRADE_METRICS_FILE``, else beside a
    SQLite file, else ``data/metrics.prom``."""
    configured = os.environ.get(METRICS_ENVIRONMENT_VARIABLE)
    if configured:
        return Path(configured)
    database = database_file(database_url)
    return Path("data") / "metrics.prom" if database is None else database.parent / "metrics.prom"


def collect_metrics(session: Session) -> CollectorRegistry:
    """Return a registry holding the table sizes and the last run of every kind."""
    registry = CollectorRegistry()
    table_rows = Gauge("neuraltrade_table_rows", "Rows in each table.", ["table"], registry=registry)
    for table, count in run_summaries.table_counts(session).items():
        table_rows.labels(table=table).set(count)
    finished = Gauge(
        "neuraltrade_last_run_finished_timestamp_seconds",
        "When the last run of each kind finished, by its status.",
        ["kind", "status"],
        registry=registry,
    )
    duration = Gauge(
        "neuraltrade_last_run_duration_seconds", "How long the last run of each kind took.", ["kind"], registry=registry
    )
    figures = Gauge(
        "neuraltrade_last_run_rows",
        "Rows or vectors the last run of each kind handled.",
        ["kind", "figure"],
        registry=registry,
    )
    for run in run_summaries.latest_runs_by_kind(session):
        if run.finished_at is None:
            continue
        finished.labels(kind=run.kind, status=run.status).set(run.finished_at.timestamp())
        duration.labels(kind=run.kind).set((run.finished_at - run.started_at).total_seconds())
        for figure in _FIGURES:
            value = (run.details or {}).get(figure)
            if isinstance(value, (int, float)):
                figures.labels(kind=run.kind, figure=figure).set(value)
    recall = Gauge(
        "neuraltrade_memory_recall",
        "Recall@k of each vector collection's search path, measured by the last index maintenance.",
        ["collection"],
        registry=registry,
    )
    for collection, measured in last_recalls(session).items():
        if isinstance(measured.get("recall"), (int, float)):
            recall.labels(collection=collection).set(measured["recall"])
    _learning_metrics(session, registry)
    _provenance_metrics(session, registry)
    return registry


def _provenance_metrics(session: Session, registry: CollectorRegistry) -> None:
    """The last verification's result: verified (1) or not (0), the log's size and how many findings."""
    gauges = {
        "verified": Gauge(
            "neuraltrade_provenance_verified", "1 if the last verify passed, 0 if it failed.", registry=registry
        ),
        "log_entries": Gauge(
            "neuraltrade_provenance_log_entries", "Entries of the provenance log at the last verify.", registry=registry
        ),
        "findings": Gauge(
            "neuraltrade_provenance_findings", "What the last verify found that does not verify.", registry=registry
        ),
    }
    last = next((run for run in run_summaries.latest_runs_by_kind(session) if run.kind == "verify_provenance"), None)
    for name, gauge in gauges.items():
        value = None if last is None else (last.details or {}).get(name)
        gauge.set(value if isinstance(value, (int, float)) else float("nan"))


def _learning_metrics(session: Session, registry: CollectorRegistry) -> None:
    """The learning loop's gauges (`tasks.learning_report.learning_gauges`); NaN where nothing is measured yet."""
    from tasks.learning_report import learning_gauges

    figures = learning_gauges(session)
    for name, text, value in (
        ("verdict_coverage", "Share of the stored runs' closed trades with a verdict.", "verdict_coverage"),
        (
            "retrievals_with_hits",
            "Share of the gate's assessments that recalled at least one episode (newest run of each gated strategy "
            "and symbols).",
            "retrieval_hit_share",
        ),
        ("vetoes", "Entries the gate vetoed (newest run of each gated strategy and symbols).", "vetoes"),
    ):
        Gauge(f"neuraltrade_learning_{name}", text, registry=registry).set(figures[value])
    patterns = Gauge(
        "neuraltrade_learning_patterns",
        "Patterns of the newest distillation of each strategy.",
        ["strategy"],
        registry=registry,
    )
    support = Gauge(
        "neuraltrade_learning_pattern_support_median",
        "Median decayed support (episodes) of the patterns of the newest distillation of each strategy.",
        ["strategy"],
        registry=registry,
    )
    for strategy, count in figures["patterns"].items():
        patterns.labels(strategy=strategy).set(count)
        support.labels(strategy=strategy).set(figures["pattern_support_median"][strategy])


def export_metrics(session: Session, path: Path) -> Path:
    """Write the metrics to `path` atomically (a temporary file renamed over it); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), collect_metrics(session))
    return path
