"""Strategy `mean_reversion`: fade a close that has strayed far from its recent mean, exit once it is back.

The z-score of bar i is ``(close[i] - mean) / deviation`` over the last `lookback` closes (the bar's own
included, sample deviation). Above ``entry_z`` the strategy goes short, below ``-entry_z`` long; a held
position is closed (target 0) once ``|z| < exit_z``. Decisions are emitted only when they change what
the strategy holds, since the engine reads a repeated target as "enter again".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from neuraltrade.errors import ConfigError
from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig
from neuraltrade.strategies.indicators import moving_average, moving_deviation
from neuraltrade.strategies.parameters import require_integer, require_number


@dataclass(frozen=True, kw_only=True)
class MeanReversionConfig(StrategyConfig):
    """Parameters of `mean_reversion`.

    Parameters
    ----------
    lookback
        Bars in the rolling mean and deviation (at least 2).
    entry_z
        |z| beyond which a position is entered against the move (> 0).
    exit_z
        |z| below which a held position is closed (>= 0, < entry_z).
    stop_loss
        Optional stop distance given with every entry, as a fraction of the fill price (0.05 = 5%).
    """

    lookback: int = 20
    entry_z: float = 2.0
    exit_z: float = 0.5
    stop_loss: float | None = None

    def __post_init__(self) -> None:
        require_integer("mean_reversion", "lookback", self.lookback, 2)
        require_number("mean_reversion", "entry_z", self.entry_z, above=0.0)
        require_number("mean_reversion", "exit_z", self.exit_z, at_least=0.0)
        if self.exit_z >= self.entry_z:
            raise ConfigError(
                f"mean_reversion parameter exit_z ({self.exit_z!r}) must be less than entry_z ({self.entry_z!r})"
            )
        if self.stop_loss is not None:
            require_number("mean_reversion", "stop_loss", self.stop_loss, above=0.0, below=1.0)


class MeanReversion(Strategy):
    """Short above ``entry_z``, long below ``-entry_z``, flat again inside ``exit_z``.

    Confidence of an entry is ``|z| / (2 entry_z)`` clipped to [0, 1] (0.5 at the threshold, 1 at twice
    it); an exit's is 1. The feature ``z_score`` is recorded for every bar.
    """

    name: ClassVar[str] = "mean_reversion"
    config: MeanReversionConfig

    def __init__(self, config: MeanReversionConfig | None = None) -> None:
        super().__init__(config or MeanReversionConfig())

    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return entries against large z-scores and exits near the mean."""
        config = self.config
        mean = moving_average(history.close, config.lookback)
        deviation = moving_deviation(history.close, config.lookback)
        with np.errstate(divide="ignore", invalid="ignore"):
            z_score = np.where(deviation > 0.0, (history.close - mean) / deviation, np.nan)
        target = np.full(len(history), np.nan)
        confidence = np.zeros(len(history))
        held = 0.0
        for bar in np.flatnonzero(~np.isnan(z_score)):
            z = float(z_score[bar])
            wanted = held
            if z > config.entry_z:
                wanted = -1.0
            elif z < -config.entry_z:
                wanted = 1.0
            elif held != 0.0 and abs(z) < config.exit_z:
                wanted = 0.0
            if wanted != held:
                target[bar] = wanted
                confidence[bar] = 1.0 if wanted == 0.0 else min(1.0, abs(z) / (2.0 * config.entry_z))
                held = wanted
        stop_loss = None
        if config.stop_loss is not None:
            entries = (target == 1.0) | (target == -1.0)
            stop_loss = np.where(entries, config.stop_loss, np.nan)
        return SignalFrame(
            target=target,
            confidence=confidence,
            stop_loss=stop_loss,
            features={"z_score": z_score},
            warmup=config.lookback - 1,
        )
