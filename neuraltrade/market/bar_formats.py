"""How a bar file is written: its delimiter, what each header name means, and how its values are spelled.

Pure functions over text the reader (`neuraltrade.market.ingest`) has already split into lines and fields:

- the delimiter is one of ``, ; TAB |``, chosen from the header and the first rows (`sniff_delimiter`);
- header names are matched ignoring case, surrounding blanks and inner spacing, with common synonyms
  (`recognise_header`): the timestamp may be ``Date``, ``Datetime``, ``Time``, ``Timestamp``,
  ``Gmt time`` or pandas' unnamed index column (an empty first name, or ``Unnamed: 0``);
- numbers may group thousands (``"1,234.31"``, ``1 234.31``) (`parse_numbers`);
- timestamps are ISO 8601 unless a strftime format is given (`parse_timestamps`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from neuraltrade.errors import ConfigError, FileRejected
from neuraltrade.market.bars import TIMESTAMP_DTYPE

DELIMITERS = (",", ";", "\t", "|")
#: Names a single timestamp column may have, most specific first: the first one present is used.
TIMESTAMP_NAMES = ("timestamp", "datetime", "date_time", "date", "gmt_time", "local_time", "time")
#: Normalised header name -> the column of a bar it holds.
COLUMN_NAMES: dict[str, str] = {
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "vol": "volume",
    "symbol": "symbol",
    "ticker": "symbol",
    "spread": "spread",
    "adj_close": "adj_close",
    "adjclose": "adj_close",
    "adj._close": "adj_close",
    "adjusted_close": "adj_close",
}
PRICE_AND_VOLUME = ("open", "high", "low", "close", "volume")
#: How many leading rows decide the delimiter, a header lacking its time column, and daily or intraday.
SNIFF_ROWS = 50

_CLOCK_TIME = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?")
_CLOCK_IN_TEXT = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")
#: A zone offset, which only counts after a clock time (a date's "-01" is no offset).
_OFFSET = r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_CLOCK_DIRECTIVE = re.compile(r"%[HIMSfpXcTRs]")
_ZONE_DIRECTIVE = re.compile(r"%[zZ]")
#: Thousands grouped by one separator (comma, space, no-break or narrow no-break space), then decimals.
_GROUPED_NUMBER = re.compile(r"[+-]?\d{1,3}(?P<separator>[, \u00a0\u202f])\d{3}(?:(?P=separator)\d{3})*(?:\.\d*)?")
_SEPARATORS = re.compile("[, \u00a0\u202f]")
#: One comma group and no decimals: thousands in a comma-separated file, a decimal comma maybe elsewhere.
_ONE_COMMA_GROUP = re.compile(r"[+-]?\d{1,3},\d{3}")
#: Names pandas gives an unnamed column after a round trip through ``read_csv``.
_UNNAMED = re.compile(r"unnamed:_\d+")
_LOOKS_LIKE_DATE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{8}")
_DATE_PARTS = re.compile(r"(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})(?:([ T])(\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?))?")


@dataclass(frozen=True, kw_only=True)
class BarFormat:
    """What each field of a row holds, and the layout it implies.

    `columns` names the bar column of each field: ``timestamp`` (one column), or ``date`` and ``time``
    (two); ``symbol``, ``open``, ``high``, ``low``, ``close``, ``volume``, ``spread``, ``adj_close``;
    or ``""`` for a field that is not read. A row must have exactly ``len(columns)`` fields.
    """

    layout: str
    columns: tuple[str, ...]

    def position(self, name: str) -> int | None:
        """Return the field index holding bar column `name`, or None if no field does."""
        return self.columns.index(name) if name in self.columns else None


def normalise_name(name: str) -> str:
    """Return a header name lower-cased, trimmed (byte order mark too), inner blanks as one ``_``."""
    return "_".join(name.strip().strip("\ufeff").lower().split())


def split_fields(line: str, delimiter: str) -> list[str]:
    """Split one CSV line at `delimiter`, honouring quotes; a line with a broken quote is one field."""
    try:
        return next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
    except csv.Error:
        return [line]


def sniff_delimiter(lines: Sequence[str]) -> str:
    """Return the delimiter of a file from its header and first rows (`lines`, blank lines left out).

    A delimiter must split the header; when several do, the one whose rows are as wide as the header (or
    one wider: the header lacking its time column) wins. A file no delimiter or several explain equally
    is read as comma-separated.
    """
    if not lines:
        return ","
    widths = {delimiter: len(split_fields(lines[0], delimiter)) for delimiter in DELIMITERS}
    candidates = [delimiter for delimiter in DELIMITERS if widths[delimiter] > 1]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return ","
    fitting = {
        delimiter: sum(
            len(split_fields(line, delimiter)) in (widths[delimiter], widths[delimiter] + 1)
            for line in lines[1 : SNIFF_ROWS + 1]
        )
        for delimiter in candidates
    }
    best = max(fitting.values())
    winners = [delimiter for delimiter in candidates if fitting[delimiter] == best]
    return winners[0] if len(winners) == 1 else ","


def recognise_header(source: str, header: Sequence[str], sample: Sequence[Sequence[str]]) -> BarFormat:
    """Return the format of a file from its `header` names and a `sample` of its first rows' fields.

    Raises
    ------
    FileRejected
        If the header names no timestamp or lacks one of open, high, low, close, volume.
    """
    names = [normalise_name(name) for name in header]
    columns = [COLUMN_NAMES.get(name, "") for name in names]
    # A name given twice (or two synonyms) is read from its first column only.
    for index, column in enumerate(columns):
        if column and column in columns[:index]:
            columns[index] = ""
    stamp_at: int | None = None
    if "date" in names and "time" in names:
        columns[names.index("date")], columns[names.index("time")] = "date", "time"
    else:
        present = [name for name in TIMESTAMP_NAMES if name in names]
        stamp_at = names.index(present[0]) if present else _index_column(names, sample)
        if stamp_at is not None:
            columns[stamp_at] = "timestamp"
    if not ({"timestamp", "date"} & set(columns) and set(PRICE_AND_VOLUME) <= set(columns)):
        raise FileRejected(
            source,
            f"header {', '.join(names)!s} matches no known layout; expected Date, Open, High, Low, Close, "
            "Volume (daily), with Time (intraday), or timestamp, symbol, open, high, low, close, volume (long)",
        )
    if "symbol" in columns:
        return BarFormat(layout="long", columns=tuple(columns))
    if stamp_at is None:
        return BarFormat(layout="intraday", columns=tuple(columns))
    # The common broken intraday header omits Time although every row carries it after the date.
    shifted = [row for row in sample if len(row) == len(columns) + 1 and _CLOCK_TIME.fullmatch(row[stamp_at + 1])]
    if sample and len(shifted) * 2 > len(sample):
        columns[stamp_at] = "date"
        return BarFormat(layout="intraday", columns=(*columns[: stamp_at + 1], "time", *columns[stamp_at + 1 :]))
    # Daily bars are stamped at midnight, written or not (a Parquet datetime column writes it).
    clocks = (_CLOCK_IN_TEXT.search(row[stamp_at]) for row in sample if len(row) == len(columns))
    timed = any(clock and clock.group().strip("0:.") for clock in clocks)
    return BarFormat(layout="intraday" if timed else "daily", columns=tuple(columns))


def _index_column(names: Sequence[str], sample: Sequence[Sequence[str]]) -> int | None:
    """Return the position of pandas' index column of timestamps: an empty first name or ``Unnamed: N``.

    A frame read back with ``read_csv`` and written again has both (a new row number first), so the
    first of them whose values look like dates wins.
    """
    candidates = [index for index, name in enumerate(names) if (index == 0 and not name) or _UNNAMED.fullmatch(name)]
    for index in candidates:
        values = [row[index] for row in sample if len(row) == len(names)]
        if values and sum(bool(_LOOKS_LIKE_DATE.search(value)) for value in values) * 2 > len(values):
            return index
    return candidates[0] if candidates else None


def parse_numbers(values: Any, *, delimiter: str = ",") -> np.ndarray:
    """Return `values` (an object array of text, or an Arrow string column) as floats, NaN where unreadable.

    Thousands may be grouped by commas or spaces (``1,234.31``) when every grouped value of the column is
    grouped the same valid way: a column that also holds ``12,5`` uses decimal commas, so none of its
    values is guessed at. Outside comma-separated files (`delimiter`), where decimal commas are common,
    ``12,345`` is no number either: only ``12,345.0`` or two groups (``1,234,567``) read. Infinity is no
    price or volume: it becomes NaN, for the not-null check to catch.
    """
    if not isinstance(values, np.ndarray):  # an Arrow string column from the fast path
        import pyarrow as pa

        try:
            numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False).copy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = np.asarray(values.to_pylist(), dtype=object)
        else:
            numbers[~np.isfinite(numbers)] = np.nan
            return numbers
    try:
        # Fast path: every field is a number (numpy parses like float(), spaces allowed).
        numbers = np.array(values, dtype=np.float64)
    except (ValueError, TypeError):
        text = pd.Series(values, dtype=object)
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(np.float64, copy=True)
        grouped = _grouped_numbers(text[np.isnan(numbers)], one_comma_group=delimiter == ",")
        if grouped is not None:
            numbers[grouped.index.to_numpy()] = grouped.to_numpy()
    numbers[~np.isfinite(numbers)] = np.nan
    return numbers


def _grouped_numbers(unread: pd.Series, *, one_comma_group: bool) -> pd.Series | None:
    """Return the values of `unread` with grouped thousands as numbers, or None if the column has none."""
    text = unread.astype(str).str.strip()
    separated = text[text.str.contains(_SEPARATORS)]
    if separated.empty:
        return None
    matched = separated.str.fullmatch(_GROUPED_NUMBER)
    if not one_comma_group:
        matched &= ~separated.str.fullmatch(_ONE_COMMA_GROUP)
    if not matched.all():
        return None
    return pd.to_numeric(separated.str.replace(_SEPARATORS, "", regex=True), errors="coerce")


def strings(values: Any) -> pd.Series:
    """Return `values` (an object array, a Series or an Arrow string column) as stripped pandas strings."""
    if isinstance(values, pd.Series):
        series = values
    elif isinstance(values, np.ndarray):
        series = pd.Series(values, dtype=object)
    else:
        series = values.to_pandas()
    return series.astype(str).str.strip().reset_index(drop=True)


def check_date_format(date_format: str | None) -> None:
    """Raise `ConfigError` unless `date_format` is None or a strftime format pandas can parse with."""
    if date_format is None:
        return
    if "%" not in date_format:
        raise ConfigError(f"date format {date_format!r} holds no % directive; write it like %d/%m/%Y")
    try:
        pd.to_datetime(pd.Series(["1"]), format=date_format, errors="coerce")
    except (ValueError, re.error) as error:  # re.error: a directive twice, as in %Y%Y
        raise ConfigError(f"date format {date_format!r} is invalid: {error}") from error


def date_only(date_format: str | None) -> bool:
    """Return whether `date_format` reads a date without a clock time (then a Time column adds the time)."""
    return date_format is not None and not _CLOCK_DIRECTIVE.search(date_format)


def iso_dates(values: Any, date_format: str) -> pd.Series:
    """Return the dates `values` written in `date_format` as ISO ``YYYY-MM-DD`` text, empty where unreadable."""
    dates = pd.to_datetime(strings(values), format=date_format, errors="coerce")
    return dates.dt.strftime("%Y-%m-%d").fillna("")


def parse_timestamps(values: Any, timezone: str, source: str, date_format: str | None = None) -> pd.Series:
    """Return `values` as UTC timestamps (NaT where unreadable); times without an offset are in `timezone`.

    Without `date_format` only ISO 8601 is read, so ``01/02/2020`` is never silently taken month-first.
    """
    text = strings(values)
    parsed = pd.Series(pd.NaT, index=text.index, dtype=TIMESTAMP_DTYPE)
    if date_format is not None:
        zoned = bool(_ZONE_DIRECTIVE.search(date_format))
        read = pd.to_datetime(text, format=date_format, errors="coerce", utc=zoned)
        if zoned:
            return read.astype(TIMESTAMP_DTYPE)
        return _localised(read, timezone, source)
    with_offset = text.str.contains(_OFFSET, regex=True)
    if with_offset.any():
        aware = pd.to_datetime(text[with_offset], format="ISO8601", errors="coerce", utc=True)
        parsed[with_offset] = aware.astype(TIMESTAMP_DTYPE)
    if not with_offset.all():
        naive = pd.to_datetime(text[~with_offset], format="ISO8601", errors="coerce")
        parsed[~with_offset] = _localised(naive, timezone, source)
    return parsed


def _localised(naive: pd.Series, timezone: str, source: str) -> pd.Series:
    try:
        local = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    except Exception as error:  # an unknown zone name is the user's error, not the file's
        raise FileRejected(source, f"time zone {timezone!r} is unknown: {error}") from error
    return local.dt.tz_convert("UTC").astype(TIMESTAMP_DTYPE)


def unreadable_timestamps(line: int, value: str, date_format: str | None, sample: Sequence[str]) -> str:
    """Return the one-line reason a file none of whose timestamps could be read fails, with a format to try.

    `line` and `value` are the first row's; `sample` holds the first rows' timestamp texts.
    """
    suggestion = suggest_date_format(sample)
    if date_format is None:
        return (
            f"no timestamp could be read (line {line}: {value!r}); "
            f"give the format with --date-format, e.g. {suggestion}"
        )
    return (
        f"no timestamp could be read with --date-format {date_format} (line {line}: {value!r}); "
        f"the values look like {suggestion}"
    )


def suggest_date_format(sample: Sequence[str]) -> str:
    """Return the strftime format the timestamp texts of `sample` most likely follow.

    A date whose first number is a year reads year-first; otherwise day-first unless some second number
    exceeds 12 while no first number does (then month-first). Defaults to ``%d/%m/%Y``.
    """
    matches = [match for match in (_DATE_PARTS.fullmatch(value.strip()) for value in sample) if match]
    if not matches:
        compact = any(re.fullmatch(r"\d{8}", value.strip()) for value in sample)
        return "%Y%m%d" if compact else "%d/%m/%Y"
    first = matches[0]
    separator = first.group(2)
    if len(first.group(1)) == 4:
        date = separator.join(("%Y", "%m", "%d"))
    else:
        year = "%Y" if len(first.group(4)) == 4 else "%y"
        day_first = any(int(match.group(1)) > 12 for match in matches)
        month_first = not day_first and any(int(match.group(3)) > 12 for match in matches)
        date = separator.join(("%m", "%d", year) if month_first else ("%d", "%m", year))
    clock = first.group(6)
    if clock is None:
        return date
    time = "%H:%M" + (":%S" if first.group(7) else "") + (".%f" if first.group(8) else "")
    return f"{date}{first.group(5)}{time}"
