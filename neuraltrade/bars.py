"""The columnar form of market bars that ingestion, quality checks, generation and embedding share.

A *bar frame* is a pandas DataFrame with exactly the columns of `BAR_COLUMNS`, in that order:
``symbol`` (str), ``timestamp`` (``datetime64[us, UTC]``), ``open``, ``high``, ``low``, ``close``,
``volume`` and ``spread`` (float64; ``spread`` is the relative bid-ask spread, NaN where the source has
none). Rows of one symbol are in increasing timestamp order once a frame has passed its checks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from neuraltrade.types import Bar

BAR_COLUMNS: tuple[str, ...] = ("symbol", "timestamp", "open", "high", "low", "close", "volume", "spread")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
TIMESTAMP_DTYPE = "datetime64[us, UTC]"


def timestamps_to_microseconds(timestamps: pd.Series) -> np.ndarray:
    """Return a bar frame's ``timestamp`` column as int64 microseconds since the Unix epoch."""
    return timestamps.astype(TIMESTAMP_DTYPE).astype("int64").to_numpy()


def empty_bar_frame() -> pd.DataFrame:
    """Return a bar frame with no rows and the right dtypes."""
    return conform_bar_frame(pd.DataFrame({column: [] for column in BAR_COLUMNS}))


def conform_bar_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` with the bar-frame columns, order and dtypes (a missing spread becomes NaN)."""
    frame = frame.copy()
    if "spread" not in frame.columns:
        frame["spread"] = np.nan
    frame["symbol"] = frame["symbol"].astype(str)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype(TIMESTAMP_DTYPE)
    for column in (*PRICE_COLUMNS, "volume", "spread"):
        frame[column] = frame[column].astype("float64")
    return frame.loc[:, list(BAR_COLUMNS)].reset_index(drop=True)


def frame_to_bars(frame: pd.DataFrame) -> list[Bar]:
    """Return the rows of a bar frame as `Bar` values."""
    bars = []
    for row in frame.itertuples(index=False):
        spread = None if pd.isna(row.spread) else float(row.spread)
        bars.append(
            Bar(
                symbol=str(row.symbol),
                timestamp=row.timestamp.to_pydatetime(),
                open=float(row.open),
                high=float(row.high),
                low=float(row.low),
                close=float(row.close),
                volume=float(row.volume),
                spread=spread,
            )
        )
    return bars


def bars_to_frame(bars: Iterable[Bar]) -> pd.DataFrame:
    """Return `bars` as a bar frame."""
    rows = [
        {
            "symbol": bar.symbol,
            "timestamp": bar.timestamp,
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": bar.volume,
            "spread": np.nan if bar.spread is None else bar.spread,
        }
        for bar in bars
    ]
    if not rows:
        return empty_bar_frame()
    return conform_bar_frame(pd.DataFrame(rows))
