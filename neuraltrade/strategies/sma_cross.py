"""Strategy `sma_cross`: long when a fast simple moving average crosses above a slow one, short on the way down.

Defined as backtesting.py's ``SmaCross`` example: the averages are ``pd.Series(close).rolling(n).mean()``
and a cross is its ``crossover``, strictly below on the bar before and strictly above on the bar itself
(a comparison with NaN is false). The benchmark compares this strategy with backtesting.py and vectorbt,
so the decisions must be the same bars as theirs; ``average="running_sum"`` sums as vectorbt's ``MA`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from neuraltrade.errors import ConfigError
from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig
from neuraltrade.strategies.indicators import AVERAGE_METHODS, crossed_above, leading_nan_count, moving_average
from neuraltrade.strategies.parameters import require_choice, require_integer


@dataclass(frozen=True, kw_only=True)
class SmaCrossConfig(StrategyConfig):
    """Parameters of `sma_cross`: the two averages' lengths in bars (``fast < slow``) and how they are summed."""

    fast: int = 10
    slow: int = 20
    average: str = "rolling"

    def __post_init__(self) -> None:
        require_integer("sma_cross", "fast", self.fast, 1)
        require_integer("sma_cross", "slow", self.slow, 2)
        if self.fast >= self.slow:
            raise ConfigError(f"sma_cross parameter fast ({self.fast}) must be less than slow ({self.slow})")
        require_choice("sma_cross", "average", self.average, AVERAGE_METHODS)


class SmaCross(Strategy):
    """+1 on the bar the fast average crosses above the slow one, -1 on the bar it crosses below, NaN else."""

    name: ClassVar[str] = "sma_cross"
    config: SmaCrossConfig

    def __init__(self, config: SmaCrossConfig | None = None) -> None:
        super().__init__(config or SmaCrossConfig())

    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return the crosses of the two averages of `history`'s closes (confidence 1 on every cross)."""
        fast = moving_average(history.close, self.config.fast, self.config.average)
        slow = moving_average(history.close, self.config.slow, self.config.average)
        target = np.full(len(history), np.nan)
        target[crossed_above(fast, slow)] = 1.0
        target[crossed_above(slow, fast)] = -1.0
        confidence = np.where(np.isnan(target), 0.0, 1.0)
        # backtesting.py first calls `next` one bar after its slowest indicator's first value.
        warmup = 1 + max(leading_nan_count(fast), leading_nan_count(slow))
        return SignalFrame(
            target=target,
            confidence=confidence,
            features={"fast_average": fast, "slow_average": slow},
            warmup=warmup,
        )
