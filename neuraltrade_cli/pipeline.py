"""The `nightly` command: the whole pipeline, then what each stage did, as the other commands print it.

It prints with the ingestion and backtest commands' own printers, so it lives beside them rather than in
`neuraltrade_cli.app`, which every command module imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuraltrade_cli.app import (
    DatabaseOption,
    _reporting_failures,
    _run,
    app,
    console,
    print_maintenance,
    safe,
    status,
)
from neuraltrade_cli.execution import run_flow, start_prefect_server
from neuraltrade_cli.ingestion import print_ingestion
from neuraltrade_cli.output import progress_bars
from neuraltrade_cli.trading import print_backtests


@app.command()
@_reporting_failures
def nightly(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(metavar="PATH", help="Bar files or folders (default: the shipped sample data)."),
    ] = None,
    db: DatabaseOption = None,
    checkpoint_dir: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-dir",
            metavar="DIR",
            help="Where the night's signed checkpoint and keys.json go (default: checkpoints/ beside the database).",
        ),
    ] = None,
) -> None:
    """Run the nightly pipeline: ingest, check, embed, maintain the memory, backtest every strategy, learn,
    then seal the provenance log with a signed checkpoint and verify the database against it."""
    from flows.nightly import nightly as nightly_flow
    from neuraltrade.errors import IngestionFailed
    from neuraltrade.sample_data import sample_paths

    files = [str(path) for path in (paths or sample_paths())]
    stages = {
        "ingest": ("ingesting", "files", len(files)),
        "embed": ("embedding", "symbols", None),
        "maintain": ("maintaining", "collections", None),
        "backtest": ("backtesting", "runs", None),
        "reflect": ("reflecting", "runs", None),
    }
    start_prefect_server()  # before the progress bars: a server that cannot start is one line, at once

    def run() -> dict[str, Any]:
        try:
            result: dict[str, Any] = run_flow(
                nightly_flow, in_process=False, database_url=db, paths=files, checkpoint_dir=checkpoint_dir
            )
        except IngestionFailed as failed:
            # The night went on over what was stored; still say what became of every file.
            print_ingestion(dict(failed.summary))
            raise
        return result

    with progress_bars(stages):
        summary = _run(run)
    print_ingestion(summary["ingestion"])
    console.print(f"stored {summary['embedding']['embedded']:,} new vectors")
    print_maintenance(summary["maintenance"])
    print_backtests(summary["backtests"])
    if summary.get("learning"):
        print_learning(summary["learning"])
    if summary.get("provenance"):
        print_provenance(summary["provenance"])
    status(db)


def print_provenance(provenance: dict[str, Any]) -> None:
    """One line: the checkpoint written, and what verification found."""
    sealed, verified = provenance["checkpoint"], provenance["verify"]
    console.print(
        f"checkpoint of {sealed['tree_size']:,} log entries (root {sealed['root_hash'][:16]}, key {sealed['key_id']}) "
        f"written to {sealed['path']}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(safe(verified["summary"]), highlight=False, soft_wrap=True)


def print_learning(summary: dict[str, Any]) -> None:
    """Print what the night's learning stage did: episodes judged, patterns distilled, counterfactuals simulated."""
    strategies = summary.get("strategies", [])
    patterns = sum(item.get("patterns", 0) for item in strategies)
    console.print(
        f"learning: {summary['episodes']:,} episodes judged from {summary['runs_reflected']:,} runs "
        f"({summary['pending']:,} trades wait for their outcome window); {patterns:,} patterns in the latest "
        f"distillations of {len(strategies):,} strategies ({summary['distillations']:,} new distillations); "
        f"{summary['counterfactuals']:,} counterfactuals simulated",
        highlight=False,
        soft_wrap=True,
    )
    console.print("`neuraltrade patterns`, `reflections RUN_ID`, `counterfactual RUN_ID`, `learning-report` show them.")
