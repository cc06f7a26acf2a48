"""Reading bar files: the file's format, then row-by-row parsing into a bar frame, losing nothing.

The delimiter (``, ; TAB |``) and what each header name means are recognised by
`neuraltrade.market.bar_formats`; three layouts follow from the header:

- *daily* or *intraday* by their timestamps: ``Date, Open, High, Low, Close, Volume[, Adj Close]``
  (Yahoo), pandas' ``to_csv`` output (an unnamed first column of timestamps), ``Gmt time, ...``
  (Dukascopy); the symbol comes from the file name (``NVDA.csv`` is NVDA; ``INDEX_2006-01-02_1min.csv``
  is INDEX) unless one is given;
- *intraday* with ``Date, Time, Open, High, Low, Close, Volume[, ...]``; also the common broken form whose
  header omits ``Time`` although every row carries it, recognised when rows have one field more than
  the header and their second field is a clock time;
- *long*: ``timestamp, symbol, open, high, low, close, volume[, spread]`` in any order.

Every non-blank line after the header is one row read. A row either becomes a row of the bar frame
(whose quality is checked later) or a `RejectedRow` naming why, so rows read = frame rows + rejected
rows always holds. Times are ISO 8601 unless a `date_format` is given; times without a zone are read in
the file's `timezone` (UTC by default). ``Adj Close`` is ignored unless `adjusted` prices are asked for.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuraltrade.errors import FileRejected
from neuraltrade.market.bar_formats import (
    SNIFF_ROWS,
    BarFormat,
    check_date_format,
    date_only,
    iso_dates,
    parse_numbers,
    parse_timestamps,
    recognise_header,
    sniff_delimiter,
    split_fields,
    strings,
    unreadable_timestamps,
)
from neuraltrade.market.bars import BAR_COLUMNS, PRICE_COLUMNS

#: Suffixes of the files a directory given to ingestion contributes, compared ignoring case.
BAR_SUFFIXES = (".csv", ".txt", ".parquet")
_SYMBOL = re.compile(r"[A-Za-z0-9.^=\-]{1,32}")
_LINE_BREAK = re.compile("\r\n|\r|\n")
#: Bytes read to recognise the delimiter: the header and `SNIFF_ROWS` rows of any sane bar file.
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class RejectedRow:
    """A row that could not become a bar: its line, the reason and its raw fields."""

    line: int
    reason: str
    raw_values: tuple[str, ...]


@dataclass
class ParsedFile:
    """A file read into a bar frame (plus a ``line`` column) and the rows that could not be read.

    `timestamp_problem` is set when the frame has rows but none of their timestamps could be read: the
    one-line reason, naming the first raw value and a ``--date-format`` to try.
    """

    source: str
    source_digest: str
    layout: str
    frame: pd.DataFrame
    rejected: list[RejectedRow] = field(default_factory=list)
    delimiter: str = ","
    timestamp_problem: str | None = None
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
        return tuple(split_fields(text, self.delimiter)) if text else ()


def symbol_from_path(path: Path) -> str:
    """Return the symbol a file name implies: its stem up to the first underscore, upper-cased."""
    return path.stem.split("_", 1)[0].upper()


def bar_files(path: str | Path) -> list[Path]:
    """Return the bar files `path` names: itself if it is no directory, else every bar file under it.

    A directory contributes every ``.csv``, ``.txt`` and ``.parquet`` file below it, at any depth, in
    sorted order, skipping hidden files and hidden directories (a name starting with ``.``).

    Raises
    ------
    FileRejected
        If `path` is a directory holding no bar file.
    """
    path = Path(path)
    if not path.is_dir():
        return [path]
    found = sorted(
        candidate
        for candidate in path.rglob("*")
        if candidate.suffix.lower() in BAR_SUFFIXES
        and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
        and candidate.is_file()
    )
    if not found:
        raise FileRejected(str(path), f"is a directory holding no bar file ({', '.join(BAR_SUFFIXES)})")
    return found


def expand_bar_paths(paths: Iterable[str | Path]) -> list[str]:
    """Return the bar files of `paths` in order, each directory expanded by `bar_files`, each file once.

    Raises
    ------
    FileRejected
        If a directory of `paths` holds no bar file.
    """
    expanded = [str(file) for path in paths for file in bar_files(path)]
    return list(dict.fromkeys(expanded))


def file_failure(
    *, rows_read: int, rows_stored: int, failed_checks: Mapping[str, int], timestamp_problem: str | None = None
) -> str | None:
    """Return why an ingested file failed, on one line, or None if it stored rows.

    A file fails when it holds no data row, or when every row it holds was quarantined; a file none of
    whose timestamps could be read says so (`ParsedFile.timestamp_problem`).
    """
    if rows_read == 0:
        return "holds a header but no data row"
    if rows_stored > 0:
        return None
    if timestamp_problem is not None:
        return timestamp_problem
    checks = ", ".join(f"{name} x{count:,}" for name, count in failed_checks.items())
    return f"every row was quarantined ({rows_read:,} rows; failing {checks})"


def read_bars(
    path: str | Path,
    *,
    symbol: str | None = None,
    timezone: str = "UTC",
    date_format: str | None = None,
    adjusted: bool = False,
) -> ParsedFile:
    """Read the CSV or Parquet bar file at `path`.

    Parameters
    ----------
    path
        A ``.csv`` or ``.txt`` (UTF-8 text) or ``.parquet`` file.
    symbol
        The symbol of every row of a daily or intraday file; default: from the file name.
    timezone
        The IANA zone of times written without an offset.
    date_format
        The strftime format of the timestamps (``%d/%m/%Y``); default ISO 8601. With a separate Time
        column, a format without clock directives reads the date only. Parquet datetime columns need none.
    adjusted
        Scale open, high, low and close of each row by its ``Adj Close / Close`` (so close becomes
        Adj Close), for prices adjusted for splits and dividends; volume is kept. Needs an Adj Close column.

    Raises
    ------
    FileRejected
        If the file is missing, empty, of unknown type, or its header matches no layout.
    ConfigError
        If `date_format` is not a usable strftime format.
    """
    check_date_format(date_format)
    path = Path(path)
    source = str(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise FileRejected(source, f"cannot be read: {error.strerror or error}") from error
    suffix = path.suffix.lower()
    delimiter = ","
    if suffix == ".parquet":
        header, rows, lines, native_times = _parquet_rows(source, path)
    elif suffix in (".csv", ".txt"):
        delimiter = sniff_delimiter(_leading_lines(content))
        fast = _arrow_rows(content, delimiter)
        header, rows, lines = fast if fast is not None else _csv_rows(source, content, delimiter)  # type: ignore[assignment]
        native_times = frozenset()
    else:
        raise FileRejected(source, f"file type {suffix or '(none)'!r} is not .csv or .parquet")
    if symbol is not None and not _SYMBOL.fullmatch(symbol):
        raise FileRejected(source, f"symbol {symbol!r} must be 1-32 letters, digits or . ^ = -")
    bar_format = recognise_header(source, header, _sample(rows))
    if bar_format.layout == "long" and symbol is not None:
        raise FileRejected(source, f"symbol {symbol!r} was given, but this long-format file names a symbol per row")
    default_symbol = symbol or symbol_from_path(path)
    if bar_format.layout != "long" and not _SYMBOL.fullmatch(default_symbol):
        raise FileRejected(source, f"symbol {default_symbol!r} taken from the file name is invalid; pass one")
    if adjusted and bar_format.position("adj_close") is None:
        raise FileRejected(source, "adjusted prices were asked for, but the header has no Adj Close column")
    stamp_at = bar_format.position("timestamp")
    if stamp_at is not None and header[stamp_at] in native_times:
        date_format = None  # a Parquet datetime column holds times, not text in the user's format

    rejected: list[RejectedRow] = []
    width = len(bar_format.columns)
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
    frame = _build_frame(
        bar_format,
        table,
        symbol=default_symbol,
        timezone=timezone,
        source=source,
        date_format=date_format,
        adjusted=adjusted,
        delimiter=delimiter,
    )
    frame["line"] = kept_lines
    problem = None
    if len(frame) and frame["timestamp"].isna().all():
        stamps = _raw_stamps(bar_format, table)
        problem = unreadable_timestamps(int(kept_lines[0]), stamps[0], date_format, stamps)
    return ParsedFile(
        source=source,
        source_digest=hashlib.sha256(content).hexdigest(),
        layout=bar_format.layout,
        frame=frame,
        rejected=rejected,
        delimiter=delimiter,
        timestamp_problem=problem,
        _raw_lines=lines,
    )


def split_lines(text: str) -> list[str]:
    """Split `text` at CSV line ends only (LF, CRLF, CR), unlike `str.splitlines`, which also splits at
    form feeds and Unicode separators that CSV treats as ordinary characters."""
    lines = text.split("\n") if "\r" not in text else _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _leading_lines(content: bytes) -> list[str]:
    """The header and the first rows of a text file, blank lines left out: what the delimiter is sniffed from."""
    text = content[:_SNIFF_BYTES].decode("utf-8", errors="backslashreplace")
    present = [line for line in split_lines(text) if line.strip()]
    return present[: SNIFF_ROWS + 1]


def _csv_rows(source: str, content: bytes, delimiter: str) -> tuple[list[str], list[tuple[int, list[str]]], list[str]]:
    # Undecodable bytes stay visible as escapes in the row that holds them rather than failing the file.
    text = content.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    lines = split_lines(text)
    try:
        fields_by_line = list(csv.reader(lines, delimiter=delimiter, skipinitialspace=True))
    except csv.Error:
        fields_by_line = []
    if len(fields_by_line) != len(lines):
        # An unclosed quote made the reader join lines; every line is one row here, so parse each alone.
        fields_by_line = [split_fields(line, delimiter) for line in lines]
    widths = np.fromiter(map(len, fields_by_line), dtype=np.int64, count=len(fields_by_line))
    # A line is blank when its text is white space only (a line holding "" is a row of one empty field);
    # a tab-separated blank line splits into empty fields, so every line may be one there.
    blank = widths == 0
    for index in np.flatnonzero(widths == 1 if delimiter != "\t" else widths >= 1):
        blank[index] = not lines[index].strip()
    present = np.flatnonzero(~blank)
    if len(present) == 0:
        raise FileRejected(source, "is empty: no header and no rows")
    header = fields_by_line[present[0]]
    numbers = (present[1:] + 1).tolist()
    rows = list(zip(numbers, (fields_by_line[index] for index in present[1:].tolist()), strict=True))
    return header, rows, lines


def _arrow_rows(content: bytes, delimiter: str) -> tuple[list[str], _ArrowRows, bytes] | None:
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
    header = split_fields(header_bytes.decode("utf-8"), delimiter)
    names = [f"c{i}" for i in range(len(header))]
    try:
        table = arrow_csv.read_csv(
            pa.py_buffer(content),
            read_options=arrow_csv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=arrow_csv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=note_invalid, ignore_empty_lines=False
            ),
            convert_options=arrow_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, ValueError):
        return None
    if invalid or table.num_rows != line_count - 1:
        return None
    columns = [table.column(i).combine_chunks() for i in range(table.num_columns)]
    return header, _ArrowRows(columns), content


class _ArrowRows:
    """Rows parsed column-wise by pyarrow, all of the header's width, lines 2, 3, ... in order."""

    def __init__(self, columns: list[Any]) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0


def _parquet_rows(source: str, path: Path) -> tuple[list[str], list[tuple[int, list[str]]], list[str], frozenset[str]]:
    """Rows of a Parquet file as text, and the names of its datetime columns (which need no date format)."""
    import pyarrow.parquet as parquet

    try:
        table = parquet.read_table(path)
    except Exception as error:  # pyarrow raises several unrelated types for a corrupt file
        raise FileRejected(source, f"is not a readable Parquet file: {error}") from error
    frame = table.to_pandas()
    if not isinstance(frame.index, pd.RangeIndex) and frame.index.nlevels == 1:
        # pandas stores a DatetimeIndex as the index; it is the timestamp column, as in `to_csv` output.
        frame = frame.reset_index(names=str(frame.index.name or ""))
    native = frozenset(str(name) for name in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[name]))
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    values = frame.astype(str).where(frame.notna(), "").to_numpy().tolist()
    header = [str(name) for name in frame.columns]
    rows = [(index + 1, row) for index, row in enumerate(values)]
    lines = [",".join(row) for row in values]
    return header, rows, lines, native


def _sample(rows: list[tuple[int, list[str]]] | _ArrowRows) -> list[list[str]]:
    """The fields of the first rows, from which the layout is told."""
    if isinstance(rows, _ArrowRows):
        return [
            list(values) for values in zip(*(column[:SNIFF_ROWS].to_pylist() for column in rows.columns), strict=True)
        ]
    return [row for _, row in rows[:SNIFF_ROWS]]


def _raw_stamps(bar_format: BarFormat, table: list[Any]) -> list[str]:
    """The first rows' timestamps as written (date and time joined by a space), for messages."""

    def first(name: str) -> list[str]:
        position = bar_format.position(name)
        return [] if position is None else strings(table[position][:SNIFF_ROWS]).tolist()

    if bar_format.position("timestamp") is not None:
        return first("timestamp")
    return [f"{date} {time}" for date, time in zip(first("date"), first("time"), strict=True)]


def _build_frame(
    bar_format: BarFormat,
    table: list[Any],
    *,
    symbol: str,
    timezone: str,
    source: str,
    date_format: str | None,
    adjusted: bool,
    delimiter: str,
) -> pd.DataFrame:
    """Build the bar frame from `table`, one column (object array or Arrow string array) per field."""
    count = len(table[0]) if table else 0

    def column(name: str) -> Any:
        position = bar_format.position(name)
        assert position is not None, name  # recognise_header guarantees every column read here
        return table[position]

    if bar_format.position("timestamp") is not None:
        stamps = column("timestamp")
    elif date_only(date_format):
        assert date_format is not None
        stamps = iso_dates(column("date"), date_format) + " " + strings(column("time"))
        date_format = None  # the dates are ISO now
    else:
        stamps = strings(column("date")) + " " + strings(column("time"))
    symbols = column("symbol") if bar_format.layout == "long" else np.full(count, symbol, dtype=object)
    frame = pd.DataFrame({"symbol": strings(symbols)})
    frame["timestamp"] = parse_timestamps(stamps, timezone, source, date_format)
    for name in (*PRICE_COLUMNS, "volume"):
        frame[name] = parse_numbers(column(name), delimiter=delimiter)
    frame["spread"] = (
        parse_numbers(column("spread"), delimiter=delimiter) if bar_format.position("spread") is not None else np.nan
    )
    if adjusted:
        adjusted_close = parse_numbers(column("adj_close"), delimiter=delimiter)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = adjusted_close / frame["close"].to_numpy()
        ratio[~np.isfinite(ratio)] = np.nan  # an unreadable or zero close leaves the row's prices missing
        for name in ("open", "high", "low"):
            frame[name] = frame[name].to_numpy() * ratio
        frame["close"] = np.where(np.isnan(ratio), np.nan, adjusted_close)
    return frame.loc[:, list(BAR_COLUMNS)]
