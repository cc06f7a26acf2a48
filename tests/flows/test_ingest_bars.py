"""The ingestion flow: directories expanded, every file's outcome reported, failed files failing the run once.

Most tests run the flow's body in process (``ingest_bars.fn``); one runs it for real under the session's
Prefect harness, to check that the failure comes back from a flow run with its summary intact.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from models import repositories, run_summaries
from models.engine import session_scope
from models.tables import RunSummary
from neuraltrade.errors import IngestionFailed
from tests.conftest import DAILY_DATA

GOOD_ROWS = "".join(DAILY_DATA.joinpath("NVDA.csv").read_text().splitlines(keepends=True)[:41])
HEADER = GOOD_ROWS.splitlines()[0]


@pytest.fixture
def bar_folder(tmp_path: Path) -> Path:
    """A folder of bar files: two good ones (one in a sub-folder), a header-only one, one whose every row
    fails for its day-first dates, and files that are no bar files or hidden."""
    folder = tmp_path / "bars"
    (folder / "more").mkdir(parents=True)
    (folder / ".cache").mkdir()
    (folder / "AAA.csv").write_text(GOOD_ROWS)
    (folder / "more" / "BBB.csv").write_text(GOOD_ROWS.replace(",", ";"))
    (folder / "EMPTY.csv").write_text(HEADER + "\n")
    (folder / "DAYS.csv").write_text(f"{HEADER}\n13/01/2020,1,2,0.5,1.5,0.75,100\n14/01/2020,1,2,0.5,1.5,0.75,100\n")
    (folder / "README.md").write_text("not bars")
    (folder / ".cache" / "CCC.csv").write_text(GOOD_ROWS)
    return folder


def _runs(database_url: str) -> list[RunSummary]:
    with session_scope(database_url) as session:
        return list(session.scalars(select(RunSummary)).all())


def test_a_folder_is_ingested_file_by_file_and_failed_files_fail_the_run_once_at_the_end(
    database_url: str, bar_folder: Path
) -> None:
    from flows.ingest_bars import ingest_bars

    with pytest.raises(IngestionFailed) as raised:
        ingest_bars.fn(paths=[str(bar_folder)], database_url=database_url)

    error = raised.value
    days, empty = str(bar_folder / "DAYS.csv"), str(bar_folder / "EMPTY.csv")
    no_timestamp = (
        "no timestamp could be read (line 2: '13/01/2020'); give the format with --date-format, e.g. %d/%m/%Y"
    )
    assert str(error) == f"2 of 4 files failed: {days}: {no_timestamp}; {empty}: holds a header but no data row"
    assert "\n" not in str(error)
    assert error.failures == {days: no_timestamp, empty: "holds a header but no data row"}
    summary: dict[str, Any] = error.summary
    assert [
        (Path(outcome["path"]).relative_to(bar_folder).as_posix(), outcome["failure"])
        for outcome in summary["outcomes"]
    ] == [
        ("AAA.csv", None),
        ("DAYS.csv", no_timestamp),
        ("EMPTY.csv", "holds a header but no data row"),
        ("more/BBB.csv", None),
    ]
    assert summary["failed_files"] == error.failures
    assert summary["rejected_files"] == {}
    assert [report["rows_stored"] for report in summary["files"]] == [40, 0, 0, 40]
    assert (summary["rows_read"], summary["rows_stored"], summary["rows_quarantined"]) == (82, 80, 2)
    with session_scope(database_url) as session:
        counts = run_summaries.table_counts(session)
        assert repositories.list_symbols(session) == ["AAA", "BBB"]
    # The good files are stored and the failed file's rows kept in quarantine: nothing is lost.
    assert (counts["bars"], counts["quarantined_rows"]) == (80, 2)
    [run] = _runs(database_url)
    assert (run.kind, run.status, run.details["failed_files"]) == ("ingest_bars", "failed", error.failures)


def test_a_run_whose_files_all_succeed_returns_its_summary(database_url: str, bar_folder: Path) -> None:
    from flows.ingest_bars import ingest_bars

    summary = ingest_bars.fn(paths=[str(bar_folder / "AAA.csv"), str(bar_folder / "more")], database_url=database_url)

    assert [outcome["failure"] for outcome in summary["outcomes"]] == [None, None]
    assert (summary["failed_files"], summary["rejected_files"]) == ({}, {})
    assert summary["rows_stored"] == 80
    assert [run.status for run in _runs(database_url)] == ["completed"]


def test_the_date_format_and_adjusted_prices_reach_every_file(database_url: str, bar_folder: Path) -> None:
    from flows.ingest_bars import ingest_bars

    summary = ingest_bars.fn(
        paths=[str(bar_folder / "DAYS.csv")], database_url=database_url, date_format="%d/%m/%Y", adjusted=True
    )

    assert (summary["rows_stored"], summary["failed_files"]) == (2, {})
    with session_scope(database_url) as session:
        frame, _ = repositories.load_bars(session, "DAYS")
    assert frame["close"].tolist() == [0.75, 0.75]  # Adj Close / Close = 0.5 scales every price
    assert [stamp.day for stamp in frame["timestamp"]] == [13, 14]


def test_a_file_refused_whole_and_a_folder_without_bar_files_fail_as_files_do(
    database_url: str, bar_folder: Path, tmp_path: Path
) -> None:
    from flows.ingest_bars import ingest_bars

    unknown = tmp_path / "BROKEN.csv"
    unknown.write_text("when,price\n2024-01-02,10\n")
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    paths = [str(nothing), str(bar_folder / "AAA.csv"), str(unknown)]

    with pytest.raises(IngestionFailed) as raised:
        ingest_bars.fn(paths=paths, database_url=database_url)

    summary: dict[str, Any] = raised.value.summary
    assert [outcome["path"] for outcome in summary["outcomes"]] == paths
    assert [outcome["report"] is None for outcome in summary["outcomes"]] == [True, False, True]
    assert summary["failed_files"][str(nothing)] == "is a directory holding no bar file (.csv, .txt, .parquet)"
    assert summary["failed_files"][str(unknown)].startswith("header when, price matches no known layout")
    assert list(summary["rejected_files"]) == [str(nothing), str(unknown)]
    assert str(raised.value).startswith(f"2 of 3 files failed: {nothing}: is a directory holding no bar file")


def test_one_failed_file_reads_as_its_own_reason(database_url: str, tmp_path: Path) -> None:
    from flows.ingest_bars import ingest_bars

    unknown = tmp_path / "BROKEN.csv"
    unknown.write_text("when,price\n2024-01-02,10\n")

    with pytest.raises(IngestionFailed) as raised:
        ingest_bars.fn(paths=[str(unknown)], database_url=database_url)

    assert str(raised.value).startswith(f"{unknown}: header when, price matches no known layout; expected Date")


def test_the_failure_survives_pickling_with_its_summary() -> None:
    error = IngestionFailed({"a.csv": "why"}, {"outcomes": [{"path": "a.csv", "failure": "why", "report": None}]})

    copy = pickle.loads(pickle.dumps(error))

    assert (str(copy), copy.failures, copy.summary) == (str(error), error.failures, error.summary)


def test_a_flow_run_raises_the_failure_with_its_summary_intact(
    prefect_harness: None, database_url: str, bar_folder: Path
) -> None:
    from flows.ingest_bars import ingest_bars

    with pytest.raises(IngestionFailed) as raised:
        ingest_bars(paths=[str(bar_folder)], database_url=database_url)

    summary: dict[str, Any] = raised.value.summary
    assert sorted(raised.value.failures) == [str(bar_folder / "DAYS.csv"), str(bar_folder / "EMPTY.csv")]
    assert [outcome["failure"] is None for outcome in summary["outcomes"]] == [True, False, False, True]
    assert summary["rows_stored"] == 80

    state = ingest_bars(paths=[str(bar_folder)], database_url=database_url, return_state=True)

    again = state.result(raise_on_failure=False)
    assert isinstance(again, IngestionFailed)
    assert again.failures == raised.value.failures
    assert again.summary["rows_read"] == 82
