"""Strategy `momentum`: time-series momentum, long after a rise over `lookback` bars, short after a fall.

The opinion on bar i is the sign of ``close[i] / close[i - lookback] - 1``. It is looked at on rebalance
bars only, every `rebalance` bars counted from the first bar that has a full lookback, and a decision is
emitted on a rebalance bar only when the sign differs from the last decision (a repeated target would
make the engine enter again). ``rebalance=1`` therefore means: decide on every bar the sign flips.

With ``volatility_target`` set, confidence is ``volatility_target / realised volatility`` clipped to
[0, 1], the realised volatility being the sample deviation of the last ``volatility_lookback`` log
returns; the engine may size by confidence, which then scales positions down in turbulent markets.
Without it, confidence is 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig
from neuraltrade.strategies.indicators import decide_on_change, moving_deviation
from neuraltrade.strategies.parameters import require_integer, require_number


@dataclass(frozen=True, kw_only=True)
class MomentumConfig(StrategyConfig):
    """Parameters of `momentum`.

    Parameters
    ----------
    lookback
        Bars over which the return is measured.
    rebalance
        Bars between the looks at the sign (1: every bar).
    volatility_target
        Per-bar volatility (deviation of log returns) at which confidence is 1; None for confidence 1 always.
    volatility_lookback
        Log returns in the realised volatility.
    """

    lookback: int = 60
    rebalance: int = 21
    volatility_target: float | None = None
    volatility_lookback: int = 20

    def __post_init__(self) -> None:
        require_integer("momentum", "lookback", self.lookback, 1)
        require_integer("momentum", "rebalance", self.rebalance, 1)
        require_integer("momentum", "volatility_lookback", self.volatility_lookback, 2)
        if self.volatility_target is not None:
            require_number("momentum", "volatility_target", self.volatility_target, above=0.0)


class Momentum(Strategy):
    """+1 / -1 with the sign of the lookback return, decided on rebalance bars when the sign changed."""

    name: ClassVar[str] = "momentum"
    config: MomentumConfig

    def __init__(self, config: MomentumConfig | None = None) -> None:
        super().__init__(config or MomentumConfig())

    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return the momentum decisions of `history` (features: the lookback return and the volatility)."""
        config = self.config
        count = len(history)
        close = history.close
        lookback_return = np.full(count, np.nan)
        if count > config.lookback:
            lookback_return[config.lookback :] = close[config.lookback :] / close[: count - config.lookback] - 1.0
        log_returns = np.full(count, np.nan)
        log_returns[1:] = np.diff(np.log(close))
        volatility = moving_deviation(log_returns, config.volatility_lookback)

        warmup = config.lookback
        if config.volatility_target is not None:
            warmup = max(warmup, config.volatility_lookback)
        opinion = np.full(count, np.nan)
        rebalance_bars = np.arange(warmup, count, config.rebalance)
        opinion[rebalance_bars] = np.sign(lookback_return[rebalance_bars])
        # A sign of 0 (no change over the lookback) is no opinion, not "go flat".
        opinion[opinion == 0.0] = np.nan
        if config.volatility_target is None:
            confidence = np.ones(count)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                confidence = np.clip(config.volatility_target / volatility, 0.0, 1.0)
            # No measured volatility (NaN) or none at all (0 gives inf, clipped to 1) cannot size a position.
            opinion[np.isnan(confidence)] = np.nan
            confidence = np.nan_to_num(confidence, nan=0.0)
        target = decide_on_change(opinion)
        return SignalFrame(
            target=target,
            confidence=np.where(np.isnan(target), 0.0, confidence),
            features={"lookback_return": lookback_return, "volatility": volatility},
            warmup=warmup,
        )
