"""Specification of file ingestion (`tasks.ingest.ingest_file`), run through ``.fn`` on real SQLite files."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models import repositories, run_summaries
from models.engine import dispose_engines, session_scope
from models.migrations import upgrade_database
from models.tables import BarRecord, QuarantinedRow
from neuraltrade.errors import FileRejected
from tasks.ingest import ingest_file
from tests.conftest import DAILY_DATA, INTRADAY_FILE

EXAMPLE_NUMBERS = itertools.count()
DAILY_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


def shared_files() -> list[Path]:
    files = sorted([*DAILY_DATA.glob("*.csv"), INTRADAY_FILE])
    missing = [path for path in files if not path.is_file()]
    assert len(files) == 4 and not missing, f"the test data is incomplete: missing {missing}"
    return files


def bars_table(url: str) -> list[tuple[Any, ...]]:
    with session_scope(url) as session:
        return [tuple(row) for row in session.execute(select(BarRecord.__table__).order_by(BarRecord.id))]


def quarantine_table(url: str) -> list[tuple[Any, ...]]:
    with session_scope(url) as session:
        table = QuarantinedRow.__table__
        return [tuple(row) for row in session.execute(select(table).order_by(table.c.id))]


def counts(url: str) -> dict[str, int]:
    with session_scope(url) as session:
        return run_summaries.table_counts(session)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the shared sample files ------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedIngest:
    """Every shared file ingested into one database, then all of them once more."""

    url: str
    first: dict[str, dict[str, Any]]
    second: dict[str, dict[str, Any]]
    bars_after_first: list[tuple[Any, ...]]
    bars_after_second: list[tuple[Any, ...]]
    quarantine_after_first: list[tuple[Any, ...]]
    quarantine_after_second: list[tuple[Any, ...]]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedIngest]:
    files = shared_files()
    url = f"sqlite:///{tmp_path_factory.mktemp('shared')}/shared.db"
    upgrade_database(url)
    first = {path.name: ingest_file.fn(url, str(path)) for path in files}
    bars, quarantine = bars_table(url), quarantine_table(url)
    second = {path.name: ingest_file.fn(url, str(path)) for path in files}
    yield SharedIngest(url, first, second, bars, bars_table(url), quarantine, quarantine_table(url))
    dispose_engines()


def test_the_test_data_holds_daily_files_and_the_intraday_file_without_time_in_its_header() -> None:
    names = {path.name for path in shared_files()}
    assert {"NVDA.csv", "ORCL.csv", "YHOO.csv", "INDEX_2006-01-02_1min.csv"} <= names
    header = INTRADAY_FILE.read_text().splitlines()[0].lower().split(",")
    assert "time" not in header


@pytest.mark.parametrize("name", [path.name for path in shared_files()])
def test_every_row_read_from_a_shared_file_is_stored_or_quarantined(shared: SharedIngest, name: str) -> None:
    report = shared.first[name]
    [path] = [path for path in shared_files() if path.name == name]
    data_lines = [line for line in path.read_text().splitlines()[1:] if line.strip()]

    assert report["rows_read"] == len(data_lines)
    assert report["rows_read"] == report["rows_stored"] + report["rows_quarantined"]
    assert report["rows_changed"] == report["rows_stored"]  # a fresh symbol: every stored row is new
    assert sum(report["failed_checks"].values()) >= report["rows_quarantined"]


def test_the_database_holds_what_the_reports_say(shared: SharedIngest) -> None:
    reports = shared.first.values()
    # Each file holds its own symbol, so no two files share a (symbol, timestamp) key.
    symbols = [symbol for report in reports for symbol in report["symbols"]]
    assert len(symbols) == len(set(symbols))

    assert counts(shared.url)["bars"] == len(shared.bars_after_first) == sum(r["rows_stored"] for r in reports)
    assert len(shared.quarantine_after_first) == sum(r["rows_quarantined"] for r in reports)
    with session_scope(shared.url) as session:
        assert repositories.list_symbols(session) == sorted(symbols)


def test_the_intraday_file_is_read_with_its_time_column(shared: SharedIngest) -> None:
    report = shared.first["INDEX_2006-01-02_1min.csv"]
    assert (report["layout"], report["symbols"]) == ("intraday", ["INDEX"])

    with session_scope(shared.url) as session:
        frame, _ = repositories.load_bars(session, "INDEX")
    assert frame["timestamp"].iloc[0] == datetime(2006, 1, 2, 9, 1, tzinfo=UTC)
    assert frame["timestamp"].is_unique
    first_values = frame.iloc[0][["open", "high", "low", "close", "volume"]].tolist()
    assert first_values == [3602.0, 3603.0, 3597.0, 3599.0, 5699.0]  # line 2 of the file


def test_daily_files_take_their_symbol_from_the_file_name(shared: SharedIngest) -> None:
    for name in ("NVDA.csv", "ORCL.csv", "YHOO.csv"):
        assert (shared.first[name]["layout"], shared.first[name]["symbols"]) == ("daily", [name.removesuffix(".csv")])


def test_reingesting_the_shared_files_changes_nothing(shared: SharedIngest) -> None:
    assert shared.bars_after_second == shared.bars_after_first
    assert shared.quarantine_after_second == shared.quarantine_after_first
    for name, report in shared.second.items():
        assert report["rows_changed"] == 0, name
        assert {**report, "rows_changed": shared.first[name]["rows_changed"]} == shared.first[name]


# -- files with bad rows ----------------------------------------------------------------------------

BAD_ROWS_FILE = [
    DAILY_HEADER,
    "2024-01-02,10.0,11.0,9.0,10.5,10.5,1000",  # line 2, good
    "2024-01-03,-10.0,11.0,9.0,10.5,10.5,1000",  # line 3, negative price
    "2024-01-04,10.0,9.0,11.0,10.0,10.0,1000",  # line 4, high < low
    "2024-01-05,10.0,11.0,9.0,10.5,10.5,",  # line 5, missing volume
    "2024-13-45,10.0,11.0,9.0,10.5,10.5,1000",  # line 6, unparsable date
    "2024-01-08,10.0,11.0,9.0",  # line 7, wrong field count
    "",  # line 8, blank: not a row
    "2024-01-09,10.0,11.0,9.0,10.5,10.5,1000",  # line 9, first of a duplicate timestamp
    "2024-01-09,10.1,11.0,9.0,10.5,10.5,1000",  # line 10, the duplicate
    "2024-01-10,10.0,11.0,9.0,10.5,10.5,1000",  # line 11, good
]
# Line -> a check it must fail. A duplicated key is ambiguous, so both of its rows are quarantined
# (tasks.quality flags every row of a duplicated (symbol, timestamp)).
EXPECTED_FAILURES = {
    3: "positive:open",
    4: "open_le_high",
    5: "not_null:volume",
    6: "not_null:timestamp",
    7: "field_count:expected_7_was_4",
    9: "unique_symbol_timestamp",
    10: "unique_symbol_timestamp",
}


def test_a_file_with_bad_rows_stores_the_good_ones_and_quarantines_each_bad_one(
    database_url: str, tmp_path: Path
) -> None:
    path = write(tmp_path / "ACME.csv", BAD_ROWS_FILE)

    report = ingest_file.fn(database_url, str(path))

    assert (report["rows_read"], report["rows_stored"], report["rows_quarantined"]) == (9, 2, 7)
    with session_scope(database_url) as session:
        frame, _ = repositories.load_bars(session, "ACME")
        quarantined = session.scalars(select(QuarantinedRow).order_by(QuarantinedRow.line)).all()
    assert frame["timestamp"].tolist() == [datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 10, tzinfo=UTC)]
    assert [row.line for row in quarantined] == sorted(EXPECTED_FAILURES)
    for row in quarantined:
        assert EXPECTED_FAILURES[row.line] in row.failed_checks, row.line
        assert row.raw_values == next(csv.reader([BAD_ROWS_FILE[row.line - 1]])), row.line
        assert row.source == str(path.resolve())
    assert quarantined[0].failed_checks == ["low_le_open", "positive:open"]
    assert quarantined[5].failed_checks == ["unique_symbol_timestamp"]
    assert report["failed_checks"]["unique_symbol_timestamp"] == 2


def test_reingesting_a_file_with_bad_rows_changes_nothing(database_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "ACME.csv", BAD_ROWS_FILE)
    first = ingest_file.fn(database_url, str(path))
    bars, quarantine = bars_table(database_url), quarantine_table(database_url)

    second = ingest_file.fn(database_url, str(path))

    assert second == {**first, "rows_changed": 0}
    assert bars_table(database_url) == bars
    assert quarantine_table(database_url) == quarantine


def test_a_header_only_file_reads_no_rows_and_fails_saying_so(database_url: str, tmp_path: Path) -> None:
    report = ingest_file.fn(database_url, str(write(tmp_path / "ACME.csv", [DAILY_HEADER])))

    assert (report["rows_read"], report["rows_stored"], report["rows_quarantined"]) == (0, 0, 0)
    assert report["failure"] == "holds a header but no data row"
    assert set(counts(database_url).values()) == {0}


def test_a_file_whose_rows_all_fail_their_checks_fails_and_keeps_every_row_in_quarantine(
    database_url: str, tmp_path: Path
) -> None:
    lines = [DAILY_HEADER, BAD_ROWS_FILE[2], BAD_ROWS_FILE[3], BAD_ROWS_FILE[6]]

    report = ingest_file.fn(database_url, str(write(tmp_path / "ACME.csv", lines)))

    assert (report["rows_read"], report["rows_stored"], report["rows_quarantined"]) == (3, 0, 3)
    assert report["failure"] == (
        "every row was quarantined (3 rows; failing close_le_high x1, field_count:expected_7_was_4 x1, "
        "low_le_close x1, low_le_open x2, open_le_high x1, positive:open x1)"
    )
    assert counts(database_url)["quarantined_rows"] == 3


def test_a_good_file_has_no_failure(database_url: str, tmp_path: Path) -> None:
    report = ingest_file.fn(database_url, str(write(tmp_path / "ACME.csv", BAD_ROWS_FILE)))

    assert report["failure"] is None


DAY_FIRST_FILE = [
    "Date;Open;High;Low;Close;Adj Close;Volume",
    '13/01/2020;"1,234.50";"1,300.00";"1,200.25";"1,250.00";625;"1,000,000"',
    '14/01/2020;"1,250.00";"1,310.00";"1,240.00";"1,300.00";650;"2,000,000"',
]


def test_day_first_dates_without_a_date_format_fail_the_file_with_a_suggestion_and_quarantine_every_row(
    database_url: str, tmp_path: Path
) -> None:
    report = ingest_file.fn(database_url, str(write(tmp_path / "ACME.csv", DAY_FIRST_FILE)))

    assert (report["rows_read"], report["rows_stored"], report["rows_quarantined"]) == (2, 0, 2)
    assert report["failure"] == (
        "no timestamp could be read (line 2: '13/01/2020'); give the format with --date-format, e.g. %d/%m/%Y"
    )
    assert report["failed_checks"] == {"not_null:timestamp": 2}
    with session_scope(database_url) as session:
        quarantined = session.scalars(select(QuarantinedRow).order_by(QuarantinedRow.line)).all()
    assert [row.raw_values[1] for row in quarantined] == ["1,234.50", "1,250.00"]  # split at ";" only


def test_day_first_dates_with_their_date_format_and_quoted_thousands_are_stored(
    database_url: str, tmp_path: Path
) -> None:
    path = write(tmp_path / "ACME.csv", DAY_FIRST_FILE)

    report = ingest_file.fn(database_url, str(path), date_format="%d/%m/%Y")

    assert (report["rows_stored"], report["rows_quarantined"], report["failure"]) == (2, 0, None)
    with session_scope(database_url) as session:
        frame, _ = repositories.load_bars(session, "ACME")
    assert frame["timestamp"].tolist() == [datetime(2020, 1, 13, tzinfo=UTC), datetime(2020, 1, 14, tzinfo=UTC)]
    assert frame.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [
        1234.5,
        1300.0,
        1200.25,
        1250.0,
        1_000_000.0,
    ]


def test_adjusted_prices_are_stored_scaled_by_adj_close_over_close(database_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "ACME.csv", DAY_FIRST_FILE)

    ingest_file.fn(database_url, str(path), date_format="%d/%m/%Y", adjusted=True)

    with session_scope(database_url) as session:
        frame, _ = repositories.load_bars(session, "ACME")
    assert frame.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [
        617.25,
        650.0,
        600.125,
        625.0,
        1_000_000.0,
    ]


def test_pandas_to_csv_output_is_stored(database_url: str, tmp_path: Path) -> None:
    frame = pd.read_csv(DAILY_DATA / "NVDA.csv", index_col="Date", parse_dates=True, nrows=50)
    path = tmp_path / "NVDA.csv"
    frame.drop(columns="Adj Close").to_csv(path, sep="|")

    report = ingest_file.fn(database_url, str(path))

    assert (report["layout"], report["rows_stored"], report["failure"]) == ("daily", 50, None)


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        ("ACME.csv", ["When,Price,Size", "2024-01-02,10.0,5"]),
        ("ACME.csv", []),
        ("ACME.json", [DAILY_HEADER, "2024-01-02,10.0,11.0,9.0,10.5,10.5,1000"]),
        ("bad symbol!.csv", [DAILY_HEADER, "2024-01-02,10.0,11.0,9.0,10.5,10.5,1000"]),
    ],
    ids=["unknown-header", "empty", "unknown-type", "invalid-symbol-from-name"],
)
def test_a_file_that_cannot_be_read_is_rejected_and_writes_nothing(
    database_url: str, tmp_path: Path, name: str, lines: list[str]
) -> None:
    path = tmp_path / name
    path.write_text("\n".join(lines), encoding="utf-8")

    with pytest.raises(FileRejected) as raised:
        ingest_file.fn(database_url, str(path))

    assert str(path) in str(raised.value)
    assert set(counts(database_url).values()) == {0}


def test_a_missing_file_is_rejected(database_url: str, tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match="cannot be read"):
        ingest_file.fn(database_url, str(tmp_path / "NOPE.csv"))


def test_a_rejected_file_leaves_stored_data_untouched(database_url: str, tmp_path: Path) -> None:
    ingest_file.fn(database_url, str(write(tmp_path / "ACME.csv", BAD_ROWS_FILE)))
    bars, quarantine = bars_table(database_url), quarantine_table(database_url)
    unknown = write(tmp_path / "ACME_2.csv", ["When,Price,Size", "2024-01-02,10.0,5"])

    with pytest.raises(FileRejected, match="matches no known layout"):
        ingest_file.fn(database_url, str(unknown))

    assert bars_table(database_url) == bars
    assert quarantine_table(database_url) == quarantine


def test_a_corrected_file_updates_the_bars_it_changes(database_url: str, tmp_path: Path) -> None:
    original = BAD_ROWS_FILE[:3]
    ingest_file.fn(database_url, str(write(tmp_path / "ACME.csv", original)))
    corrected = [*original[:2], "2024-01-03,10.0,11.0,9.0,10.5,10.5,1000", "2024-01-04,10.0,11.0,9.0,10.25,10.25,7"]

    report = ingest_file.fn(database_url, str(write(tmp_path / "ACME.csv", corrected)))

    assert (report["rows_stored"], report["rows_changed"], report["rows_quarantined"]) == (3, 2, 0)
    assert counts(database_url)["bars"] == 3


def test_a_stray_quote_does_not_swallow_the_lines_after_it(database_url: str, tmp_path: Path) -> None:
    lines = [
        DAILY_HEADER,
        "2024-01-02,10.0,11.0,9.0,10.5,10.5,1000",
        '2024-01-03,"10.0,11.0,9.0,10.5,10.5,1000',  # line 3: an opening quote that is never closed
        "2024-01-04,10.0,11.0,9.0,10.5,10.5,1000",
        "2024-01-05,10.0,11.0,9.0,10.5,10.5,1000",
        "2024-01-08,10.0,11.0,9.0,10.5,10.5,1000",
    ]

    report = ingest_file.fn(database_url, str(write(tmp_path / "ACME.csv", lines)))

    assert (report["rows_read"], report["rows_stored"], report["rows_quarantined"]) == (5, 4, 1)
    with session_scope(database_url) as session:
        assert session.scalars(select(QuarantinedRow.line)).all() == [3]


@pytest.mark.parametrize(
    "text",
    [
        "{header}\n{a}\n\n{b}\n",
        "{header}\n{a}\n{b}\n\n\n",
        "{header}\r\n{a}\r\n\r\n{b}\r\n",
        "{header}\n{a}\n   \n{b}",
    ],
    ids=["blank-line-between-rows", "trailing-blank-lines", "crlf-blank-line", "white-space-line"],
)
def test_blank_lines_are_not_rows(database_url: str, tmp_path: Path, text: str) -> None:
    path = tmp_path / "ACME.csv"
    rows = {"a": "2024-01-02,10.0,11.0,9.0,10.5,10.5,1000", "b": "2024-01-03,10.0,11.0,9.0,10.5,10.5,1000"}
    path.write_bytes(text.format(header=DAILY_HEADER, **rows).encode("utf-8"))

    report = ingest_file.fn(database_url, str(path))

    assert (report["rows_read"], report["rows_stored"], report["rows_quarantined"]) == (2, 2, 0)
    assert counts(database_url)["quarantined_rows"] == 0


def test_undecodable_bytes_quarantine_only_their_row(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "ACME.csv"
    path.write_bytes(
        DAILY_HEADER.encode()
        + b"\n2024-01-02,10.0,11.0,9.0,10.5,10.5,1000"
        + b"\n2024-01-03,10.0\xff,11.0,9.0,10.5,10.5,1000"
        + b"\n2024-01-04,10.0,11.0,9.0,10.5,10.5,1000\n"
    )

    report = ingest_file.fn(database_url, str(path))

    assert (report["rows_read"], report["rows_stored"], report["rows_quarantined"]) == (3, 2, 1)
    with session_scope(database_url) as session:
        [row] = session.scalars(select(QuarantinedRow)).all()
    assert (row.line, row.failed_checks) == (3, ["not_null:open"])
    assert row.raw_values[1] == "10.0\\xff"  # the bad byte stays visible


# -- a property over malformed files ----------------------------------------------------------------

numbers = st.one_of(
    st.floats(min_value=0.01, max_value=1e6, allow_nan=False).map(repr),
    st.sampled_from(
        ["-1", "0", "", "nan", "inf", "-inf", "1e400", "abc", " 12 ", "1,5", '"7"', "0x10", '"1,234.5"', "1 234"]
    ),
)
dates = st.one_of(
    st.dates(min_value=datetime(1990, 1, 1).date(), max_value=datetime(1990, 3, 1).date()).map(str),
    st.dates(min_value=datetime(1990, 1, 1).date(), max_value=datetime(1990, 3, 1).date()).map(
        lambda day: day.strftime("%d/%m/%Y")
    ),
    st.sampled_from(["", "2024-13-45", "yesterday", "2024-02-30", "20240102", "2024-01-02T10:00:00+05:00"]),
)
good_row = st.tuples(dates, numbers, numbers, numbers, numbers, numbers, numbers).map(",".join)
odd_text = st.text(alphabet=st.sampled_from(list("ab1-.:,\" \t;|\\'é€\x00")), max_size=40)
#: Headers of the same seven fields in other spellings: every one reads the rows alike.
HEADERS = [
    DAILY_HEADER,
    DAILY_HEADER.upper(),
    "date,OPEN,High,low,CLOSE,adj_close,Volume",
    ",Open,High,Low,Close,AdjClose,Volume",
]
row_line = st.one_of(
    good_row,
    good_row,
    st.lists(numbers, min_size=0, max_size=10).map(",".join),
    odd_text,
    st.just(""),
)


@settings(
    max_examples=25,
    deadline=None,
    # Each example makes its own database file below, so the function-scoped folder is not shared state.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    # No shrinking: every example pays ~0.5 s of Great Expectations validation, so shrinking a failure
    # takes minutes; a failing file of at most 30 short rows is readable as it is.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    rows=st.lists(row_line, max_size=30),
    line_ending=st.sampled_from(["\n", "\r\n"]),
    header=st.sampled_from(HEADERS),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    date_format=st.sampled_from([None, "%d/%m/%Y"]),
    adjusted=st.booleans(),
)
def test_ingesting_any_file_loses_no_row(
    tmp_path: Path,
    rows: list[str],
    line_ending: str,
    header: str,
    delimiter: str,
    date_format: str | None,
    adjusted: bool,
) -> None:
    folder = tmp_path / f"example-{next(EXAMPLE_NUMBERS)}"
    folder.mkdir()
    url = f"sqlite:///{folder}/t.db"
    upgrade_database(url)
    path = folder / "ACME.csv"
    # Rows are written with commas; another delimiter takes their place (quoted commas too: a damaged quote).
    lines = [line.replace(",", delimiter) for line in [header, *rows]]
    path.write_bytes(line_ending.join(lines).encode("utf-8"))
    data_lines = {number for number, line in enumerate(lines, start=1) if number > 1 and line.strip()}
    try:
        try:
            report = ingest_file.fn(url, str(path), date_format=date_format, adjusted=adjusted)
        except FileRejected:
            assert set(counts(url).values()) == {0}
            return

        assert report["rows_read"] == len(data_lines)
        assert report["rows_read"] == report["rows_stored"] + report["rows_quarantined"]
        assert (report["failure"] is None) == (report["rows_stored"] > 0)
        with session_scope(url) as session:
            quarantined = session.scalars(select(QuarantinedRow)).all()
            stored = run_summaries.table_counts(session)["bars"]
        assert stored == report["rows_stored"]
        lines_quarantined = [row.line for row in quarantined]
        assert len(lines_quarantined) == len(set(lines_quarantined)) == report["rows_quarantined"]
        assert set(lines_quarantined) <= data_lines
        for row in quarantined:
            assert row.failed_checks, row.line
    finally:
        dispose_engines()
