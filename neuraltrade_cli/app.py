"""The `neuraltrade` command: thin commands that call the flows and turn errors into one-line messages."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from neuraltrade_cli.execution import CONSOLE_LEVEL_VARIABLE, guarded, run_small_flow
from neuraltrade_cli.output import Failure as _Failure
from neuraltrade_cli.output import OneLineUsageErrors, console, errors, progress_bars, safe
from neuraltrade_cli.output import reporting_failures as _reporting_failures

app = typer.Typer(
    name="neuraltrade",
    help="Research and paper trading with a learning memory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineUsageErrors,
    # Docstrings are Markdown: ``code`` renders as code, not as raw reST.
    rich_markup_mode="markdown",
)
ResultT = TypeVar("ResultT")

# What the other command modules (ingestion, trading, research, pipeline) share with this one; they import
# this module, never the other way round, so the command line has no import cycle.
__all__ = [
    "DatabaseOption",
    "_Failure",
    "_reporting_failures",
    "_run",
    "app",
    "console",
    "errors",
    "main",
    "print_maintenance",
    "safe",
    "status",
]

#: Where `neuraltrade serve` serves /metrics by default (the Prometheus exporter convention of a port of
#: its own; 9464 is OpenTelemetry's Prometheus exporter's).
METRICS_PORT = 9464

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--db", metavar="URL", help="Database URL (default: $NEURALTRADE_DB or sqlite:///data/neuraltrade.db)."
    ),
]


@app.callback()
def configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's run logs.")] = False,
) -> None:
    """Research and paper trading with a learning memory."""
    # Prefect reads its settings when first imported, which happens only inside the commands below.
    if not verbose:
        # Prefect's console shows a failed run with its traceback at ERROR; the command prints the
        # error itself, on one line. Runs still send their full logs to the Prefect API.
        os.environ.setdefault(CONSOLE_LEVEL_VARIABLE, "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Without a server, Prefect starts a temporary one; its 20 s default start-up limit is too tight
    # for a first run (database migrations) on a busy two-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def _run(action: Callable[[], ResultT]) -> ResultT:
    """Run `action`, turning every expected error into a `_Failure` naming it."""
    from sqlalchemy.exc import SQLAlchemyError

    from neuraltrade.errors import NeuralTradeError

    try:
        return action()
    except NeuralTradeError as error:
        raise _Failure(str(error)) from None
    except SQLAlchemyError as error:
        raise _Failure(f"database: {str(getattr(error, 'orig', None) or error).splitlines()[0]}") from None
    except OSError as error:
        raise _Failure(f"{error.filename or 'file'}: {error.strerror or error}") from None
    except ImportError as error:
        raise _Failure(f"{error}: a package is missing; reinstall with `pip install -e .`") from None


@app.command()
@_reporting_failures
def init(
    db: DatabaseOption = None,
    checkpoint_dir: Annotated[
        str | None, typer.Option("--checkpoint-dir", metavar="DIR", help="Where keys.json is published.")
    ] = None,
) -> None:
    """Create the database (or migrate it to the newest schema) and the signing key (if absent, mode 0600, at
    $NEURALTRADE_SIGNING_KEY or ~/.config/neuraltrade/signing.key); sign and log records stored before
    provenance; publish the public key list."""
    from models.engine import display_url, resolve_database_url
    from models.migrations import current_revision, upgrade_database
    from tasks.provenance import initialise

    url = _run(lambda: resolve_database_url(db))
    _run(lambda: upgrade_database(url))
    console.print(f"database {display_url(url)} is at schema revision {current_revision(url)}")
    done = _run(lambda: initialise(url, checkpoint_dir))
    made = "created" if done["created"] else "found"
    console.print(f"signing key {done['key_id']} {made} at {done['key_path']}", highlight=False, soft_wrap=True)
    if done["adopted"]:
        counts = ", ".join(f"{count:,} {kind}" for kind, count in done["adopted"].items())
        console.print(f"signed and logged records stored before provenance: {counts}", highlight=False)
    console.print(f"public key list published at {done['keys']}", highlight=False, soft_wrap=True)


@app.command()
@_reporting_failures
def embed(
    db: DatabaseOption = None,
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", metavar="SYMBOL", help="Only these symbols (repeatable).")
    ] = None,
) -> None:
    """Embed every bar that has no vector yet into the market-state memory."""
    from flows.embed_observations import embed_observations

    with progress_bars({"embed": ("embedding", "symbols", len(symbol) if symbol else None)}):
        summary = _run(lambda: run_small_flow(embed_observations, database_url=db, symbols=symbol or None))
    console.print(f"stored {summary['embedded']:,} new vectors in collection {summary['collection']!r}")


@app.command()
@_reporting_failures
def serve(
    limit: Annotated[int | None, typer.Option(metavar="RUNS", help="Most flow runs at once.")] = None,
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", metavar="PORT", help="Serve /metrics on this port (0: do not).")
    ] = METRICS_PORT,
    metrics_address: Annotated[
        str, typer.Option("--metrics-address", metavar="HOST", help="Address /metrics listens on.")
    ] = "127.0.0.1",
) -> None:
    """Serve every deployment (the nightly one on its schedule) to a Prefect server, and the metrics of
    the database the deployments run on ($NEURALTRADE_DB)."""
    from deployments import serve_deployments
    from models.engine import resolve_database_url
    from tasks.metrics import serve_metrics

    if metrics_port:
        server = _run(lambda: serve_metrics(resolve_database_url(None), metrics_port, metrics_address))
        console.print(f"metrics on http://{metrics_address}:{server.server_port}/metrics")
    _run(lambda: serve_deployments(limit=limit))


@app.command()
@_reporting_failures
def status(db: DatabaseOption = None) -> None:
    """Show the rows of every table and the last runs (reads only: creates and changes nothing)."""
    from models.engine import read_only_url

    url = _run(lambda: read_only_url(db))

    def read() -> tuple[dict[str, int], list[Any], str | None]:
        from models import run_summaries
        from models.engine import session_scope
        from models.migrations import current_revision

        revision = current_revision(url)
        if revision is None:
            raise _NotInitialised()
        with session_scope(url) as session:
            return run_summaries.table_counts(session), run_summaries.last_runs(session), revision

    try:
        counts, runs, revision = _run(read)
    except _NotInitialised:
        raise _Failure(
            "the database has no schema yet; run `neuraltrade init` or `neuraltrade nightly` first"
        ) from None
    table = Table(title=f"Tables (schema {revision})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    history = Table(title="Last runs")
    history.add_column("started (UTC)", no_wrap=True)
    history.add_column("kind", no_wrap=True)
    history.add_column("status", no_wrap=True)
    history.add_column("s", justify="right", no_wrap=True)
    history.add_column("figures", overflow="fold")
    for run in runs:
        seconds = f"{(run.finished_at - run.started_at).total_seconds():.1f}" if run.finished_at else "-"
        details = run.details or {}
        figures = ", ".join(
            f"{details[key]:,} {label}" for key, label in _RUN_FIGURES if isinstance(details.get(key), int)
        )
        history.add_row(run.started_at.strftime("%m-%d %H:%M:%S"), run.kind, run.status, seconds, figures)
    console.print(history)


memory_app = typer.Typer(name="memory", help="Inspect and maintain the vector memory.", no_args_is_help=True)
app.add_typer(memory_app)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@memory_app.command("stats")
@_reporting_failures
def memory_stats(db: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Show every vector collection: sizes, settings, index status and the last recall audit."""
    import json
    from dataclasses import asdict

    from models import vector_statistics
    from models.engine import read_only_url, session_scope
    from models.migrations import current_revision

    url = _run(lambda: read_only_url(db))

    def read() -> tuple[list[Any], dict[str, dict[str, Any]], dict[str, Any] | None]:
        if current_revision(url) is None:
            raise _NotInitialised()
        collections = vector_statistics.collection_statistics(url)
        with session_scope(url) as session:
            return (
                collections,
                vector_statistics.last_recalls(session),
                vector_statistics.last_cache_hit_rate(session),
            )

    try:
        collections, recalls, cache = _run(read)
    except _NotInitialised:
        raise _Failure(
            "the database has no schema yet; run `neuraltrade init` or `neuraltrade nightly` first"
        ) from None
    if as_json:
        rows = [{**asdict(entry), "last_recall": recalls.get(entry.collection)} for entry in collections]
        typer.echo(json.dumps({"collections": rows, "l1_cache": cache}, indent=2, sort_keys=True))
        return
    if not collections:
        console.print("no vector collection yet; `neuraltrade embed` creates market_state")
    else:
        console.print(_collection_table(collections, recalls))
    if cache is None:
        console.print(
            "L1 cache hit rate: n/a (the cache lives in the process that searches; no run has recorded one)",
            highlight=False,
        )
    else:
        console.print(
            f"L1 cache hit rate: {cache['hit_rate']:.1%}, recorded by the {cache['kind']} run of "
            f"{cache['started_at']} (in-process; not this command's)",
            highlight=False,
        )


def _collection_table(collections: list[Any], recalls: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Vector collections")
    table.add_column("", no_wrap=True)
    for entry in collections:
        table.add_column(entry.collection, justify="right", overflow="fold")
    fields: list[tuple[str, Callable[[Any], str]]] = [
        ("items", lambda entry: f"{entry.items:,}"),
        ("vectors", lambda entry: f"{entry.vectors:,}"),
        ("dimension", lambda entry: str(entry.dimension)),
        ("metric", lambda entry: entry.metric),
        ("quantization", lambda entry: entry.quantization),
        ("partition key", lambda entry: entry.partition_key or "-"),
        ("partitions", lambda entry: f"{entry.partitions:,}"),
        ("vector table", lambda entry: _size(entry.vector_bytes)),
        ("  of which full precision", lambda entry: _size(entry.full_vector_bytes)),
        ("item rows (key, metadata)", lambda entry: _size(entry.item_bytes)),
        ("HNSW index file", lambda entry: _size(entry.index_bytes)),
        ("index status", lambda entry: entry.index_status),
        ("graph searches", _graph_space),
    ]
    for label, shown in fields:
        table.add_row(label, *(shown(entry) for entry in collections))
    audits = [recalls.get(entry.collection) for entry in collections]
    table.add_row(
        "recall@k (last audit)",
        *(
            "never measured" if audit is None else f"{audit['recall']:.3f} @{audit['k']} ({audit['path']})"
            for audit in audits
        ),
    )
    table.add_row(
        "measured at (UTC)",
        *(
            "-"
            if audit is None
            else audit["measured_at"][:19].replace("T", " ")
            + ("" if audit.get("run_status") == "completed" else f" ({audit.get('run_status')} run)")
            for audit in audits
        ),
    )
    return table


def _graph_space(entry: Any) -> str:
    if entry.index_bytes is None:
        return "-"
    if entry.index_subspace_rank is None:
        return "whole vectors"
    return f"a {entry.index_subspace_rank}-d span of {entry.dimension}"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 1024:
        return f"{value:,} B"
    size = value / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


@memory_app.command("maintain")
@_reporting_failures
def memory_maintain(
    db: DatabaseOption = None,
    recall_threshold: Annotated[
        float, typer.Option(metavar="RECALL", help="Fail when a collection's recall@10 is below this.")
    ] = 0.95,
    retention_days: Annotated[
        int | None,
        typer.Option(metavar="DAYS", help="Delete items older than this many days (default: keep everything)."),
    ] = None,
    collection: Annotated[
        list[str] | None, typer.Option("--collection", metavar="NAME", help="Only these collections (repeatable).")
    ] = None,
) -> None:
    """Check, prune, compact, re-index and audit the vector memory now."""
    from flows.maintain_index import maintain_index
    from neuraltrade.memory.maintenance import MaintenanceConfig

    config = _run(lambda: MaintenanceConfig(recall_threshold=recall_threshold, retention_days=retention_days))
    with progress_bars({"maintain": ("maintaining", "collections", len(collection) if collection else None)}):
        summary = _run(
            lambda: run_small_flow(maintain_index, database_url=db, config=config, collections=collection or None)
        )
    print_maintenance(summary)


def print_maintenance(summary: dict[str, Any]) -> None:
    table = Table(title="Maintenance")
    table.add_column("collection", overflow="fold")
    for column in ("items", "pruned", "index", "recall", "path"):
        table.add_column(column, justify="right", no_wrap=True)
    for name in summary["collections"]:
        recall = summary["recall"][name]
        table.add_row(
            name,
            f"{summary['pruned'][name]['remaining']:,}",
            f"{summary['pruned'][name]['deleted']:,}",
            summary["index"][name]["action"],
            f"{recall['recall']:.3f}",
            recall["path"],
        )
    console.print(table)
    vacuum = summary["vacuum"]
    if "vacuumed_at" in vacuum:
        console.print(
            f"vacuumed ({vacuum['plan']['reason']}): {_size(vacuum['bytes_before'])} -> {_size(vacuum['bytes_after'])}",
            highlight=False,
        )
    else:
        console.print(f"not vacuumed: {vacuum['plan']['reason']}", highlight=False)


_RUN_FIGURES = (
    ("rows_read", "read"),
    ("rows_stored", "stored"),
    ("rows_quarantined", "quarantined"),
    ("embedded", "embedded"),
    ("backtested", "backtests"),
    ("failed", "failed"),
)


class _NotInitialised(Exception):
    pass


def main() -> None:
    """Entry point of the `neuraltrade` command: Ctrl-C and SIGTERM stop it as `execution` says."""
    guarded(app)
