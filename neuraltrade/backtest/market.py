"""Bars of one or many symbols on one common timeline, the way the engine and the paper broker read them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np
import pandas as pd

from neuraltrade.errors import ValidationError
from neuraltrade.market.history import PriceHistory
from neuraltrade.timestamps import from_microseconds


@dataclass(frozen=True, eq=False)
class MarketData:
    """Histories of several symbols aligned on the union of their timestamps.

    `bar_index[symbol][k]` is the timeline position of the symbol's k-th bar. The 2-D price arrays
    (symbols x timeline) hold NaN where a symbol has no bar; `valuation` holds each symbol's last known
    close (NaN before its first bar), which is what open positions are worth between its bars.
    """

    symbols: tuple[str, ...]
    timestamps: np.ndarray
    histories: Mapping[str, PriceHistory]
    bar_index: Mapping[str, np.ndarray]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    valuation: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamps)

    @cached_property
    def datetimes(self) -> list[datetime]:
        """The timeline as aware UTC datetimes."""
        return [from_microseconds(micros) for micros in self.timestamps.tolist()]

    @cached_property
    def lists(self) -> dict[str, list[list[float]]]:
        """The price arrays as nested Python lists (per symbol), which a bar-by-bar loop reads fastest."""
        return {name: getattr(self, name).tolist() for name in ("open", "high", "low", "close", "volume", "valuation")}

    @classmethod
    def from_histories(cls, histories: Sequence[PriceHistory]) -> MarketData:
        """Align `histories` (one per symbol, at least one bar each) on the union of their timestamps."""
        if not histories:
            raise ValidationError("a backtest needs the history of at least one symbol")
        symbols = tuple(history.symbol for history in histories)
        if len(set(symbols)) != len(symbols):
            raise ValidationError(f"each symbol may appear once, was given {list(symbols)}")
        for history in histories:
            if len(history) == 0:
                raise ValidationError(f"symbol {history.symbol} has no bars")
        if len(histories) == 1:
            timestamps = histories[0].timestamps
        else:
            timestamps = np.unique(np.concatenate([history.timestamps for history in histories]))
        shape = (len(symbols), len(timestamps))
        arrays = {name: np.full(shape, np.nan) for name in ("open", "high", "low", "close", "volume")}
        bar_index: dict[str, np.ndarray] = {}
        for row, history in enumerate(histories):
            positions = np.searchsorted(timestamps, history.timestamps)
            bar_index[history.symbol] = positions
            for name, array in arrays.items():
                array[row, positions] = getattr(history, name)
        valuation = pd.DataFrame(arrays["close"].T).ffill().to_numpy().T.copy()
        return cls(
            symbols=symbols,
            timestamps=timestamps,
            histories={history.symbol: history for history in histories},
            bar_index=bar_index,
            valuation=valuation,
            **arrays,
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, symbols: Sequence[str] | None = None) -> MarketData:
        """Build market data from a bar frame (see `neuraltrade.market.bars`), optionally only some symbols."""
        chosen = sorted(frame["symbol"].unique()) if symbols is None else list(symbols)
        missing = sorted(set(chosen) - set(frame["symbol"].unique()))
        if missing:
            raise ValidationError(
                f"the bars hold no symbol {missing[0]!r}; they hold {sorted(frame['symbol'].unique())}"
            )
        return cls.from_histories([PriceHistory.from_frame(frame, symbol) for symbol in chosen])
