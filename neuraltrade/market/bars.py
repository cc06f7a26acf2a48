"""The columnar form of market bars that ingestion, quality checks, generation and embedding share.

A *bar frame* is a pandas DataFrame with exactly the columns of `BAR_COLUMNS`, in that order:
``symbol`` (str), ``timestamp`` (``datetime64[us, UTC]``), ``open``, ``high``, ``low``, ``close``,
``volume`` and ``spread`` (float64; ``spread`` is the relative bid-ask spread, NaN where the source has
none). Rows of one symbol are in increasing timestamp order once a frame has passed its checks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BAR_COLUMNS: tuple[str, ...] = ("symbol", "timestamp", "open", "high", "low", "close", "volume", "spread")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
TIMESTAMP_DTYPE = "datetime64[us, UTC]"


def timestamps_to_microseconds(timestamps: pd.Series) -> np.ndarray:
    """Return a bar frame's ``timestamp`` column as int64 microseconds since the Unix epoch."""
    return timestamps.astype(TIMESTAMP_DTYPE).astype("int64").to_numpy()


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
