"""Specification of the bar data-quality checks (`tasks.quality.check_bars`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest

from tasks.quality import CHECK_NAMES, check_bars

Check = Callable[[pd.DataFrame], dict[int, list[str]]]

START = pd.Timestamp("2024-03-01 14:30", tz="UTC")


def minutes(offset: float) -> pd.Timestamp:
    return START + pd.Timedelta(minutes=offset)


def bar_frame(rows: Sequence[tuple[object, object, float, float, float, float, float]]) -> pd.DataFrame:
    """Build a bar frame with the dtypes the readers produce, from (symbol, timestamp, o, h, l, c, v)."""
    frame = pd.DataFrame(rows, columns=["symbol", "timestamp", "open", "high", "low", "close", "volume"])
    frame["symbol"] = frame["symbol"].astype("str")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[us, UTC]")
    for column in ("open", "high", "low", "close", "volume"):
        frame[column] = frame[column].astype("float64")
    frame["spread"] = np.nan
    return frame


def clean_frame(bars_per_symbol: int = 6) -> pd.DataFrame:
    """Two symbols interleaved row by row, every bar valid (including a zero volume)."""
    rows = []
    for i in range(bars_per_symbol):
        rows.append(("AAA", minutes(i), 10.0, 11.0, 9.0, 10.5, 100.0 * i))
        rows.append(("BBB", minutes(i), 20.0, 20.0, 20.0, 20.0, 5.0))
    return bar_frame(rows)


@pytest.fixture(scope="module")
def check() -> Check:
    # Pays the Great Expectations import and set-up once for the whole module.
    assert check_bars(clean_frame(1)) == {}
    return check_bars


def test_check_names_are_the_documented_ones() -> None:
    assert set(CHECK_NAMES) == {
        "not_null:symbol",
        "not_null:timestamp",
        "not_null:open",
        "not_null:high",
        "not_null:low",
        "not_null:close",
        "not_null:volume",
        "positive:open",
        "positive:high",
        "positive:low",
        "positive:close",
        "non_negative:volume",
        "low_le_open",
        "low_le_close",
        "open_le_high",
        "close_le_high",
        "timestamp_increasing",
        "unique_symbol_timestamp",
    }
    assert len(CHECK_NAMES) == len(set(CHECK_NAMES))


def test_a_clean_frame_has_no_failures(check: Check) -> None:
    assert check(clean_frame()) == {}


def test_an_empty_frame_has_no_failures(check: Check) -> None:
    assert check(clean_frame().iloc[0:0].reset_index(drop=True)) == {}


# Row 4 is AAA at minute 2, between AAA at minute 1 (row 2) and minute 3 (row 6).
BAD_ROW = 4
SINGLE_ROW_CASES: list[tuple[dict[str, object], list[str]]] = [
    ({"symbol": np.nan}, ["not_null:symbol"]),
    ({"symbol": ""}, ["not_null:symbol"]),
    ({"timestamp": pd.NaT}, ["not_null:timestamp"]),
    ({"open": np.nan}, ["not_null:open"]),
    ({"high": np.nan}, ["not_null:high"]),
    ({"low": np.nan}, ["not_null:low"]),
    ({"close": np.nan}, ["not_null:close"]),
    ({"volume": np.nan}, ["not_null:volume"]),
    ({"low": 0.0}, ["positive:low"]),
    ({"low": -1.0}, ["positive:low"]),
    # A non-positive open, close or high cannot sit inside a positive low..high range.
    ({"open": -1.0}, ["low_le_open", "positive:open"]),
    ({"close": 0.0}, ["low_le_close", "positive:close"]),
    ({"high": -1.0}, ["close_le_high", "open_le_high", "positive:high"]),
    ({"volume": -0.5}, ["non_negative:volume"]),
    ({"open": 8.5}, ["low_le_open"]),
    ({"close": 8.5}, ["low_le_close"]),
    ({"open": 11.5}, ["open_le_high"]),
    ({"close": 11.5}, ["close_le_high"]),
    ({"timestamp": minutes(0.5)}, ["timestamp_increasing"]),
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    SINGLE_ROW_CASES,
    ids=[f"{next(iter(changes))}={next(iter(changes.values()))!r}" for changes, _ in SINGLE_ROW_CASES],
)
def test_a_crafted_bad_row_is_reported_with_exactly_its_checks(
    check: Check, changes: dict[str, object], expected: list[str]
) -> None:
    frame = clean_frame()
    for column, value in changes.items():
        frame.loc[BAD_ROW, column] = value
    assert check(frame) == {BAD_ROW: expected}


def test_a_nan_price_fails_only_its_not_null_check(check: Check) -> None:
    frame = clean_frame()
    frame.loc[[1, 3, 5, 7], ["open", "high", "low", "close"]] = np.nan
    frame.loc[9, "high"] = np.nan
    result = check(frame)
    all_prices = ["not_null:close", "not_null:high", "not_null:low", "not_null:open"]
    assert result == {1: all_prices, 3: all_prices, 5: all_prices, 7: all_prices, 9: ["not_null:high"]}


def test_a_duplicate_symbol_and_timestamp_flags_both_rows(check: Check) -> None:
    frame = clean_frame()
    frame.loc[6, "timestamp"] = frame.loc[4, "timestamp"]  # AAA minute 3 becomes a second minute 2
    # The later copy also does not move time forward for AAA.
    assert check(frame) == {
        4: ["unique_symbol_timestamp"],
        6: ["timestamp_increasing", "unique_symbol_timestamp"],
    }


def test_the_same_timestamp_in_two_symbols_is_not_a_duplicate(check: Check) -> None:
    frame = clean_frame()
    assert frame.loc[0, "timestamp"] == frame.loc[1, "timestamp"]
    assert check(frame) == {}


def test_interleaved_symbols_each_increasing_pass(check: Check) -> None:
    frame = bar_frame(
        [
            ("AAA", minutes(0), 10, 11, 9, 10, 1),
            ("BBB", minutes(10), 10, 11, 9, 10, 1),
            ("AAA", minutes(1), 10, 11, 9, 10, 1),  # earlier than the row before, but not than AAA's last
            ("CCC", minutes(-5), 10, 11, 9, 10, 1),
            ("BBB", minutes(11), 10, 11, 9, 10, 1),
            ("AAA", minutes(2), 10, 11, 9, 10, 1),
        ]
    )
    assert check(frame) == {}


def test_an_out_of_order_timestamp_is_flagged_in_its_symbol_only(check: Check) -> None:
    frame = bar_frame(
        [
            ("AAA", minutes(0), 10, 11, 9, 10, 1),
            ("BBB", minutes(0), 10, 11, 9, 10, 1),
            ("AAA", minutes(5), 10, 11, 9, 10, 1),
            ("BBB", minutes(1), 10, 11, 9, 10, 1),
            ("AAA", minutes(3), 10, 11, 9, 10, 1),  # goes back in time for AAA
            ("BBB", minutes(2), 10, 11, 9, 10, 1),
            ("AAA", minutes(6), 10, 11, 9, 10, 1),
        ]
    )
    assert check(frame) == {4: ["timestamp_increasing"]}


def test_an_unparsed_timestamp_does_not_hide_a_step_back_in_time(check: Check) -> None:
    frame = bar_frame(
        [
            ("AAA", minutes(0), 10, 11, 9, 10, 1),
            ("AAA", minutes(5), 10, 11, 9, 10, 1),
            ("AAA", pd.NaT, 10, 11, 9, 10, 1),
            ("AAA", minutes(3), 10, 11, 9, 10, 1),  # compared with minute 5, the last parsed AAA bar
        ]
    )
    assert check(frame) == {2: ["not_null:timestamp"], 3: ["timestamp_increasing"]}


def test_rows_missing_part_of_the_key_are_not_duplicates_of_each_other(check: Check) -> None:
    frame = bar_frame(
        [
            ("AAA", minutes(0), 10, 11, 9, 10, 1),
            ("AAA", pd.NaT, 10, 11, 9, 10, 1),
            ("AAA", pd.NaT, 10, 11, 9, 10, 1),
            ("", minutes(1), 10, 11, 9, 10, 1),
            ("", minutes(1), 10, 11, 9, 10, 1),
        ]
    )
    assert check(frame) == {
        1: ["not_null:timestamp"],
        2: ["not_null:timestamp"],
        3: ["not_null:symbol"],
        4: ["not_null:symbol"],
    }


def test_every_failing_row_is_reported_not_a_sample(check: Check) -> None:
    frame = clean_frame(bars_per_symbol=500)
    bad_rows = list(range(3, len(frame), 3))  # 333 rows, more than any GX partial list
    frame.loc[bad_rows, "volume"] = -1.0
    assert check(frame) == {row: ["non_negative:volume"] for row in bad_rows}


def test_one_row_can_fail_many_checks_reported_in_sorted_order(check: Check) -> None:
    frame = clean_frame()
    frame.loc[BAD_ROW, ["symbol", "open", "volume"]] = ["", 12.0, -3.0]
    assert check(frame) == {BAD_ROW: ["non_negative:volume", "not_null:symbol", "open_le_high"]}


def test_the_callers_frame_is_left_unchanged(check: Check) -> None:
    frame = clean_frame()
    frame.loc[2, "symbol"] = ""
    frame.loc[3, "timestamp"] = pd.NaT
    frame.loc[5, "close"] = np.nan
    before = frame.copy(deep=True)
    check(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert list(frame.columns) == list(before.columns)


def test_a_later_call_does_not_see_an_earlier_frame(check: Check) -> None:
    bad = clean_frame()
    bad.loc[:, "volume"] = -1.0
    assert len(check(bad)) == len(bad)
    assert check(clean_frame()) == {}
