"""Ingestion tasks: read a file, check its quality, upsert what passed and quarantine what did not."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import task

from models import collections, repositories
from models.engine import session_scope
from models.repositories import QuarantineEntry
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.market.bars import BAR_COLUMNS
from neuraltrade.market.ingest import ParsedFile, file_failure, read_bars
from tasks import progress
from tasks.quality import check_bars
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient

clock: Clock = SystemClock()


@dataclass(frozen=True, kw_only=True)
class FileReport:
    """What ingesting one file did; ``rows_read == rows_stored + rows_quarantined`` always.

    `failure` says, on one line, why the file failed although it was read: it holds no data row, or
    every row was quarantined (its quarantined rows are stored all the same); None when rows were stored.
    """

    source: str
    layout: str
    symbols: list[str]
    rows_read: int
    rows_stored: int
    rows_changed: int
    rows_quarantined: int
    failed_checks: dict[str, int]
    vectors_invalidated: int
    failure: str | None


def split_by_quality(parsed: ParsedFile) -> tuple[Any, list[QuarantineEntry]]:
    """Return the rows of `parsed` that pass every check, and quarantine entries for the rest."""
    frame = parsed.frame
    failures = check_bars(frame.loc[:, list(BAR_COLUMNS)])
    lines = frame["line"].to_numpy()
    entries = [
        QuarantineEntry(line=row.line, failed_checks=(row.reason,), raw_values=row.raw_values)
        for row in parsed.rejected
    ]
    entries.extend(
        QuarantineEntry(
            line=int(lines[position]),
            failed_checks=tuple(checks),
            raw_values=parsed.raw_values(int(lines[position])),
        )
        for position, checks in sorted(failures.items())
    )
    passing = frame.drop(index=list(failures)).loc[:, list(BAR_COLUMNS)]
    return passing.reset_index(drop=True), sorted(entries, key=lambda entry: entry.line)


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def ingest_file(
    database_url: str,
    path: str,
    symbol: str | None = None,
    timezone: str = "UTC",
    date_format: str | None = None,
    adjusted: bool = False,
) -> dict[str, Any]:
    """Ingest one bar file in one transaction; return its `FileReport` as a dict.

    `date_format` and `adjusted` are those of `neuraltrade.market.ingest.read_bars`. A file that cannot be read
    at all raises `FileRejected` before anything is written; a file read but failed (see
    `FileReport.failure`) is reported, not raised, so that its quarantined rows are kept.
    """
    parsed = read_bars(path, symbol=symbol, timezone=timezone, date_format=date_format, adjusted=adjusted)
    passing, entries = split_by_quality(parsed)
    now = clock.now()
    source = str(Path(path).resolve())
    invalidated = 0
    with session_scope(database_url, write=True) as session:
        changed = repositories.upsert_bars(session, passing, source=source, now=now)
        if changed:
            # A corrected or back-filled bar changes every window that contains it: drop the memory
            # from there on, and the next embedding run rebuilds it. A pure append drops nothing.
            for written_symbol, since in repositories.earliest_written(session, source=source, ingested_at=now).items():
                invalidated += collections.delete_vectors_from(session, written_symbol, since)
                repositories.delete_observations_from(session, written_symbol, since)
        repositories.quarantine_rows(
            session, source=source, source_digest=parsed.source_digest, entries=entries, now=now
        )
    failed: dict[str, int] = {}
    for entry in entries:
        for check in entry.failed_checks:
            failed[check] = failed.get(check, 0) + 1
    failed_checks = dict(sorted(failed.items()))
    report = FileReport(
        source=source,
        layout=parsed.layout,
        symbols=sorted(passing["symbol"].unique().tolist()),
        rows_read=parsed.rows_read,
        rows_stored=len(passing),
        rows_changed=changed,
        rows_quarantined=len(entries),
        failed_checks=failed_checks,
        vectors_invalidated=invalidated,
        failure=file_failure(
            rows_read=parsed.rows_read,
            rows_stored=len(passing),
            failed_checks=failed_checks,
            timestamp_problem=parsed.timestamp_problem,
        ),
    )
    progress.report("ingest", Path(path).name, report.rows_read)
    return asdict(report)
