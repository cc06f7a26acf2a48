"""Flow `ingest_bars`: read, check and store bar files; quarantine what fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows import call, call_each, run_hooks, task_runner
from neuraltrade.canonical import digest
from neuraltrade.errors import IngestionFailed, NeuralTradeError
from neuraltrade.market.bar_formats import check_date_format
from neuraltrade.market.ingest import bar_files
from neuraltrade.sample_data import sample_paths
from tasks import progress
from tasks.database import prepare_database
from tasks.ingest import ingest_file
from tasks.runs import current_run_id, finish_run, start_run


@flow(name="ingest_bars", task_runner=task_runner(), **run_hooks())
def ingest_bars(
    paths: list[str] | None = None,
    database_url: str | None = None,
    symbol: str | None = None,
    timezone: str = "UTC",
    date_format: str | None = None,
    adjusted: bool = False,
) -> dict[str, Any]:
    """Ingest every bar file of `paths` (default: the shipped sample data) into the database.

    A directory stands for every bar file under it (`neuraltrade.market.ingest.bar_files`). `date_format` and
    `adjusted` are those of `neuraltrade.market.ingest.read_bars`.

    Returns the run's summary: ``outcomes`` (one ``{"path", "failure", "report"}`` per file, in order),
    ``files`` (the `tasks.ingest.FileReport` of every file read), ``failed_files`` (path -> one-line
    reason), ``rejected_files`` (path -> message, the files refused whole) and the row totals.

    Every file is ingested even when another fails; the flow then fails at the end with one
    `IngestionFailed` naming each failed file, carrying the same summary, so nothing is hidden.
    """
    check_date_format(date_format)
    url = call(prepare_database, database_url)
    given = [str(path) for path in (paths or sample_paths())]
    # In order: each file once, and each directory holding no bar file with its error, failed as a file is.
    plan: dict[str, NeuralTradeError | None] = {}
    for path in given:
        try:
            plan.update((str(file), plan.get(str(file))) for file in bar_files(path))
        except NeuralTradeError as error:
            plan[str(Path(path))] = error
    files = [path for path, error in plan.items() if error is None]
    config = {
        "paths": given,
        "files": files,
        "symbol": symbol,
        "timezone": timezone,
        "date_format": date_format,
        "adjusted": adjusted,
    }
    progress.expect("ingest", len(files))
    run_id = call(start_run, url, "ingest_bars", digest(config), str(current_run_id()))
    options = {"symbol": symbol, "timezone": timezone, "date_format": date_format, "adjusted": adjusted}
    ingested = call_each(ingest_file, [((url, path), options) for path in files])
    results: dict[str, Any] = {path: error for path, error in plan.items() if error is not None}
    results.update(zip(files, ingested, strict=True))
    outcomes: list[dict[str, Any]] = []
    errors: dict[str, BaseException] = {}
    crash: BaseException | None = None
    for path in plan:
        result = results[path]
        if isinstance(result, BaseException):
            errors[path] = result
            if not isinstance(result, NeuralTradeError):
                crash = crash or result  # no file's fault: raised as it is, once the run is recorded
            outcomes.append({"path": path, "failure": _reason(result), "report": None})
        else:
            outcomes.append({"path": path, "failure": result["failure"], "report": result})
    reports = [outcome["report"] for outcome in outcomes if outcome["report"] is not None]
    failed = {outcome["path"]: outcome["failure"] for outcome in outcomes if outcome["failure"] is not None}
    summary: dict[str, Any] = {
        "outcomes": outcomes,
        "files": reports,
        "failed_files": failed,
        "rejected_files": {path: _one_line(str(error)) for path, error in errors.items()},
        "rows_read": sum(report["rows_read"] for report in reports),
        "rows_stored": sum(report["rows_stored"] for report in reports),
        "rows_quarantined": sum(report["rows_quarantined"] for report in reports),
    }
    call(finish_run, url, run_id, "failed" if failed else "completed", summary)
    if crash is not None:
        raise crash
    if failed:
        raise IngestionFailed(failed, summary)
    return summary


def _reason(error: BaseException) -> str:
    """Why a file failed, on one line, without its path (the outcome names the path)."""
    return _one_line(str(getattr(error, "reason", None) or error))


def _one_line(text: str) -> str:
    return " ".join(text.split())
