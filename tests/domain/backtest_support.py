"""Small markets and scripted strategies for the backtester's tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuraltrade.backtest import MarketData
from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig

DAY = 86_400_000_000
START = 1_704_153_600_000_000  # 2024-01-02T00:00:00Z


def history(
    symbol: str,
    opens: Sequence[float],
    highs: Sequence[float] | None = None,
    lows: Sequence[float] | None = None,
    closes: Sequence[float] | None = None,
    volumes: Sequence[float] | None = None,
    *,
    days: Sequence[int] | None = None,
) -> PriceHistory:
    """A history whose missing columns default to the opens (a flat bar) and a volume of 1e9."""
    count = len(opens)
    open_ = np.asarray(opens, dtype=float)
    close = np.asarray(closes if closes is not None else opens, dtype=float)
    high = np.asarray(highs, dtype=float) if highs is not None else np.maximum(open_, close)
    low = np.asarray(lows, dtype=float) if lows is not None else np.minimum(open_, close)
    volume = np.asarray(volumes if volumes is not None else [1e9] * count, dtype=float)
    offsets = np.asarray(days if days is not None else range(count), dtype=np.int64)
    return PriceHistory(
        symbol=symbol,
        timestamps=START + offsets * DAY,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
    )


def market(*histories: PriceHistory) -> MarketData:
    return MarketData.from_histories(list(histories))


@dataclass(frozen=True, kw_only=True)
class ScriptConfig(StrategyConfig):
    """Decisions given bar by bar: {symbol: {bar: target}}, plus optional per-bar order details."""

    script: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    details: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    valid_bars: int | None = None


class Scripted(Strategy):
    """Decides exactly what its script says (a strategy with no opinion of its own, for fill tests)."""

    name = "scripted"

    def signals(self, history: PriceHistory) -> SignalFrame:
        config = self.config
        assert isinstance(config, ScriptConfig)
        count = len(history)
        target = np.full(count, np.nan)
        for bar, value in config.script.get(history.symbol, {}).items():
            if int(bar) < count:
                target[int(bar)] = value
        extra: dict[str, Any] = {}
        for name, values in config.details.get(history.symbol, {}).items():
            array = np.full(count, np.nan)
            for bar, value in values.items():
                if int(bar) < count:
                    array[int(bar)] = value
            extra[name] = array
        confidence = np.where(np.isnan(target), np.nan, 1.0)
        return SignalFrame(target=target, confidence=confidence, valid_bars=config.valid_bars, **extra)


def scripted(
    script: Mapping[str, Mapping[int, float]],
    details: Mapping[str, Mapping[str, Mapping[int, float]]] | None = None,
    valid_bars: int | None = None,
) -> Scripted:
    # Canonical JSON (the config digest) wants string keys.
    plain_script = {symbol: {str(bar): float(value) for bar, value in bars.items()} for symbol, bars in script.items()}
    plain_details = {
        symbol: {name: {str(bar): float(value) for bar, value in values.items()} for name, values in named.items()}
        for symbol, named in (details or {}).items()
    }
    return Scripted(ScriptConfig(script=plain_script, details=plain_details, valid_bars=valid_bars))
