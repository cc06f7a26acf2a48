"""Causal indicators the strategies share: moving averages, crosses, decisions on change, market-state vectors.

Every function here computes value i from inputs at indices <= i only, going forward through the arrays, so
the value at bar i is the same, bit for bit, whatever follows bar i. That is what lets a strategy compute a
whole history at once and still pass `neuraltrade.strategies.base.verify_causality`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neuraltrade.errors import ConfigError
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.embedding import BLOCK_ROWS, WindowEmbedder, WindowEmbedderConfig, _bar_series

try:  # pandas' rolling-mean kernel (see `_rolling_mean`)
    from pandas._libs.window.aggregations import roll_mean as _roll_mean
except ImportError:  # pragma: no cover - a pandas without it falls back to the public call
    _roll_mean = None

#: How a simple moving average is summed: pandas' rolling mean (backtesting.py's ``SMA``) or the
#: difference of running sums (vectorbt's ``MA``). They round differently in the last bits, which is
#: enough to move a cross of two averages by a bar now and then (18 of 36,910 crosses on NVDA).
AVERAGE_METHODS = ("rolling", "running_sum")


def moving_average(values: np.ndarray, window: int, method: str = "rolling") -> np.ndarray:
    """Return the simple moving average of the last `window` values, NaN for the first ``window - 1`` bars.

    ``"rolling"`` is ``pd.Series(values).rolling(window).mean()`` exactly, the SMA of backtesting.py's
    examples; ``"running_sum"`` is ``(cumsum[i] - cumsum[i - window]) / window``, vectorbt's ``MA``.
    """
    if method == "rolling":
        return _rolling_mean(np.asarray(values, dtype=np.float64), window)
    if method == "running_sum":
        sums = np.cumsum(np.concatenate(([0.0], np.asarray(values, dtype=np.float64))))
        averages = np.full(len(values), np.nan)
        if len(values) >= window:
            averages[window - 1 :] = (sums[window:] - sums[: len(sums) - window]) / window
        return averages
    raise ConfigError(f"moving average method {method!r} is not one of {', '.join(AVERAGE_METHODS)}")


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """``pd.Series(values).rolling(window).mean()``, through the kernel it calls, at a third of the cost.

    Parameter sweeps compute two averages per combination, so the public call's overhead (~130 µs)
    showed; the kernel is pandas' own, so the result is the same to the bit (a test holds it), and the
    public call stands in if a pandas release moves the kernel.
    """
    if _roll_mean is None or window < 1:
        return pd.Series(values, copy=False).rolling(window).mean().to_numpy()
    end = np.arange(1, len(values) + 1, dtype=np.int64)
    start = np.maximum(end - window, 0)
    return np.asarray(_roll_mean(np.ascontiguousarray(values), start, end, window))


def moving_deviation(values: np.ndarray, window: int) -> np.ndarray:
    """Return the sample standard deviation (ddof 1) of the last `window` values, NaN before a full window."""
    return pd.Series(values, copy=False).rolling(window).std().to_numpy()


def crossed_above(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return, per bar, whether `first` crossed above `second` on that bar.

    backtesting.py's ``crossover``: below on the bar before and above on this one, both strictly; any
    comparison with NaN is false, and bar 0 has no bar before it.
    """
    crossed = np.zeros(len(first), dtype=bool)
    with np.errstate(invalid="ignore"):
        crossed[1:] = (first[:-1] < second[:-1]) & (first[1:] > second[1:])
    return crossed


def leading_nan_count(values: np.ndarray) -> int:
    """Return how many bars an indicator needs before its first value, as backtesting.py counts them.

    backtesting.py takes ``np.isnan(values).argmin()``, which is 0 for an indicator that is NaN throughout.
    """
    return int(np.isnan(np.asarray(values, dtype=np.float64)).argmin()) if len(values) else 0


def decide_on_change(opinion: np.ndarray) -> np.ndarray:
    """Turn a per-bar opinion into decisions: a target only on the bars where the opinion changes.

    `opinion` holds -1, 0, +1 or NaN (no opinion: keep whatever was decided last). The engine reads a
    target repeated on consecutive bars as "enter again", so a target is emitted only when the opinion
    differs from the last one emitted; every other bar is NaN.
    """
    target = np.full(len(opinion), np.nan)
    last = np.nan
    for bar in np.flatnonzero(~np.isnan(opinion)):
        value = float(opinion[bar])
        if value != last:
            target[bar] = value
            last = value
    return target


def bar_frame(history: PriceHistory) -> pd.DataFrame:
    """Return `history` as the columns an embedder reads (no quoted spread: the high-low range stands in)."""
    return pd.DataFrame(
        {
            "symbol": history.symbol,
            "open": history.open,
            "high": history.high,
            "low": history.low,
            "close": history.close,
            "volume": history.volume,
            "spread": np.full(len(history), np.nan),
        }
    )


def market_state_vectors(history: PriceHistory, config: WindowEmbedderConfig) -> np.ndarray:
    """Return the `WindowEmbedder` vector of the window ending at every bar, NaN rows before a full window.

    Values equal ``WindowEmbedder(config).embed(...)`` to float32 rounding (about 1e-7), but each row is
    the same bit for bit however long the history is: ``embed`` projects with a BLAS matrix product, whose
    rounding depends on how many rows are multiplied at once, and a vector that changes in its last bit
    when later bars exist makes a model's probability change too, which `verify_causality` rightly
    reports. The projection here is ``np.einsum``'s plain loop, one sum per row in a fixed order.
    """
    embedder = WindowEmbedder(config)
    vectors = np.full((len(history), config.dimension), np.nan, dtype=np.float32)
    if len(history) < config.window:
        return vectors
    series = _bar_series(bar_frame(history))
    window = config.window
    # Blocks overlapping by window - 1 bars, as `embed` does, so that memory stays bounded.
    for start in range(0, len(history) - window + 1, BLOCK_ROWS):
        stop = min(len(history), start + BLOCK_ROWS + window - 1)
        # The embedder's own feature code, so that its vectors and these never drift apart (a test pins them).
        features = embedder._features({name: values[start:stop] for name, values in series.items()})
        projected = np.einsum("ij,jk->ik", features, embedder._projection)
        norms = np.sqrt(np.einsum("ij,ij->i", projected, projected))
        vectors[start + window - 1 : stop] = projected / np.maximum(norms, np.float32(1e-12))[:, None]
    return vectors
