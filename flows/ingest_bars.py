"""Flow `ingest_bars`: read, check and store bar files; quarantine what fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped

from flows import task_runner
from neuraltrade.canonical import digest
from neuraltrade.errors import FileRejected
from neuraltrade.sample_data import sample_paths
from tasks.database import prepare_database
from tasks.ingest import ingest_file
from tasks.runs import current_run_id, finish_run, start_run


@flow(name="ingest_bars", task_runner=task_runner())
def ingest_bars(
    paths: list[str] | None = None,
    database_url: str | None = None,
    symbol: str | None = None,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """Ingest every file of `paths` (default: the shipped sample data) into the database.

    Every readable file is ingested even when another is rejected; the flow fails at the end, naming
    each rejected file, so nothing is half-written and nothing is hidden.
    """
    url = prepare_database(database_url)
    files = [str(path) for path in (paths or sample_paths())]
    config = {"paths": files, "symbol": symbol, "timezone": timezone}
    run_id = start_run(url, "ingest_bars", digest(config), str(current_run_id()))
    futures = ingest_file.map(unmapped(url), files, symbol=unmapped(symbol), timezone=unmapped(timezone))
    reports: list[dict[str, Any]] = []
    rejections: dict[str, BaseException] = {}
    for path, future in zip(files, futures, strict=True):
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            rejections[path] = outcome
        else:
            reports.append(outcome)
    rejected = {path: str(error) for path, error in rejections.items()}
    summary = {
        "files": reports,
        "rejected_files": rejected,
        "rows_read": sum(report["rows_read"] for report in reports),
        "rows_stored": sum(report["rows_stored"] for report in reports),
        "rows_quarantined": sum(report["rows_quarantined"] for report in reports),
    }
    finish_run(url, run_id, "failed" if rejected else "completed", summary)
    if len(rejections) == 1:
        raise next(iter(rejections.values()))
    if rejections:
        raise FileRejected(
            ", ".join(rejections),
            "; ".join(f"{Path(path).name}: {getattr(error, 'reason', error)}" for path, error in rejections.items()),
        )
    return summary
