"""Prometheus metrics of the platform: rebuilt after every run, written as a text file, pushed, served.

Flow runs are batch jobs, often in short-lived processes. After each run (`tasks.runs.finish_run`) the
metrics are built afresh: what the database says (table sizes, the last run of each kind and its
figures, recall, the learning loop, the last verify), plus what this process measured during the run in
a fresh registry (`begin_batch`): search latency, task failures and retries. They are written atomically
to a file in Prometheus' text format, for node_exporter's textfile collector, and pushed to the
Pushgateway ``$NEURALTRADE_PUSHGATEWAY`` names (a push that fails is logged, never fails the run).
`neuraltrade serve --metrics-port` serves the database's metrics on ``/metrics`` (`DatabaseCollector`),
read at each scrape.

Under a Dask task runner the process measurements are those of the process that ran each task: a
worker's are not sent back (its searches and retries are missing from the batch's file).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway, write_to_textfile
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from models import run_summaries
from models.engine import database_file, session_scope
from models.vector_statistics import last_recalls
from models.vector_store import SEARCH_OBSERVERS
from neuraltrade.errors import ConfigError

METRICS_ENVIRONMENT_VARIABLE = "NEURALTRADE_METRICS_FILE"
#: The Pushgateway every run's metrics are pushed to (``host:9091`` or a URL), if set.
PUSHGATEWAY_VARIABLE = "NEURALTRADE_PUSHGATEWAY"
#: The job name the metrics are pushed under (each push replaces the previous one's).
PUSH_JOB = "neuraltrade"
#: Seconds a push may take before it is given up (a night never waits on monitoring).
PUSH_TIMEOUT_SECONDS = 10.0
_FIGURES = ("rows_read", "rows_stored", "rows_quarantined", "embedded", "backtested", "failed")
#: Search latency buckets, seconds: an HNSW search takes about 0.1 ms, an exact one over a million
#: vectors a few hundred.
SEARCH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

logger = logging.getLogger(__name__)


class BatchMetrics:
    """What this process measures during one batch run, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.search_seconds = Histogram(
            "neuraltrade_memory_search_seconds",
            "Seconds per vector-memory search during the last run, by collection.",
            ["collection"],
            buckets=SEARCH_BUCKETS,
            registry=self.registry,
        )
        self.task_failures = Counter(
            "neuraltrade_task_failures",
            "Task calls of the last run that ended failed, by task.",
            ["task"],
            registry=self.registry,
        )
        self.task_retries = Counter(
            "neuraltrade_task_retries",
            "Task runs of the last run retried after a transient failure, by task.",
            ["task"],
            registry=self.registry,
        )


_batch = BatchMetrics()
_batch_lock = threading.Lock()


def begin_batch() -> None:
    """Start measuring a new batch run from zero (`tasks.runs.start_run` calls it)."""
    global _batch
    with _batch_lock:
        _batch = BatchMetrics()


def current_batch() -> BatchMetrics:
    """Return the measurements of the batch run in progress in this process."""
    with _batch_lock:
        return _batch


def observe_search(collection: str, seconds: float) -> None:
    """Record one search's latency (a `models.vector_store.SEARCH_OBSERVERS` function)."""
    current_batch().search_seconds.labels(collection=collection).observe(seconds)


def count_failures(task: str, failed: int) -> None:
    """Record `failed` task calls of `task` that ended failed."""
    if failed:
        current_batch().task_failures.labels(task=task).inc(failed)


def count_retry(task: str) -> None:
    """Record a retry of a task run of `task`."""
    current_batch().task_retries.labels(task=task).inc()


if observe_search not in SEARCH_OBSERVERS:
    SEARCH_OBSERVERS.append(observe_search)


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
    hit_rate = Gauge(
        "neuraltrade_memory_cache_hit_ratio",
        "Share of the L1 cache's memory reads answered from the cache during the last backtest run.",
        registry=registry,
    )
    backtests = next((run for run in run_summaries.latest_runs_by_kind(session) if run.kind == "run_backtests"), None)
    cache = {} if backtests is None else (backtests.details or {}).get("cache") or {}
    hit_rate.set(cache["hit_rate"] if isinstance(cache.get("hit_rate"), (int, float)) else float("nan"))
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


def run_metrics(session: Session) -> CollectorRegistry:
    """Return the database's metrics (`collect_metrics`) with this process's batch measurements."""
    registry = collect_metrics(session)
    registry.register(_Measured(current_batch().registry))
    return registry


def export_metrics(session: Session, path: Path) -> Path:
    """Write the database's metrics and this process's batch measurements to `path` atomically (a
    temporary file renamed over it), and push them when ``$NEURALTRADE_PUSHGATEWAY`` is set; return the
    path."""
    registry = run_metrics(session)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry)
    except OSError as error:
        raise ConfigError(
            f"metrics file {path} cannot be written ({error.strerror or error}); "
            f"${METRICS_ENVIRONMENT_VARIABLE} names where it goes"
        ) from error
    gateway = os.environ.get(PUSHGATEWAY_VARIABLE, "").strip()
    if gateway:
        try:
            push_to_gateway(gateway, job=PUSH_JOB, registry=registry, timeout=PUSH_TIMEOUT_SECONDS)
        except Exception as error:  # monitoring never fails a run; the text file has the figures
            logger.warning("metrics not pushed to %s=%s: %s", PUSHGATEWAY_VARIABLE, gateway, error)
    return path


class _Measured(Collector):
    """Another registry's metrics, collected as part of this one."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        yield from self._source.collect()


class DatabaseCollector(Collector):
    """The database's metrics, read at each scrape (`neuraltrade serve --metrics-port`)."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url

    def collect(self) -> Iterator[Any]:
        with session_scope(self._database_url) as session:
            families = list(run_metrics(session).collect())
        yield from families


def serve_metrics(database_url: str, port: int, address: str = "127.0.0.1") -> Any:
    """Serve the metrics of `database_url` (read at each scrape) on ``http://address:port/metrics`` in a
    background thread; return the server (its ``server_port`` says the port when `port` was 0).

    Raises
    ------
    ConfigError
        If the port is out of range or cannot be bound (in use, or privileged).
    """
    from prometheus_client import start_http_server

    if not 0 <= port <= 65_535:
        raise ConfigError(f"metrics port {port} is not a TCP port (0 to 65535)")
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(database_url))
    try:
        server, _thread = start_http_server(port, addr=address, registry=registry)
    except OSError as error:
        raise ConfigError(f"cannot serve metrics on {address}:{port}: {error.strerror or error}") from error
    return server
