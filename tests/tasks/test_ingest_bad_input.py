"""Bad input to file ingestion (issue 14, point 7): any bytes, under any bar file name, read with any time
zone, date format and symbol, are stored, quarantined row by row or refused whole with one line; and every
bar and quarantined row stored before is still there, unchanged.

One database for the module: the real NVDA sample is stored first, then each example ingests its own file
(its own symbol, so that no example may legitimately correct another's bars) and checks what was there.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models.engine import dispose_engines, session_scope
from models.migrations import upgrade_database
from models.tables import BarRecord, QuarantinedRow
from neuraltrade.errors import ConfigError, FileRejected, NeuralTradeError
from tasks.ingest import ingest_file
from tests.bad_input import assert_refusal, hostile_texts
from tests.conftest import DAILY_DATA

HEADER = b"Date,Open,High,Low,Close,Adj Close,Volume\n"
ROW = b"2020-01-02,1.0,2.0,0.5,1.5,1.4,100\n"
#: The symbols a file may give: none (the file's name decides), or text that is no symbol.
SYMBOL = re.compile(r"[A-Za-z0-9.^=\-]{1,32}")
EXAMPLES = itertools.count()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A database holding the first 120 NVDA bars and the rows a damaged file had quarantined."""
    folder = tmp_path_factory.mktemp("ingest-bad-input")
    url = f"sqlite:///{folder}/t.db"
    upgrade_database(url)
    nvda = folder / "NVDA.csv"
    nvda.write_text("".join((DAILY_DATA / "NVDA.csv").read_text().splitlines(keepends=True)[:121]))
    damaged = folder / "DAMAGED.csv"
    damaged.write_bytes(HEADER + ROW + b"2020-01-03,x,2,1,1,1,5\n2020-01-06,1,2\n")
    assert ingest_file.fn(url, str(nvda))["rows_stored"] == 120
    assert ingest_file.fn(url, str(damaged))["rows_quarantined"] == 2
    yield url, folder
    dispose_engines()


def _snapshot(url: str) -> tuple[set[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """Every bar as stored, and every quarantined row by content (a row quarantined again from the same
    bytes in another file names that file as its source, so the source is left out)."""
    with session_scope(url) as session:
        bars = {tuple(row) for row in session.execute(select(BarRecord.__table__))}
        table = QuarantinedRow.__table__
        quarantined = Counter(
            (row.source_digest, row.line, tuple(row.failed_checks), tuple(row.raw_values))
            for row in session.execute(select(table))
        )
    return bars, quarantined


#: Mostly a daily header with good and damaged rows, so that most examples reach the checks and the database.
file_bodies = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=120).map(lambda body: HEADER + ROW + body),
    st.binary(max_size=120).map(lambda body: HEADER + body + b"\n" + ROW),
    st.lists(st.binary(max_size=40), max_size=6).map(lambda rows: HEADER + ROW + b"\n".join(rows)),
    st.lists(st.sampled_from([ROW, b"2020-01-03,1,2,0.5,1.5,1.4,-7\n", b"x,\xff\n"]), max_size=5).map(
        lambda rows: HEADER + b"".join(rows)
    ),
    st.binary(max_size=60).map(lambda body: b"PAR1" + body + b"PAR1"),
)
bad_time_zones = st.sampled_from(["", "+05:00", "../../etc/passwd", "Mars/Olympus"]) | hostile_texts
bad_date_formats = st.sampled_from(["%Y%Y", "%", "%Q", "%z", "%s"]) | hostile_texts.map(lambda text: "%" + text)
bad_symbols = hostile_texts.filter(lambda text: not SYMBOL.fullmatch(text))


@st.composite
def ingestions(draw: st.DrawFn) -> dict[str, Any]:
    """A file and the options it is ingested with, at most one option bad, so that most files reach the
    checks and the database."""
    bad = draw(st.sampled_from(["nothing", "suffix", "timezone", "date_format", "symbol"]))
    return {
        "body": draw(file_bodies),
        "suffix": draw(st.sampled_from([".parquet", ".json", ""])) if bad == "suffix" else ".csv",
        "timezone": draw(bad_time_zones) if bad == "timezone" else draw(st.sampled_from(["UTC", "Europe/London"])),
        "date_format": draw(bad_date_formats) if bad == "date_format" else draw(st.sampled_from([None, "%Y-%m-%d"])),
        "symbol": draw(bad_symbols) if bad == "symbol" else None,
        "adjusted": draw(st.booleans()),
    }


@settings(
    max_examples=25,
    deadline=None,
    # Each example that reaches the checks pays Great Expectations' validation: a failure is shown as
    # found, unshrunk.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(ingestion=ingestions())
@example(
    ingestion={
        "body": HEADER + ROW,
        "suffix": ".csv",
        "timezone": "UTC",
        "date_format": "%Y%Y",
        "symbol": None,
        "adjusted": False,
    }
)
@example(
    ingestion={
        "body": HEADER + ROW + b"\xff,\x00,'; DROP TABLE bars; --\n2020-01-03,1,1,1,1,1,-5\n",
        "suffix": ".csv",
        "timezone": "UTC",
        "date_format": None,
        "symbol": None,
        "adjusted": True,
    }
)
def test_any_file_is_stored_quarantined_or_refused_in_one_line_and_loses_nothing_stored_before(
    stored: tuple[str, Path], ingestion: dict[str, Any]
) -> None:
    url, folder = stored
    body, timezone, date_format, symbol = (ingestion[name] for name in ("body", "timezone", "date_format", "symbol"))
    path = folder / f"ACME{next(EXAMPLES)}{ingestion['suffix']}"
    path.write_bytes(body)
    bars_before, quarantined_before = _snapshot(url)
    try:
        report = ingest_file.fn(
            url, str(path), symbol=symbol, timezone=timezone, date_format=date_format, adjusted=ingestion["adjusted"]
        )
    except NeuralTradeError as error:
        event(f"refused: {type(error).__name__}")
        assert isinstance(error, FileRejected | ConfigError)
        message = assert_refusal(error, embedded=[str(path), timezone, date_format or "", symbol or ""])
        assert str(path) in message or repr(date_format) in message
        assert _snapshot(url) == (bars_before, quarantined_before)
    else:
        event("stored" if report["rows_stored"] else "failed" if report["failure"] else "read")
        assert report["rows_read"] == report["rows_stored"] + report["rows_quarantined"]
        if report["failure"] is not None:  # the one line the command prints (the format as given, escaped)
            assert_refusal(FileRejected(str(path), report["failure"]), embedded=[date_format or ""])
        bars_after, quarantined_after = _snapshot(url)
        assert bars_before <= bars_after
        assert len(bars_after) - len(bars_before) <= report["rows_stored"]
        assert not quarantined_before - quarantined_after
    path.unlink()
