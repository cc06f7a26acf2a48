"""Reading bar files: layout detection and row-by-row parsing into a bar frame, losing nothing.

Three layouts are recognised from the header (names are matched case-insensitively, spaces as ``_``):

- *daily*: ``Date, Open, High, Low, Close, Adj Close, Volume`` (Yahoo); the symbol comes from the file
  name (``NVDA.csv`` is NVDA; ``INDEX_2006-01-02_1min.csv`` is INDEX) unless one is given;
- *intraday*: ``Date, Time, Open, High, Low, Close, Volume[, ...]``; also the common broken form whose
  header omits ``Time`` although every row carries it, recognised when rows have one field more than
  the header and their second field is a clock time;
- *long*: ``timestamp, symbol, open, high, low, close, volume[, spread]`` in any order.

Every non-blank line after the header is one row read. A row either becomes a row of the bar frame
(whose quality is checked later) or a `RejectedRow` naming why, so rows read = frame rows + rejected
rows always holds. Times without a zone are read in the file's `timezone` (UTC by default).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuraltrade.bars import BAR_COLUMNS, PRICE_COLUMNS, TIMESTAMP_DTYPE
from neuraltrade.errors import FileRejected

LONG_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
DATED_COLUMNS = ("date", "open", "high", "low", "close", "volume")
_CLOCK_TIME = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?")
_SYMBOL = re.compile(r"[A-Za-z0-9.^=\-]{1,32}")
_LINE_BREAK = re.compile("\r\n|\r|\n")
#: A zone offset, which only counts after a clock time (a date's "-01" is no offset).
_OFFSET = r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
#: How many leading rows decide whether a header lacks its time column.
_SNIFF_ROWS = 50


@dataclass(frozen=True)
class RejectedRow:
    """A row that could not become a bar: its line, the reason and its raw fields."""

    line: int
    reason: str
    raw_values: tuple[str, ...]


@dataclass
class ParsedFile:
    """A file read into a bar frame (plus a ``line`` column) and the rows that could not be read."""

    source: str
    source_digest: str
    layout: str
    frame: pd.DataFrame
    rejected: list[RejectedRow] = field(default_factory=list)
    _raw_lines: list[str] | bytes = field(default=b"", repr=False)

    @property
    def rows_read(self) -> int:
        """Rows read from the file: those in the frame plus those rejected."""
        return len(self.frame) + len(self.rejected)

    def raw_values(self, line: int) -> tuple[str, ...]:
        """Return the raw fields of 1-based `line` as they stand in the file."""
        if isinstance(self._raw_lines, bytes):
            # Split only when a raw row is asked for: a clean million-row file never needs its lines.
            self._raw_lines = split_lines(self._raw_lines.decode("utf-8", errors="backslashreplace"))
        text = self._raw_lines[line - 1] if 0 < line <= len(self._raw_lines) else ""
        return tuple(next(csv.reader([text]), []))


def symbol_from_path(path: Path) -> str:
    """Return the symbol a file name implies: its stem up to the first underscore, upper-cased."""
    return path.stem.split("_", 1)[0].upper()


def read_bars(path: str | Path, *, symbol: str | None = None, timezone: str = "UTC") -> ParsedFile:
    """Read the CSV or Parquet bar file at `path`.

    Parameters
    ----------
    path
        A ``.csv`` (UTF-8 text) or ``.parquet`` file.
    symbol
        The symbol of every row of a daily or intraday file; default: from the file name.
    timezone
        The IANA zone of times written without an offset.

    Raises
    ------
    FileRejected
        If the file is missing, empty, of unknown type, or its header matches no layout.
    """
    path = Path(path)
    source = str(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise FileRejected(source, f"cannot be read: {error.strerror or error}") from error
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        header, rows, lines = _parquet_rows(source, path)
    elif suffix in (".csv", ".txt"):
        fast = _arrow_rows(content)
        header, rows, lines = fast if fast is not None else _csv_rows(source, content)  # type: ignore[assignment]
    else:
        raise FileRejected(source, f"file type {suffix or '(none)'!r} is not .csv or .parquet")
    if symbol is not None and not _SYMBOL.fullmatch(symbol):
        raise FileRejected(source, f"symbol {symbol!r} must be 1-32 letters, digits or . ^ = -")
    layout, columns = _detect_layout(source, header, rows)
    if layout == "long" and symbol is not None:
        raise FileRejected(source, f"symbol {symbol!r} was given, but this long-format file names a symbol per row")
    default_symbol = symbol or symbol_from_path(path)
    if layout != "long" and not _SYMBOL.fullmatch(default_symbol):
        raise FileRejected(source, f"symbol {default_symbol!r} taken from the file name is invalid; pass one")

    rejected: list[RejectedRow] = []
    width = len(columns)
    table: list[Any]
    if isinstance(rows, _ArrowRows):
        # Every Arrow row has the header's width, so no layout widens it (see `_arrow_rows`).
        table = rows.columns
        kept_lines = np.arange(2, len(rows) + 2, dtype=np.int64)
    else:
        kept_rows: list[list[str]] = []
        kept: list[int] = []
        for line, row in rows:
            if len(row) != width:
                rejected.append(RejectedRow(line, f"field_count:expected_{width}_was_{len(row)}", tuple(row)))
            else:
                kept.append(line)
                kept_rows.append(row)
        matrix = np.empty((len(kept_rows), width), dtype=object)
        if kept_rows:
            matrix[:] = kept_rows
        table = [matrix[:, index] for index in range(width)]
        kept_lines = np.asarray(kept, dtype=np.int64)
    frame = _build_frame(columns, table, layout, default_symbol, timezone, source)
    frame["line"] = kept_lines
    return ParsedFile(
        source=source,
        source_digest=hashlib.sha256(content).hexdigest(),
        layout=layout,
        frame=frame,
        rejected=rejected,
        _raw_lines=lines,
    )


def _normalise(name: str) -> str:
    return "_".join(name.strip().strip("\ufeff").lower().split())


def split_lines(text: str) -> list[str]:
    """Split `text` at CSV line ends only (LF, CRLF, CR), unlike `str.splitlines`, which also splits at
    form feeds and Unicode separators that CSV treats as ordinary characters."""
    lines = text.split("\n") if "\r" not in text else _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _csv_rows(source: str, content: bytes) -> tuple[list[str], list[tuple[int, list[str]]], list[str]]:
    # Undecodable bytes stay visible as escapes in the row that holds them rather than failing the file.
    text = content.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    lines = split_lines(text)
    try:
        fields_by_line = list(csv.reader(lines, skipinitialspace=True))
    except csv.Error:
        fields_by_line = []
    if len(fields_by_line) != len(lines):
        # An unclosed quote made the reader join lines; every line is one row here, so parse each alone.
        fields_by_line = [_fields_of(line) for line in lines]
    widths = np.fromiter(map(len, fields_by_line), dtype=np.int64, count=len(fields_by_line))
    # A line is blank when its text is white space only (a line holding "" is a row of one empty field).
    blank = widths == 0
    for index in np.flatnonzero(widths == 1):
        blank[index] = not lines[index].strip()
    present = np.flatnonzero(~blank)
    if len(present) == 0:
        raise FileRejected(source, "is empty: no header and no rows")
    header = fields_by_line[present[0]]
    numbers = (present[1:] + 1).tolist()
    rows = list(zip(numbers, (fields_by_line[index] for index in present[1:].tolist()), strict=True))
    return [_normalise(name) for name in header], rows, lines


def _arrow_rows(content: bytes) -> tuple[list[str], _ArrowRows, bytes] | None:
    """Parse a well-formed CSV with pyarrow (several times faster), or return None to use `_csv_rows`.

    The fast path is taken only when it is provably line-exact: UTF-8 text without NUL, blank lines or
    line breaks other than LF and CRLF, every row as wide as the header, and one row per line. Anything
    else goes to the exact, slower parser, which accounts for every line of any input.
    """
    import pyarrow as pa
    import pyarrow.csv as arrow_csv

    # Everything is checked on the bytes: the fast path never holds a decoded copy of the file, and
    # pyarrow itself refuses text that is not UTF-8.
    if b"\x00" in content or b"\r" in content.replace(b"\r\n", b""):
        return None
    if not content.isascii():
        # pyarrow would meet undecodable bytes inside its invalid-row callback, where errors are lost.
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            return None
    normalised = content.replace(b"\r\n", b"\n") if b"\r" in content else content
    header_bytes = normalised.split(b"\n", 1)[0]
    if not header_bytes.strip() or b"\n\n" in normalised:
        return None
    line_count = normalised.count(b"\n") + (0 if normalised.endswith(b"\n") else 1)
    invalid: list[object] = []

    def note_invalid(row: object) -> str:
        invalid.append(row)
        return "skip"

    # The content is valid UTF-8 and LF is never part of a multi-byte sequence, so the header decodes.
    header = next(csv.reader([header_bytes.decode("utf-8")]))
    try:
        table = arrow_csv.read_csv(
            pa.py_buffer(content),
            read_options=arrow_csv.ReadOptions(column_names=[f"c{i}" for i in range(len(header))], skip_rows=1),
            parse_options=arrow_csv.ParseOptions(invalid_row_handler=note_invalid, ignore_empty_lines=False),
            convert_options=arrow_csv.ConvertOptions(
                column_types={f"c{i}": pa.string() for i in range(len(header))},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, ValueError):
        return None
    if invalid or table.num_rows != line_count - 1:
        return None
    columns = [table.column(i).combine_chunks() for i in range(table.num_columns)]
    return [_normalise(name) for name in header], _ArrowRows(columns), content


class _ArrowRows:
    """Rows parsed column-wise by pyarrow, all of the header's width, lines 2, 3, ... in order."""

    def __init__(self, columns: list[Any]) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0


def _fields_of(line: str) -> list[str]:
    try:
        return next(csv.reader([line], skipinitialspace=True), [])
    except csv.Error:
        return [line]


def _parquet_rows(source: str, path: Path) -> tuple[list[str], list[tuple[int, list[str]]], list[str]]:
    import pyarrow.parquet as parquet

    try:
        table = parquet.read_table(path)
    except Exception as error:  # pyarrow raises several unrelated types for a corrupt file
        raise FileRejected(source, f"is not a readable Parquet file: {error}") from error
    frame = table.to_pandas()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    values = frame.astype(str).where(frame.notna(), "").to_numpy().tolist()
    header = [_normalise(str(name)) for name in frame.columns]
    rows = [(index + 1, row) for index, row in enumerate(values)]
    lines = [",".join(row) for row in values]
    return header, rows, lines


def _detect_layout(
    source: str, header: list[str], rows: list[tuple[int, list[str]]] | _ArrowRows
) -> tuple[str, list[str]]:
    names = set(header)
    if set(LONG_COLUMNS) <= names:
        return "long", header
    if set(DATED_COLUMNS) <= names:
        if "time" in names:
            return "intraday", header
        if isinstance(rows, _ArrowRows):
            sample = [list(values) for values in zip(*(column[:_SNIFF_ROWS] for column in rows.columns), strict=True)]
        else:
            sample = [row for _, row in rows[:_SNIFF_ROWS]]
        shifted = [row for row in sample if len(row) == len(header) + 1 and _CLOCK_TIME.fullmatch(row[1])]
        if sample and len(shifted) * 2 > len(sample):
            date_at = header.index("date")
            return "intraday", [*header[: date_at + 1], "time", *header[date_at + 1 :]]
        return "daily", header
    raise FileRejected(
        source,
        f"header {', '.join(header)!s} matches no known layout; expected Date, Open, High, Low, Close, "
        "Volume (daily), with Time (intraday), or timestamp, symbol, open, high, low, close, volume (long)",
    )


def _build_frame(
    columns: list[str], table: list[Any], layout: str, symbol: str, timezone: str, source: str
) -> pd.DataFrame:
    """Build the bar frame from `table`, one column (object array or Arrow string array) per header name."""
    position = {name: index for index, name in enumerate(columns)}
    count = len(table[0]) if table else 0

    def column(name: str) -> Any:
        return table[position[name]]

    if layout == "long":
        stamps = column("timestamp")
        symbols = column("symbol")
    else:
        stamps = _strings(column("date"))
        if layout == "intraday":
            stamps = stamps + " " + _strings(column("time"))
        symbols = np.full(count, symbol, dtype=object)
    frame = pd.DataFrame({"symbol": _strings(symbols)})
    frame["timestamp"] = _parse_timestamps(stamps, timezone, source)
    for name in (*PRICE_COLUMNS, "volume"):
        frame[name] = _parse_numbers(column(name))
    frame["spread"] = _parse_numbers(column("spread")) if "spread" in position else np.nan
    return frame.loc[:, list(BAR_COLUMNS)]


def _parse_numbers(values: Any) -> np.ndarray:
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
        numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(np.float64, copy=True)
    # Infinity is no price: treat it as missing so the not-null check quarantines the row.
    numbers[~np.isfinite(numbers)] = np.nan
    return numbers


def _strings(values: Any) -> pd.Series:
    """Return `values` (an object array or an Arrow string column) as stripped pandas strings."""
    if isinstance(values, pd.Series):
        series = values
    elif isinstance(values, np.ndarray):
        series = pd.Series(values, dtype=object)
    else:
        series = values.to_pandas()
    return series.astype(str).str.strip().reset_index(drop=True)


def _parse_timestamps(values: Any, timezone: str, source: str) -> pd.Series:
    strings = _strings(values)
    with_offset = strings.str.contains(_OFFSET, regex=True)
    parsed = pd.Series(pd.NaT, index=strings.index, dtype=TIMESTAMP_DTYPE)
    if with_offset.any():
        aware = pd.to_datetime(strings[with_offset], format="ISO8601", errors="coerce", utc=True)
        parsed[with_offset] = aware.astype(TIMESTAMP_DTYPE)
    if not with_offset.all():
        naive = pd.to_datetime(strings[~with_offset], format="ISO8601", errors="coerce")
        try:
            local = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        except Exception as error:  # an unknown zone name is the user's error, not the file's
            raise FileRejected(source, f"time zone {timezone!r} is unknown: {error}") from error
        parsed[~with_offset] = local.dt.tz_convert("UTC").astype(TIMESTAMP_DTYPE)
    return parsed
