"""`neuraltrade ingest`: read, check and store bar files, with one outcome line per file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuraltrade_cli.app import DatabaseOption, _Failure, _reporting_failures, _run, app, console, safe
from neuraltrade_cli.execution import run_small_flow
from neuraltrade_cli.output import progress_bars


@app.command()
@_reporting_failures
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="CSV or Parquet bar files, or folders: every bar file under them."),
    ],
    db: DatabaseOption = None,
    symbol: Annotated[
        str | None, typer.Option(metavar="SYMBOL", help="Symbol of every row (default: from the file name).")
    ] = None,
    timezone: Annotated[
        str, typer.Option(metavar="ZONE", help="IANA zone of times written without an offset, e.g. America/New_York.")
    ] = "UTC",
    date_format: Annotated[
        str | None,
        typer.Option(
            "--date-format",
            metavar="FORMAT",
            help="strftime format of the timestamps, e.g. %d/%m/%Y for day-first dates (default: ISO and the like).",
        ),
    ] = None,
    adjusted: Annotated[
        bool, typer.Option("--adjusted", help="Scale open, high, low and close by Adj Close / Close.")
    ] = False,
) -> None:
    """Ingest bar files: check every row, store what passes, quarantine what fails.

    Each file gets one line saying what became of it. A file that cannot be read, holds no data row or
    had every row quarantined fails the command (exit status 1) after the other files are stored.
    """
    from flows.ingest_bars import ingest_bars
    from neuraltrade.errors import IngestionFailed, NeuralTradeError
    from neuraltrade.market.ingest import expand_bar_paths

    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise _Failure(f"no such file or folder: {', '.join(missing)}")
    try:
        total: int | None = len(expand_bar_paths(paths))
    except NeuralTradeError:
        total = None  # a folder without bar files: the flow names it among the failed files

    def run() -> tuple[dict[str, Any], IngestionFailed | None]:
        try:
            summary = run_small_flow(
                ingest_bars,
                paths=[str(path) for path in paths],
                database_url=db,
                symbol=symbol,
                timezone=timezone,
                date_format=date_format,
                adjusted=adjusted,
            )
        except IngestionFailed as failed:
            return dict(failed.summary), failed
        return summary, None

    with progress_bars({"ingest": ("ingesting", "files", total)}):
        summary, failed = _run(run)
    print_ingestion(summary)
    if failed is not None:
        raise _Failure(str(failed))


def print_ingestion(summary: dict[str, Any]) -> None:
    """Print one line per file of an ingestion summary: what was read, stored and quarantined, or why it failed."""
    for outcome in summary.get("outcomes", []):
        console.print(_outcome_line(outcome), highlight=False, soft_wrap=True)
    reports = summary.get("files", [])
    stored = sum(report["rows_stored"] for report in reports)
    quarantined = sum(report["rows_quarantined"] for report in reports)
    failed = len(summary.get("failed_files", {}))
    console.print(
        f"{len(summary.get('outcomes', [])):,} file(s): {stored:,} rows stored, {quarantined:,} quarantined"
        + (f", {failed:,} file(s) failed" if failed else ""),
        highlight=False,
    )
    dropped = sum(report["vectors_invalidated"] for report in reports)
    if dropped:
        console.print(
            f"dropped {dropped:,} vectors built on history that changed; embedding rebuilds them", highlight=False
        )


def _outcome_line(outcome: dict[str, Any]) -> str:
    name = safe(Path(outcome["path"]).name)
    report = outcome.get("report")
    mark = "[red]✗[/]" if outcome.get("failure") else "[green]✓[/]"
    if report is None:
        return f"{mark} {name}: {safe(outcome['failure'])}"
    line = (
        f"{mark} {name} ({safe(report['layout'])}, {safe(', '.join(report['symbols'])) or 'no symbol'}): "
        f"{report['rows_read']:,} rows read, {report['rows_stored']:,} stored "
        f"({report['rows_changed']:,} new or changed), {report['rows_quarantined']:,} quarantined"
    )
    if report["failed_checks"]:
        checks = ", ".join(f"{safe(check)} x{count:,}" for check, count in report["failed_checks"].items())
        line += f" (failing {checks})"
    if outcome.get("failure"):
        line += f": {safe(outcome['failure'])}"
    return line
