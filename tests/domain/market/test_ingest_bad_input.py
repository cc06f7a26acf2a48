"""Bad input to the bar file reader (issue 14, point 7): any bytes under any name, read with any time zone,
date format and symbol, become a bar frame that accounts for every line, or are refused whole with one
line naming the file or the option at fault. (Damaged lines under a valid header: test_ingest.py.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from neuraltrade.errors import ConfigError, FileRejected, NeuralTradeError
from neuraltrade.market.ingest import read_bars
from tests.bad_input import assert_refusal, hostile_texts

HEADER = b"Date,Open,High,Low,Close,Adj Close,Volume\n"
ROW = b"2020-01-02,1.0,2.0,0.5,1.5,1.4,100\n"

contents = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda body: HEADER + ROW + body),
    st.binary(max_size=100).map(lambda body: b"PAR1" + body + b"PAR1"),
)
names = st.sampled_from(["ACME.csv", "acme_2020.txt", "A.B.CSV", "x.parquet", "bars.json", "noext", "-.csv", "ÄÖ.csv"])
time_zones = st.one_of(
    st.sampled_from(["UTC", "America/New_York", "", "+05:00", "../../etc/passwd", "Etc/GMT+3", "posix/UTC"]),
    hostile_texts,
)
date_formats = st.one_of(
    st.none(),
    st.sampled_from(["%d/%m/%Y", "%Y-%m-%d %H:%M:%S%z", "%Y%Y", "%", "%Q", "%s", "%f"]),
    hostile_texts.map(lambda text: "%" + text),
)
symbols = st.one_of(st.none(), hostile_texts, st.sampled_from(["NVDA", "a" * 33, "^GSPC", "BRK.B"]))


@settings(max_examples=150, deadline=None)
@given(
    content=contents,
    name=names,
    timezone=time_zones,
    date_format=date_formats,
    symbol=symbols,
    adjusted=st.booleans(),
)
@example(content=HEADER + ROW, name="ACME.csv", timezone="UTC", date_format="%Y%Y", symbol=None, adjusted=False)
@example(content=HEADER + ROW, name="ACME.csv", timezone="", date_format=None, symbol=None, adjusted=False)
@example(content=b"PAR1\x00PAR1", name="x.parquet", timezone="UTC", date_format=None, symbol=None, adjusted=False)
def test_any_file_and_options_read_every_line_or_are_refused_in_one_line_naming_the_culprit(
    content: bytes, name: str, timezone: str, date_format: str | None, symbol: str | None, adjusted: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        try:
            parsed = read_bars(path, symbol=symbol, timezone=timezone, date_format=date_format, adjusted=adjusted)
        except NeuralTradeError as error:
            assert isinstance(error, FileRejected | ConfigError)
            message = assert_refusal(error, embedded=[str(path), timezone, date_format or "", symbol or ""])
            if isinstance(error, ConfigError):
                assert repr(date_format) in message
            else:
                assert message.startswith(f"{path}: ")
            return
    assert parsed.rows_read == len(parsed.frame) + len(parsed.rejected)
    assert set(parsed.frame["line"]).isdisjoint(row.line for row in parsed.rejected)
    if parsed.timestamp_problem is not None:
        assert "\n" not in parsed.timestamp_problem
