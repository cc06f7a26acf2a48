"""One symbol's bar history as arrays: what strategies, the engine and the sizers read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neuraltrade.errors import ValidationError
from neuraltrade.market.bars import timestamps_to_microseconds
from neuraltrade.types import Observation

_PRICE_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, eq=False)
class PriceHistory:
    """One symbol's bars in time order, as float64 arrays sharing one int64 microsecond time axis."""

    symbol: str
    timestamps: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.timestamps)
        for name in _PRICE_FIELDS:
            if len(getattr(self, name)) != count:
                raise ValidationError(
                    f"{self.symbol} history: {name} has {len(getattr(self, name))} values for {count} timestamps"
                )
        if count > 1 and not bool(np.all(np.diff(self.timestamps) > 0)):
            raise ValidationError(f"{self.symbol} history: timestamps are not strictly increasing")

    def __len__(self) -> int:
        return len(self.timestamps)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, symbol: str | None = None) -> PriceHistory:
        """Build the history of one symbol from a bar frame (see `neuraltrade.market.bars`)."""
        if symbol is not None:
            frame = frame.loc[frame["symbol"] == symbol]
        symbols = frame["symbol"].unique()
        if len(symbols) != 1:
            raise ValidationError(f"a price history holds one symbol, the frame holds {sorted(map(str, symbols))}")
        frame = frame.sort_values("timestamp")
        arrays = {name: frame[name].to_numpy(dtype="float64", copy=True) for name in _PRICE_FIELDS}
        return cls(symbol=str(symbols[0]), timestamps=timestamps_to_microseconds(frame["timestamp"]), **arrays)

    def head(self, count: int) -> PriceHistory:
        """Return the first `count` bars (views, no copy): what the strategy knew at bar ``count - 1``."""
        return PriceHistory(
            symbol=self.symbol,
            timestamps=self.timestamps[:count],
            **{name: getattr(self, name)[:count] for name in _PRICE_FIELDS},
        )

    def observation_id(self, bar: int) -> uuid.UUID:
        """Return the stable id of the observation (market state) of bar `bar`."""
        return Observation.ids_for(self.symbol, [int(self.timestamps[bar])])[0]
