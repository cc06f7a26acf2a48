"""Behaviour of the bar file reader (`neuraltrade.market.ingest.read_bars`): layouts, time zones, and losing no line.

A line is what ends in LF (or CRLF); a blank line holds nothing but white space.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from neuraltrade.errors import ConfigError, FileRejected
from neuraltrade.market.bar_formats import DELIMITERS, sniff_delimiter, suggest_date_format
from neuraltrade.market.bars import BAR_COLUMNS, TIMESTAMP_DTYPE
from neuraltrade.market.ingest import ParsedFile, bar_files, expand_bar_paths, file_failure, read_bars, symbol_from_path
from neuraltrade.market.synthetic import MarketConfig, generate_market, write_market_csv
from tests.conftest import DAILY_DATA, INTRADAY_FILE

SHARED_FILES = sorted([*DAILY_DATA.glob("*.csv"), INTRADAY_FILE])
NVDA = DAILY_DATA / "NVDA.csv"
INTRADAY = INTRADAY_FILE
YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
LONG_HEADER = "timestamp,symbol,open,high,low,close,volume"


def non_blank_line_numbers(path: Path) -> list[int]:
    """1-based numbers of the lines after the first non-blank one (the header) that hold more than blanks."""
    lines = path.read_bytes().split(b"\n")
    numbered = [n for n, line in enumerate(lines, 1) if line.decode("utf-8", "backslashreplace").strip()]
    return numbered[1:]


def accounted_lines(parsed: ParsedFile) -> list[int]:
    return sorted([*parsed.frame["line"].tolist(), *(row.line for row in parsed.rejected)])


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def utc(*parts: int) -> pd.Timestamp:
    return pd.Timestamp(datetime(*parts, tzinfo=UTC))  # type: ignore[misc]


# --- the shared data files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda path: path.name)
def test_every_shared_file_reads_each_non_blank_line_as_exactly_one_row(path: Path) -> None:
    parsed = read_bars(path)
    expected = non_blank_line_numbers(path)
    assert parsed.rows_read == len(expected) > 1_000
    assert len(parsed.frame) + len(parsed.rejected) == parsed.rows_read
    assert accounted_lines(parsed) == expected
    assert parsed.rejected == []
    assert list(parsed.frame.columns) == [*BAR_COLUMNS, "line"]
    assert str(parsed.frame["timestamp"].dtype) == TIMESTAMP_DTYPE
    assert parsed.frame[["timestamp", "open", "high", "low", "close", "volume"]].notna().all().all()
    assert parsed.frame["spread"].isna().all()  # no file carries quotes
    assert parsed.source == str(path)
    assert parsed.source_digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_intraday_file_whose_header_lacks_time_is_read_as_intraday_with_date_and_time_combined() -> None:
    parsed = read_bars(INTRADAY)
    frame = parsed.frame
    assert parsed.layout == "intraday"
    assert set(frame["symbol"]) == {"INDEX"}
    first, last = frame.iloc[0], frame.iloc[-1]
    assert first["timestamp"] == utc(2006, 1, 2, 9, 1)
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
        3602.0,
        3603.0,
        3597.0,
        3599.0,
        5699.0,
    )
    assert first["line"] == 2
    assert last["timestamp"] == utc(2006, 2, 27, 22, 0)
    assert frame["timestamp"].is_unique and frame["timestamp"].is_monotonic_increasing
    assert frame["timestamp"].dt.normalize().nunique() < frame["timestamp"].nunique() / 100


@pytest.mark.parametrize("symbol", ["NVDA", "ORCL", "YHOO"])
def test_a_yahoo_daily_file_takes_its_symbol_from_the_file_name_and_reads_close_not_adj_close(
    symbol: str,
) -> None:
    path = DAILY_DATA / f"{symbol}.csv"
    parsed = read_bars(path)
    assert parsed.layout == "daily"
    assert set(parsed.frame["symbol"]) == {symbol}
    fields = path.read_text().splitlines()[1].split(",")
    first = parsed.frame.iloc[0]
    assert first["timestamp"] == pd.Timestamp(fields[0], tz="UTC")
    assert [first[name] for name in ("open", "high", "low", "close")] == [float(v) for v in fields[1:5]]
    assert first["volume"] == float(fields[6])
    assert (parsed.frame["timestamp"] == parsed.frame["timestamp"].dt.normalize()).all()  # midnight UTC


def test_nvda_starts_and_ends_where_the_file_does() -> None:
    frame = read_bars(NVDA).frame
    assert frame["timestamp"].iloc[0] == utc(1999, 1, 22)
    assert frame["close"].iloc[0] == 1.640625  # Close, not Adj Close 1.518424
    assert frame["timestamp"].iloc[-1] == utc(2014, 12, 31)


@pytest.mark.parametrize(("path", "symbol"), [(NVDA, "NVDA.O"), (INTRADAY, "ES"), (NVDA, "^GSPC")])
def test_a_given_symbol_overrides_the_file_name(path: Path, symbol: str) -> None:
    assert set(read_bars(path, symbol=symbol).frame["symbol"]) == {symbol}


@pytest.mark.parametrize("name", ["NVDA.csv", "nvda_daily_2020.csv", "BRK.B.CSV", "Es_2006.txt"])
def test_the_symbol_of_a_file_is_its_stem_up_to_the_first_underscore_upper_cased(name: str) -> None:
    expected = {"NVDA.csv": "NVDA", "nvda_daily_2020.csv": "NVDA", "BRK.B.CSV": "BRK.B", "Es_2006.txt": "ES"}
    assert symbol_from_path(Path(name)) == expected[name]


def test_a_file_name_that_gives_no_valid_symbol_is_refused_unless_a_symbol_is_given(tmp_path: Path) -> None:
    path = write(tmp_path / "my bars.csv", f"{YAHOO_HEADER}\n2020-01-02,1,2,0.5,1.5,1.5,100\n")
    with pytest.raises(FileRejected, match=re.escape("'MY BARS'")) as raised:
        read_bars(path)
    assert str(path) in str(raised.value)
    assert read_bars(path, symbol="MINE").frame["symbol"].tolist() == ["MINE"]


@pytest.mark.parametrize("symbol", ["", "A B", "x;drop", "A" * 33, "NVDA\n"])
def test_an_invalid_given_symbol_is_refused_naming_it(symbol: str) -> None:
    with pytest.raises(FileRejected) as raised:
        read_bars(NVDA, symbol=symbol)
    assert repr(symbol) in str(raised.value) and str(NVDA) in str(raised.value)


# --- layouts and time zones ---------------------------------------------------------------------------------


def test_a_long_file_carries_a_symbol_per_row_and_converts_every_offset_to_utc(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bars.csv",
        f"{LONG_HEADER}\n"
        "2024-01-02T09:30:00.000001-05:00,AAA,1,2,0.5,1.5,100\n"
        "2024-01-02T15:30:00+01:00,BBB,1,2,0.5,1.5,100\n"
        "2024-07-02T14:30:00.5Z,AAA,1,2,0.5,1.5,100\n"
        "2024-07-02T20:00:00+05:30,CCC,1,2,0.5,1.5,100\n",
    )
    parsed = read_bars(path, timezone="America/New_York")  # the zone applies only to times without one
    assert parsed.layout == "long"
    assert parsed.frame["symbol"].tolist() == ["AAA", "BBB", "AAA", "CCC"]
    assert parsed.frame["timestamp"].tolist() == [
        utc(2024, 1, 2, 14, 30, 0, 1),
        utc(2024, 1, 2, 14, 30),
        utc(2024, 7, 2, 14, 30, 0, 500_000),
        utc(2024, 7, 2, 14, 30),
    ]


def test_a_long_file_with_one_offset_throughout_is_converted_to_utc(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bars.csv",
        f"{LONG_HEADER}\n2024-01-02T09:30:00+09:00,AAA,1,2,0.5,1.5,100\n2024-01-03T09:30:00+09:00,AAA,1,2,0.5,1.5,100\n",
    )
    assert read_bars(path).frame["timestamp"].tolist() == [utc(2024, 1, 2, 0, 30), utc(2024, 1, 3, 0, 30)]


def test_naive_times_are_read_in_the_given_zone_across_daylight_saving(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bars.csv",
        f"{LONG_HEADER}\n2024-01-02 09:30:00,AAA,1,2,0.5,1.5,100\n2024-07-02 09:30:00,AAA,1,2,0.5,1.5,100\n",
    )
    in_new_york = read_bars(path, timezone="America/New_York").frame["timestamp"].tolist()
    assert in_new_york == [utc(2024, 1, 2, 14, 30), utc(2024, 7, 2, 13, 30)]
    assert read_bars(path).frame["timestamp"].tolist() == [utc(2024, 1, 2, 9, 30), utc(2024, 7, 2, 9, 30)]


def test_a_daily_file_read_in_another_zone_puts_midnight_in_that_zone(tmp_path: Path) -> None:
    path = write(tmp_path / "TKY.csv", f"{YAHOO_HEADER}\n2024-03-01,1,2,0.5,1.5,1.5,100\n")
    assert read_bars(path, timezone="Asia/Tokyo").frame["timestamp"].tolist() == [utc(2024, 2, 29, 15)]


def test_an_unknown_time_zone_is_refused_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path / "bars.csv", f"{LONG_HEADER}\n2024-01-02 09:30:00,AAA,1,2,0.5,1.5,100\n")
    with pytest.raises(FileRejected, match="'Mars/Olympus'"):
        read_bars(path, timezone="Mars/Olympus")


def test_long_columns_may_come_in_any_order_and_carry_a_spread(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bars.csv",
        "Volume,Close,SPREAD,low,High,open,Symbol,TimeStamp\n100,1.5,0.002,0.5,2,1,AAA,2024-01-02T00:00:00Z\n",
    )
    row = read_bars(path).frame.iloc[0]
    assert (row["symbol"], row["timestamp"]) == ("AAA", utc(2024, 1, 2))
    assert [row[name] for name in ("open", "high", "low", "close", "volume", "spread")] == [
        1.0,
        2.0,
        0.5,
        1.5,
        100.0,
        0.002,
    ]


def test_a_header_is_matched_ignoring_case_surrounding_blanks_inner_spaces_and_a_byte_order_mark(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "XYZ.csv", "\ufeffDATE , OPEN,high,Low,CLOSE,Adj  Close,Volume\r\n2020-01-02,1,2,0.5,1.5,1.4,7\r\n"
    )
    parsed = read_bars(path)
    assert parsed.layout == "daily"
    assert parsed.frame[["open", "close", "volume"]].iloc[0].tolist() == [1.0, 1.5, 7.0]


def test_an_intraday_file_with_a_time_column_in_its_header_combines_date_and_time(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ES_2024.csv",
        "Date,Time,Open,High,Low,Close,Volume\n2024-01-02,09:30,1,2,0.5,1.5,10\n2024-01-02,9:31:15.25,1,2,0.5,1.5,10\n",
    )
    parsed = read_bars(path)
    assert parsed.layout == "intraday"
    assert set(parsed.frame["symbol"]) == {"ES"}
    assert parsed.frame["timestamp"].tolist() == [utc(2024, 1, 2, 9, 30), utc(2024, 1, 2, 9, 31, 15, 250_000)]


def test_a_header_only_file_reads_as_an_empty_bar_frame(tmp_path: Path) -> None:
    parsed = read_bars(write(tmp_path / "NONE.csv", f"{YAHOO_HEADER}\n"))
    assert parsed.rows_read == 0 and parsed.rejected == []
    assert list(parsed.frame.columns) == [*BAR_COLUMNS, "line"]
    assert str(parsed.frame["timestamp"].dtype) == TIMESTAMP_DTYPE


def test_a_txt_file_is_read_as_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "NVDA.txt", NVDA.read_bytes())
    pd.testing.assert_frame_equal(read_bars(path).frame, read_bars(NVDA).frame)


# --- rejected rows ------------------------------------------------------------------------------------------


def test_rows_with_the_wrong_field_count_are_rejected_with_their_line_reason_and_raw_values(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "ABC.csv",
        f"{YAHOO_HEADER}\r\n"
        "2020-01-02,1,2,0.5,1.5,1.5,100\r\n"
        "\r\n"
        "2020-01-03,1,2\r\n"
        "   \r\n"
        '2020-01-06,"1,000",2,0.5,1.5,1.5,100,extra\r\n'
        "2020-01-07,1,2,0.5,1.5,1.5,100\r\n",
    )
    parsed = read_bars(path)
    assert parsed.frame["line"].tolist() == [2, 7]
    assert [(row.line, row.reason) for row in parsed.rejected] == [
        (4, "field_count:expected_7_was_3"),
        (6, "field_count:expected_7_was_8"),
    ]
    assert parsed.rejected[0].raw_values == ("2020-01-03", "1", "2")
    assert parsed.raw_values(6) == ("2020-01-06", "1,000", "2", "0.5", "1.5", "1.5", "100", "extra")
    assert parsed.raw_values(99) == ()


def test_a_row_of_the_right_width_with_unreadable_values_stays_in_the_frame_as_missing_values(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "ABC.csv",
        f"{YAHOO_HEADER}\n2020-02-30,abc,1e999,,nan,1,-inf\n" + "2020-01-02,\x00,2,0.5,1.5,1.5,100\n",
    )
    parsed = read_bars(path)
    assert parsed.rejected == []
    assert parsed.frame["timestamp"].isna().tolist() == [True, False]
    assert parsed.frame.iloc[0][["open", "high", "low", "close", "volume"]].isna().all()
    assert np.isnan(parsed.frame["open"].iloc[1])


ROW = "2020-01-02,1,2,0.5,1.5,1.5,100"


@pytest.mark.parametrize(
    "lines",
    [
        [YAHOO_HEADER, ROW, "", ROW],
        [YAHOO_HEADER, ROW, "", "", ROW],
        [YAHOO_HEADER, ROW, ROW, ""],
        [YAHOO_HEADER, ""],
    ],
    ids=["between_rows", "two_between_rows", "at_the_end", "after_the_header"],
)
def test_an_empty_line_is_not_a_row(tmp_path: Path, lines: list[str]) -> None:
    path = write(tmp_path / "ABC.csv", "\n".join(lines) + "\n")
    parsed = read_bars(path)
    assert accounted_lines(parsed) == [n for n, line in enumerate(lines, 1) if n > 1 and line]
    assert parsed.frame["open"].notna().all()


@pytest.mark.parametrize("line", ['""', '" "', "''"])
def test_a_line_holding_one_empty_quoted_field_is_a_rejected_row_not_a_blank_line(tmp_path: Path, line: str) -> None:
    path = write(tmp_path / "ABC.csv", "\n".join([YAHOO_HEADER, ROW, line, ROW]) + "\n")
    parsed = read_bars(path)
    assert accounted_lines(parsed) == [2, 3, 4]
    assert [row.line for row in parsed.rejected] == [3]


def test_an_unbalanced_quote_spoils_its_own_line_only(tmp_path: Path) -> None:
    path = write(tmp_path / "ABC.csv", "\n".join([YAHOO_HEADER, ROW, '2020-01-03,"1,2,0.5', ROW, ROW]) + "\n")
    parsed = read_bars(path)
    assert accounted_lines(parsed) == [2, 3, 4, 5]
    assert parsed.frame["line"].tolist() == [2, 4, 5]


@pytest.mark.parametrize("separator", ["\x0c", "\x85", "\u2028"], ids=repr)
def test_a_character_that_is_no_line_end_in_csv_does_not_split_its_line(tmp_path: Path, separator: str) -> None:
    damaged = f"2020-01-03,1{separator}2,2,0.5,1.5,1.5,100"
    path = write(tmp_path / "ABC.csv", "\n".join([YAHOO_HEADER, ROW, damaged, ROW]))
    parsed = read_bars(path)
    assert parsed.rows_read == 3
    assert accounted_lines(parsed) == [2, 3, 4]


def test_naive_times_beside_times_with_offsets_are_still_read_in_the_given_zone(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bars.csv",
        f"{LONG_HEADER}\n2024-01-02 09:30:00,AAA,1,2,0.5,1.5,100\n2024-01-02T09:30:00-05:00,BBB,1,2,0.5,1.5,100\n",
    )
    stamps = read_bars(path, timezone="America/New_York").frame["timestamp"].tolist()
    assert stamps == [utc(2024, 1, 2, 14, 30), utc(2024, 1, 2, 14, 30)]


# --- Parquet ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dates", ["text", "naive", "aware"])
def test_a_parquet_file_reads_the_same_bars_as_its_csv(tmp_path: Path, dates: str) -> None:
    table = pd.read_csv(NVDA)
    if dates != "text":
        table["Date"] = pd.to_datetime(table["Date"])
    if dates == "aware":
        table["Date"] = table["Date"].dt.tz_localize("UTC")
    path = tmp_path / "NVDA.parquet"
    table.to_parquet(path)
    from_parquet, from_csv = read_bars(path), read_bars(NVDA)
    assert from_parquet.layout == from_csv.layout == "daily"
    assert from_parquet.rows_read == from_csv.rows_read
    pd.testing.assert_frame_equal(from_parquet.frame.drop(columns="line"), from_csv.frame.drop(columns="line"))


def test_a_long_parquet_file_reads_the_same_as_its_csv_and_as_the_frame_it_was_written_from(
    tmp_path: Path,
) -> None:
    market = generate_market(
        MarketConfig(symbols=3, bars_per_symbol=40, seed=9, start=datetime(2021, 3, 4, 5, 6, 7, 891_011, tzinfo=UTC))
    )
    write_market_csv(market, tmp_path / "market.csv")
    market.to_parquet(tmp_path / "market.parquet")
    from_csv = read_bars(tmp_path / "market.csv").frame.drop(columns="line")
    from_parquet = read_bars(tmp_path / "market.parquet").frame.drop(columns="line")
    pd.testing.assert_frame_equal(from_parquet, from_csv)
    pd.testing.assert_frame_equal(from_csv, market)


# --- files refused whole ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("prices.csv", "when,price\n2020-01-02,1\n", "matches no known layout"),
        ("NVDA.csv", "Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5\n", "matches no known layout"),
        ("empty.csv", "", "is empty"),
        ("blank.csv", "\n   \n\t\n", "is empty"),
        ("NVDA.json", '{"bars": []}', "'.json' is not .csv or .parquet"),
        ("NVDA", "Date,Open\n", "'(none)' is not .csv or .parquet"),
        ("broken.parquet", "not parquet at all", "is not a readable Parquet file"),
    ],
)
def test_an_unreadable_file_is_refused_whole_naming_its_path_and_why(
    tmp_path: Path, name: str, content: str, reason: str
) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(FileRejected) as raised:
        read_bars(path)
    assert raised.value.path == str(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert reason in raised.value.reason


@pytest.mark.parametrize("name", ["missing.csv", "missing.parquet", "nested/missing.csv"])
def test_a_missing_file_is_refused_naming_its_path(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(FileRejected, match="cannot be read") as raised:
        read_bars(path)
    assert raised.value.path == str(path) and str(path) in str(raised.value)


def test_a_directory_is_refused_naming_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "bars.csv"
    folder.mkdir()
    with pytest.raises(FileRejected, match=re.escape(str(folder))):
        read_bars(folder)


# --- formats: delimiters, header names, numbers, dates -----------------------------------------------------

BARS = pd.DataFrame(
    {
        "Open": [1.5, 2.0, 3.0],
        "High": [2.0, 3.0, 4.0],
        "Low": [0.5, 1.0, 2.0],
        "Close": [1.75, 2.5, 3.5],
        "Volume": [100, 200, 300],
    },
    index=pd.DatetimeIndex(["2020-01-02", "2020-01-03", "2020-01-06"]),
)
BARS_DAYS = [utc(2020, 1, 2), utc(2020, 1, 3), utc(2020, 1, 6)]


def values(parsed: ParsedFile) -> list[list[float]]:
    return parsed.frame[["open", "high", "low", "close", "volume"]].to_numpy().tolist()


def test_pandas_to_csv_output_with_its_unnamed_index_column_of_dates_is_a_daily_file(tmp_path: Path) -> None:
    path = tmp_path / "AAA.csv"
    BARS.to_csv(path)
    assert path.read_text().splitlines()[0] == ",Open,High,Low,Close,Volume"

    parsed = read_bars(path)

    assert (parsed.layout, parsed.rejected, parsed.timestamp_problem) == ("daily", [], None)
    assert parsed.frame["symbol"].tolist() == ["AAA"] * 3
    assert parsed.frame["timestamp"].tolist() == BARS_DAYS
    assert values(parsed) == BARS.to_numpy(dtype=float).tolist()


def test_pandas_to_csv_output_of_zoned_minutes_is_intraday_in_utc(tmp_path: Path) -> None:
    minutes = BARS.set_axis(pd.date_range("2024-01-02 09:30", periods=3, freq="min", tz="America/New_York"))
    path = tmp_path / "AAA.csv"
    minutes.to_csv(path)

    parsed = read_bars(path)

    assert parsed.layout == "intraday"
    assert parsed.frame["timestamp"].tolist() == [utc(2024, 1, 2, 14, 30 + minute) for minute in range(3)]


def test_a_frame_read_back_and_written_again_takes_its_dates_from_the_unnamed_0_column(tmp_path: Path) -> None:
    BARS.to_csv(tmp_path / "first.csv")
    path = tmp_path / "AAA.csv"
    pd.read_csv(tmp_path / "first.csv").to_csv(path)  # a new row-number index first, then "Unnamed: 0"
    assert path.read_text().splitlines()[0] == ",Unnamed: 0,Open,High,Low,Close,Volume"

    assert read_bars(path).frame["timestamp"].tolist() == BARS_DAYS


def test_a_parquet_file_written_from_a_frame_with_a_datetime_index_reads_its_index_as_timestamps(
    tmp_path: Path,
) -> None:
    path = tmp_path / "AAA.parquet"
    BARS.to_parquet(path)

    parsed = read_bars(path, date_format="%d/%m/%Y")  # a datetime column needs no format: it is ignored

    assert parsed.layout == "daily"
    assert parsed.frame["timestamp"].tolist() == BARS_DAYS
    assert values(parsed) == BARS.to_numpy(dtype=float).tolist()


@pytest.mark.parametrize("delimiter", DELIMITERS, ids=["comma", "semicolon", "tab", "pipe"])
def test_every_delimiter_is_recognised_and_reads_the_same_bars(tmp_path: Path, delimiter: str) -> None:
    table = pd.read_csv(NVDA, nrows=200)
    path = tmp_path / "NVDA.csv"
    table.to_csv(path, sep=delimiter, index=False)

    parsed = read_bars(path)

    assert (parsed.delimiter, parsed.layout) == (delimiter, "daily")
    expected = read_bars(NVDA).frame.iloc[:200]
    pd.testing.assert_frame_equal(parsed.frame, expected)


@pytest.mark.parametrize("delimiter", DELIMITERS, ids=["comma", "semicolon", "tab", "pipe"])
def test_rows_of_a_file_with_any_delimiter_keep_their_raw_fields_and_lines(tmp_path: Path, delimiter: str) -> None:
    rows = [YAHOO_HEADER, ROW, "2020-01-03,1,2", "", ROW.replace("01-02", "01-06")]
    path = write(tmp_path / "ABC.csv", "\n".join(line.replace(",", delimiter) for line in rows) + "\n")

    parsed = read_bars(path)

    assert parsed.frame["line"].tolist() == [2, 5]
    assert [(row.line, row.reason, row.raw_values) for row in parsed.rejected] == [
        (3, "field_count:expected_7_was_3", ("2020-01-03", "1", "2"))
    ]
    assert parsed.raw_values(2) == tuple(ROW.split(","))


@pytest.mark.parametrize(
    ("lines", "delimiter"),
    [
        (["Date;Open;High;Low;Close;Volume", "2020-01-02;1,5;2;1;1,5;3"], ";"),  # decimal commas in rows
        (["a,b|c,d", "1,2,3,4"], ","),  # both split the header, only commas fit the row
        (["a,b|c", "1|2"], "|"),  # both split the header in two, only the pipe fits the row
        (["a,b|c", "1,2|3"], ","),  # both fit every row: ambiguous, so comma
        (["Date Open High"], ","),  # nothing splits the header: comma
        ([], ","),
    ],
)
def test_the_delimiter_is_the_one_that_splits_the_header_and_fits_the_rows_else_comma(
    lines: list[str], delimiter: str
) -> None:
    assert sniff_delimiter(lines) == delimiter


@pytest.mark.parametrize(
    "header",
    [
        "DATE,OPEN,HIGH,LOW,CLOSE,VOLUME",
        "date,open,high,low,close,volume",
        "dAtE , oPeN,High ,LOW,Close,  VOLUME",
        "Datetime,Open,High,Low,Close,Volume",
        "Time,Open,High,Low,Close,Volume",
        "TIMESTAMP,Open,High,Low,Close,Volume",
        "Gmt time,Open,High,Low,Close,Volume",
        "GMT  TIME,Open,High,Low,Close,Volume",
        ",Open,High,Low,Close,Volume",
        "Unnamed: 0,Open,High,Low,Close,Volume",
        "Date,Open,High,Low,Close,Adj Close,Volume",
        "Date,Open,High,Low,Close,adj_close,Volume",
        "Date,Open,High,Low,Close,AdjClose,Volume",
    ],
)
def test_header_names_are_read_in_any_case_with_their_synonyms(tmp_path: Path, header: str) -> None:
    width = len(header.split(","))
    rows = ["2020-01-02,1,2,0.5,1.5,100", "2020-01-03,1,2,0.5,1.5,200"]
    if width == 7:  # an Adj Close column before Volume
        rows = [row.rsplit(",", 1)[0] + ",9," + row.rsplit(",", 1)[1] for row in rows]
    path = write(tmp_path / "ABC.csv", "\n".join([header, *rows]) + "\n")

    parsed = read_bars(path)

    assert (parsed.layout, parsed.rejected) == ("daily", [])
    assert parsed.frame["timestamp"].tolist() == [utc(2020, 1, 2), utc(2020, 1, 3)]
    assert values(parsed) == [[1.0, 2.0, 0.5, 1.5, 100.0], [1.0, 2.0, 0.5, 1.5, 200.0]]


DUKASCOPY = [
    "Gmt time,Open,High,Low,Close,Volume",
    "13.01.2020 00:00:00.000,1.11293,1.11301,1.11291,1.11297,118.87",
    "13.01.2020 00:01:00.000,1.11298,1.11305,1.11296,1.11304,87.5",
]


def test_dukascopy_gmt_time_is_read_with_its_date_format(tmp_path: Path) -> None:
    path = write(tmp_path / "EURUSD_Candlestick_1_M_BID.csv", "\n".join(DUKASCOPY) + "\n")

    parsed = read_bars(path, date_format="%d.%m.%Y %H:%M:%S.%f")

    assert (parsed.layout, parsed.timestamp_problem) == ("intraday", None)
    assert set(parsed.frame["symbol"]) == {"EURUSD"}
    assert parsed.frame["timestamp"].tolist() == [utc(2020, 1, 13, 0, 0), utc(2020, 1, 13, 0, 1)]
    assert values(parsed)[0] == [1.11293, 1.11301, 1.11291, 1.11297, 118.87]


def test_dukascopy_gmt_time_without_a_date_format_suggests_its_format(tmp_path: Path) -> None:
    path = write(tmp_path / "EURUSD.csv", "\n".join(DUKASCOPY) + "\n")

    parsed = read_bars(path)

    assert parsed.frame["timestamp"].isna().all()
    assert parsed.timestamp_problem == (
        "no timestamp could be read (line 2: '13.01.2020 00:00:00.000'); "
        "give the format with --date-format, e.g. %d.%m.%Y %H:%M:%S.%f"
    )


DAY_FIRST = ["Date,Open,High,Low,Close,Volume", "13/01/2020,1,2,0.5,1.5,100", "02/03/2020,1,2,0.5,1.5,100"]


def test_day_first_dates_are_read_with_the_date_format(tmp_path: Path) -> None:
    path = write(tmp_path / "ABC.csv", "\n".join(DAY_FIRST) + "\n")

    parsed = read_bars(path, date_format="%d/%m/%Y")

    assert parsed.frame["timestamp"].tolist() == [utc(2020, 1, 13), utc(2020, 3, 2)]
    assert parsed.timestamp_problem is None


def test_day_first_dates_without_a_date_format_are_never_guessed_and_the_file_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "ABC.csv", "\n".join(DAY_FIRST) + "\n")

    parsed = read_bars(path)

    # 02/03/2020 alone could be read month-first: no row is, and none is lost.
    assert parsed.frame["timestamp"].isna().all() and parsed.rows_read == 2
    assert parsed.timestamp_problem == (
        "no timestamp could be read (line 2: '13/01/2020'); give the format with --date-format, e.g. %d/%m/%Y"
    )


def test_a_wrong_date_format_says_which_format_the_values_look_like(tmp_path: Path) -> None:
    path = write(tmp_path / "ABC.csv", "\n".join(DAY_FIRST) + "\n")

    problem = read_bars(path, date_format="%Y-%m-%d").timestamp_problem

    assert problem == (
        "no timestamp could be read with --date-format %Y-%m-%d (line 2: '13/01/2020'); the values look like %d/%m/%Y"
    )


def test_a_file_with_some_readable_timestamps_has_no_timestamp_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "ABC.csv", "\n".join([*DAY_FIRST, "2020-03-04,1,2,0.5,1.5,100"]) + "\n")

    parsed = read_bars(path)

    assert parsed.frame["timestamp"].notna().tolist() == [False, False, True]
    assert parsed.timestamp_problem is None


@pytest.mark.parametrize(
    ("sample", "suggestion"),
    [
        (["13/01/2020"], "%d/%m/%Y"),
        (["01/02/2020", "01/13/2020"], "%m/%d/%Y"),
        (["01/02/2020"], "%d/%m/%Y"),
        (["13-01-20 09:30"], "%d-%m-%y %H:%M"),
        (["2020.01.13T09:30:15"], "%Y.%m.%d" + "T%H:%M:%S"),
        (["20200113"], "%Y%m%d"),
        (["yesterday"], "%d/%m/%Y"),
    ],
)
def test_the_suggested_date_format_follows_the_values(sample: list[str], suggestion: str) -> None:
    assert suggest_date_format(sample) == suggestion


def test_a_date_format_without_a_clock_reads_the_date_of_a_file_with_a_time_column(tmp_path: Path) -> None:
    path = write(tmp_path / "ES.csv", "Date;Time;Open;High;Low;Close;Volume\n13/01/2020;09:30;1;2;0.5;1.5;10\n")

    parsed = read_bars(path, date_format="%d/%m/%Y", timezone="America/New_York")

    assert (parsed.layout, parsed.frame["timestamp"].tolist()) == ("intraday", [utc(2020, 1, 13, 14, 30)])


def test_a_date_format_with_a_zone_converts_to_utc(tmp_path: Path) -> None:
    path = write(tmp_path / "ABC.csv", f"{LONG_HEADER}\n13/01/2020 09:30 +0100,AAA,1,2,0.5,1.5,10\n")

    parsed = read_bars(path, date_format="%d/%m/%Y %H:%M %z", timezone="Asia/Tokyo")

    assert parsed.frame["timestamp"].tolist() == [utc(2020, 1, 13, 8, 30)]


@pytest.mark.parametrize("date_format", ["%Q", "day/month/year"])
def test_an_unusable_date_format_is_refused_naming_it(date_format: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(repr(date_format))):
        read_bars(NVDA, date_format=date_format)


def test_quoted_numbers_with_thousands_separators_are_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ABC.csv",
        "Date,Open,High,Low,Close,Volume\n"
        '2020-01-02,"1,234.31","1,300.00",1200,"1,250.5","1,000,000"\n'
        "2020-01-03,1 234.5,1 300,1 200,1 250,2 000 000\n",
    )

    parsed = read_bars(path)

    assert values(parsed) == [[1234.31, 1300.0, 1200.0, 1250.5, 1e6], [1234.5, 1300.0, 1200.0, 1250.0, 2e6]]


def test_a_comma_that_may_be_a_decimal_comma_is_never_read_as_thousands(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ABC.csv",
        "Date;Open;High;Low;Close;Volume\n2020-01-02;12,345;1,234.5;1,234,567;12,5;1\n2020-01-03;1;1;1;1,234;1\n",
    )

    frame = read_bars(path).frame

    assert frame["open"].isna().tolist() == [True, False]  # 12,345 in a ;-file: maybe twelve and a bit
    assert frame["high"].tolist() == [1234.5, 1.0]
    assert frame["low"].tolist() == [1234567.0, 1.0]
    assert frame["close"].isna().all()  # 12,5 shows the column uses decimal commas: 1,234 is not guessed


ADJUSTED = f"{YAHOO_HEADER}\n2020-01-02,10,12,8,11,5.5,100\n2020-01-03,10,12,8,10,n/a,100\n"


def test_adj_close_is_ignored_by_default(tmp_path: Path) -> None:
    parsed = read_bars(write(tmp_path / "ABC.csv", ADJUSTED))

    assert values(parsed) == [[10.0, 12.0, 8.0, 11.0, 100.0], [10.0, 12.0, 8.0, 10.0, 100.0]]


def test_adjusted_prices_scale_each_row_by_adj_close_over_close(tmp_path: Path) -> None:
    frame = read_bars(write(tmp_path / "ABC.csv", ADJUSTED), adjusted=True).frame

    assert frame.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [5.0, 6.0, 4.0, 5.5, 100.0]
    # An unreadable Adj Close gives no price: the row stays, with missing prices the quality checks catch.
    assert frame.iloc[1][["open", "high", "low", "close"]].isna().all()
    assert frame["line"].tolist() == [2, 3]


def test_adjusted_prices_need_an_adj_close_column(tmp_path: Path) -> None:
    path = write(tmp_path / "ABC.csv", "Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,100\n")

    with pytest.raises(FileRejected, match="no Adj Close column") as raised:
        read_bars(path, adjusted=True)

    assert raised.value.path == str(path)


# --- directories and failed files ---------------------------------------------------------------------------


def test_a_directory_stands_for_every_bar_file_under_it_sorted_without_hidden_ones(tmp_path: Path) -> None:
    for name in ["b.csv", "a.TXT", "sub/c.parquet", "sub/deeper/d.csv", ".hidden.csv", ".git/e.csv", "notes.md"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")

    found = bar_files(tmp_path)

    assert [path.relative_to(tmp_path).as_posix() for path in found] == [
        "a.TXT",
        "b.csv",
        "sub/c.parquet",
        "sub/deeper/d.csv",
    ]


def test_a_path_that_is_no_directory_stands_for_itself_even_if_missing(tmp_path: Path) -> None:
    assert bar_files(tmp_path / "missing.csv") == [tmp_path / "missing.csv"]
    assert bar_files(NVDA) == [NVDA]


def test_a_directory_holding_no_bar_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / ".hidden.csv").write_text("x")

    with pytest.raises(FileRejected, match="holding no bar file") as raised:
        bar_files(tmp_path)

    assert raised.value.path == str(tmp_path)


def test_expanding_paths_keeps_their_order_and_names_each_file_once(tmp_path: Path) -> None:
    for name in ["b.csv", "a.csv"]:
        (tmp_path / name).write_text("x")

    expanded = expand_bar_paths([str(tmp_path / "b.csv"), tmp_path, NVDA])

    assert expanded == [str(tmp_path / "b.csv"), str(tmp_path / "a.csv"), str(NVDA)]


@pytest.mark.parametrize(
    ("figures", "failure"),
    [
        ({"rows_read": 0, "rows_stored": 0, "failed_checks": {}}, "holds a header but no data row"),
        (
            {"rows_read": 3, "rows_stored": 0, "failed_checks": {"not_null:close": 2, "positive:open": 1}},
            "every row was quarantined (3 rows; failing not_null:close x2, positive:open x1)",
        ),
        (
            {"rows_read": 2, "rows_stored": 0, "failed_checks": {"not_null:timestamp": 2}, "timestamp_problem": "P"},
            "P",
        ),
        ({"rows_read": 3, "rows_stored": 1, "failed_checks": {"positive:open": 2}}, None),
    ],
    ids=["header_only", "all_quarantined", "no_timestamp", "stored"],
)
def test_a_file_fails_when_it_has_no_data_row_or_every_row_was_quarantined(
    figures: dict[str, Any], failure: str | None
) -> None:
    assert file_failure(**figures) == failure


# --- any mix of good and bad rows ---------------------------------------------------------------------------

# Any text but CR and LF, which end lines, and ":", so that no garbage looks like a clock time to the sniffer.
garbage_text = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\n\r:"), max_size=30)
GARBAGE_NUMBERS = ["abc", "1e999", "-inf", "nan", "0x1F", "--1", "1_000", "1.2.3", "١٢٣", "$5", "1e", "+", "."]
BAD_DATES = ["2020-02-30", "2020-13-01", "yesterday", "0000-00-00", "2020/01/02", "99999-01-01", "20-1-2", "T"]
INVALID_UTF8 = [b"\xff", b"\xfe\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf5\x80\x80\x80"]
BLANK_LINES = [b"", b" ", b"\t", b"  \t  "]


@dataclass(frozen=True)
class Layout:
    header: str
    name: str
    detected: frozenset[str]


LAYOUTS = [
    Layout(YAHOO_HEADER, "daily", frozenset({"daily"})),
    Layout("date,open,high,low,close,volume", "daily_plain", frozenset({"daily"})),
    Layout(",Open,High,Low,Close,Volume", "pandas_index", frozenset({"daily"})),
    Layout("Date,Time,Open,High,Low,Close,Volume", "intraday", frozenset({"intraday"})),
    Layout("Date,Open,High,Low,Close,Volume,OpenInterest", "intraday_untimed", frozenset({"intraday"})),
    # One timestamp column of date and time: intraday, or daily when every time read is midnight.
    Layout("Gmt time,Open,High,Low,Close,Volume", "gmt_time", frozenset({"daily", "intraday"})),
    Layout(LONG_HEADER, "long", frozenset({"long"})),
    Layout("symbol,close,timestamp,low,open,high,volume,spread", "long_spread", frozenset({"long"})),
]
#: How a header's names may be spelled: all are read alike.
HEADER_CASES: list[Callable[[str], str]] = [str, str.upper, str.lower, str.title]

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
days = st.dates(min_value=date(1980, 1, 1), max_value=date(2099, 12, 31))
clock_times = st.times().map(lambda moment: moment.replace(microsecond=0))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@st.composite
def valid_rows(draw: st.DrawFn, layout: Layout) -> tuple[list[str], dict[str, object]]:
    """Fields of a valid row in `layout` and the bar it must become."""
    low, first, second, high = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
    open_, close = (first, second) if draw(st.booleans()) else (second, first)
    volume = draw(st.integers(min_value=0, max_value=10**9))
    bar: dict[str, object] = {"open": open_, "high": high, "low": low, "close": close, "volume": float(volume)}
    day = draw(days)
    numbers = [repr(open_), repr(high), repr(low), repr(close)]
    if layout.name in ("daily", "daily_plain", "pandas_index"):
        bar.update(symbol="TEST", timestamp=pd.Timestamp(day, tz="UTC"))
        adjusted = [repr(draw(prices))] if layout.name == "daily" else []
        return [day.isoformat(), *numbers, *adjusted, str(volume)], bar
    if layout.name in ("intraday", "intraday_untimed"):
        moment = draw(clock_times)
        bar.update(symbol="TEST", timestamp=pd.Timestamp(datetime.combine(day, moment, tzinfo=UTC)))
        extra = [str(draw(st.integers(0, 10**6)))] if layout.name == "intraday_untimed" else []
        return [day.isoformat(), moment.isoformat(), *numbers, str(volume), *extra], bar
    if layout.name == "gmt_time":
        moment = draw(clock_times)
        bar.update(symbol="TEST", timestamp=pd.Timestamp(datetime.combine(day, moment, tzinfo=UTC)))
        return [f"{day.isoformat()} {moment.isoformat()}", *numbers, str(volume)], bar
    moment = datetime.combine(day, draw(st.times()), tzinfo=draw(offsets))
    stamp = moment.isoformat().replace("+00:00", "Z") if draw(st.booleans()) else moment.isoformat()
    symbol = draw(st.from_regex(r"[A-Z]{1,5}", fullmatch=True))
    bar.update(symbol=symbol, timestamp=pd.Timestamp(moment).tz_convert("UTC"))
    if layout.name == "long":
        return [stamp, symbol, *numbers, str(volume)], bar
    spread = draw(st.floats(min_value=0.0, max_value=0.1))
    bar["spread"] = spread
    return [symbol, repr(close), stamp, repr(low), repr(open_), repr(high), str(volume), repr(spread)], bar


@st.composite
def malformed_lines(draw: st.DrawFn, layout: Layout, delimiter: bytes = b",") -> bytes:
    """A line that a valid row became by one or more damages, or plain garbage."""
    fields: list[bytes] = [field.encode() for field in draw(valid_rows(layout))[0]]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        damage = draw(
            st.sampled_from(["drop", "add", "number", "empty", "date", "quote", "nul", "utf8", "long", "garbage_line"])
        )
        at = draw(st.integers(min_value=0, max_value=max(0, len(fields) - 1)))
        if damage == "drop" and len(fields) > 1:
            del fields[draw(st.integers(min_value=1, max_value=len(fields) - 1)) :]
        elif damage == "add":
            fields += [draw(garbage_text).encode() for _ in range(draw(st.integers(1, 3)))]
        elif damage == "number":
            fields[at] = draw(st.sampled_from(GARBAGE_NUMBERS) | garbage_text).encode()
        elif damage == "empty":
            fields[at] = draw(st.sampled_from([b"", b" ", b'""']))
        elif damage == "date":
            fields[0] = draw(st.sampled_from(BAD_DATES)).encode()
        elif damage == "quote":
            cut = draw(st.integers(min_value=0, max_value=len(fields[at])))
            fields[at] = fields[at][:cut] + draw(st.sampled_from([b'"', b'""', b"'"])) + fields[at][cut:]
        elif damage == "nul":
            fields[at] = fields[at] + b"\x00" * draw(st.integers(1, 3))
        elif damage == "utf8":
            fields[at] = draw(st.sampled_from(INVALID_UTF8)) + fields[at]
        elif damage == "long":
            fields[at] = draw(st.sampled_from([b"9", b"x", b"1.5"])) * draw(st.sampled_from([5_000, 140_000]))
        elif damage == "garbage_line":
            fields = [draw(garbage_text).encode()]
    return delimiter.join(fields)


@st.composite
def files(draw: st.DrawFn) -> tuple[Layout, bytes, dict[int, dict[str, object]]]:
    """A file: a valid header in any case and delimiter, then valid, malformed and blank lines; and the bars
    the valid lines must become."""
    layout = draw(st.sampled_from(LAYOUTS))
    delimiter = draw(st.sampled_from(DELIMITERS))
    spelled = draw(st.sampled_from(HEADER_CASES))
    lines = [delimiter.join(spelled(name) for name in layout.header.split(",")).encode()]
    valid: dict[int, dict[str, object]] = {}
    for _ in range(draw(st.integers(min_value=0, max_value=20))):
        kind = draw(st.sampled_from(["valid", "malformed", "blank"]))
        if kind == "valid":
            fields, bar = draw(valid_rows(layout))
            lines.append(delimiter.join(fields).encode())
            valid[len(lines)] = bar
        elif kind == "malformed":
            lines.append(draw(malformed_lines(layout, delimiter.encode())))
        else:
            lines.append(draw(st.sampled_from(BLANK_LINES)))
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    return layout, ending.join(lines) + draw(st.sampled_from([ending, b""])), valid


HEADER_BYTES = YAHOO_HEADER.encode()
DAILY_ROW = b"2020-01-02,1.0,2.0,0.5,1.5,1.4,100"
DAILY_BAR: dict[str, object] = {
    "symbol": "TEST",
    "timestamp": utc(2020, 1, 2),
    "open": 1.0,
    "high": 2.0,
    "low": 0.5,
    "close": 1.5,
    "volume": 100.0,
}


@settings(max_examples=60, deadline=None)
@given(case=files())
@example(case=(LAYOUTS[0], b"\n".join([HEADER_BYTES, DAILY_ROW, b"", DAILY_ROW]), {2: DAILY_BAR, 4: DAILY_BAR}))
@example(case=(LAYOUTS[0], b"\n".join([HEADER_BYTES, b'2020-01-02,"1.0,2', DAILY_ROW]), {3: DAILY_BAR}))
@example(case=(LAYOUTS[0], b"\n".join([HEADER_BYTES, b'""', DAILY_ROW]), {3: DAILY_BAR}))
@example(case=(LAYOUTS[0], b"\n".join([HEADER_BYTES, "1\x0c\u2028".encode(), DAILY_ROW]), {3: DAILY_BAR}))
def test_any_mix_of_good_and_bad_lines_is_read_without_losing_or_repeating_a_line(
    case: tuple[Layout, bytes, dict[int, dict[str, object]]],
) -> None:
    layout, content, valid = case
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "TEST.csv", content)
        expected_lines = non_blank_line_numbers(path)
        parsed = read_bars(path)  # a valid header: no exception of any kind

    assert parsed.rows_read == len(expected_lines)
    assert len(parsed.frame) + len(parsed.rejected) == len(expected_lines)
    assert accounted_lines(parsed) == expected_lines  # each line once, in the frame or rejected
    assert list(parsed.frame.columns) == [*BAR_COLUMNS, "line"]
    assert str(parsed.frame["timestamp"].dtype) == TIMESTAMP_DTYPE
    for row in parsed.rejected:
        assert row.reason.startswith("field_count:")

    first_rows = expected_lines[:50]
    if layout.name != "intraday_untimed" or 2 * sum(line in valid for line in first_rows) > len(first_rows):
        assert parsed.layout in layout.detected
    if parsed.layout in layout.detected:
        if valid:  # one readable timestamp: the file's timestamps are not all unreadable
            assert parsed.timestamp_problem is None
        by_line = parsed.frame.set_index("line")
        for line, bar in valid.items():
            row = by_line.loc[line]
            for name, value in bar.items():
                assert row[name] == value, (line, name)
            if "spread" not in bar:
                assert np.isnan(row["spread"])


@settings(max_examples=50, deadline=None)
@given(
    header=st.lists(garbage_text, min_size=1, max_size=8).filter(
        lambda names: not {"date", "timestamp"} & {"_".join(name.strip().lower().split()) for name in names}
    ),
    rows=st.lists(garbage_text, max_size=5),
)
def test_a_header_that_matches_no_layout_refuses_the_file_naming_its_path(header: list[str], rows: list[str]) -> None:
    content = "\n".join([",".join(header), *rows])
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "TEST.csv", content)
        with pytest.raises(FileRejected) as raised:
            read_bars(path)
    assert str(path) in str(raised.value)


def test_reading_is_deterministic_and_the_digest_names_the_bytes(tmp_path: Path) -> None:
    copy = write(tmp_path / "NVDA.csv", NVDA.read_bytes())
    first, second = read_bars(copy), read_bars(NVDA)
    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert first.source_digest == second.source_digest
    write(copy, NVDA.read_bytes() + b"2015-01-02,1,2,0.5,1.5,1.5,100\n")
    assert read_bars(copy).source_digest != second.source_digest


def test_a_symbol_given_for_a_long_file_is_refused_since_its_rows_name_their_own(tmp_path: Path) -> None:
    path = write(tmp_path / "bars.csv", f"{LONG_HEADER}\n2024-01-02T00:00:00Z,AAA,1,2,0.5,1.5,100\n")

    with pytest.raises(FileRejected, match="names a symbol per row") as raised:
        read_bars(path, symbol="BBB")

    assert str(path) in str(raised.value)
    assert "'BBB'" in str(raised.value)
