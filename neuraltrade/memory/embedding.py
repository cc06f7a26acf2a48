"""Embeddings of market state: a trailing window of bars becomes one fixed-size vector.

The default `WindowEmbedder` computes normalised features of the window (the shape of its returns
relative to its own volatility, its cumulative path, its bar ranges, its volume profile, and summary
levels: volatility, trend, range, spread, volume trend) and maps them with a fixed, seeded Gaussian
random projection to `dimension` components, then scales to unit length. A random projection
approximately preserves distances between feature vectors (Johnson-Lindenstrauss), so similar market
states stay near each other under cosine distance; the projection is a pure function of the seed, which
is part of the embedder's fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from neuraltrade.canonical import digest
from neuraltrade.errors import ConfigError, NotEnoughHistory

#: Rows embedded per block, so memory stays bounded on millions of bars.
BLOCK_ROWS = 65_536
_TINY = 1e-12


@dataclass(frozen=True, kw_only=True)
class EmbedderFingerprint:
    """What produced a vector: stored with every vector, compared before any vector is accepted."""

    name: str
    version: str
    dimension: int
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the fingerprint."""
        return digest(self)

    def describe(self) -> str:
        """Return a short human-readable form, e.g. ``window/1 (512-d, 3f2a9c1b)``."""
        return f"{self.name}/{self.version} ({self.dimension}-d, {self.digest[:8]})"


class Embedder(Protocol):
    """Turns the bars of one symbol, in time order, into one vector per bar that has a full window."""

    @property
    def fingerprint(self) -> EmbedderFingerprint: ...

    @property
    def window(self) -> int:
        """How many bars one vector summarises; the first ``window - 1`` bars get no vector."""
        ...

    def embed(self, frame: pd.DataFrame) -> np.ndarray:
        """Return float32 vectors of shape ``(len(frame) - window + 1, dimension)``."""
        ...


@dataclass(frozen=True, kw_only=True)
class WindowEmbedderConfig:
    """Parameters of the default embedder; all of them are in its fingerprint."""

    window: int = 32
    dimension: int = 512
    seed: int = 20_240_601
    clip: float = 4.0

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or self.window < 8:
            raise ConfigError(f"embedder window must be an integer >= 8 bars, was {self.window!r}")
        if not isinstance(self.dimension, int) or not 8 <= self.dimension <= 8192:
            raise ConfigError(f"embedder dimension must be an integer in [8, 8192], was {self.dimension!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"embedder seed must be a non-negative integer, was {self.seed!r}")
        if not self.clip > 0:
            raise ConfigError(f"embedder clip must be positive, was {self.clip!r}")

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


class WindowEmbedder:
    """The default embedder: normalised window features, randomly projected, unit length."""

    name = "window"
    version = "1"

    def __init__(self, config: WindowEmbedderConfig | None = None) -> None:
        self.config = config or WindowEmbedderConfig()
        self._path_step = 4
        feature_count = 3 * self.config.window + len(range(0, self.config.window, self._path_step)) + 6
        generator = np.random.default_rng(self.config.seed)
        self._projection = (
            generator.standard_normal((feature_count, self.config.dimension)) / np.sqrt(self.config.dimension)
        ).astype(np.float32)

    @property
    def fingerprint(self) -> EmbedderFingerprint:
        return EmbedderFingerprint(
            name=self.name,
            version=self.version,
            dimension=self.config.dimension,
            parameters={"window": self.config.window, "seed": self.config.seed, "clip": self.config.clip},
        )

    @property
    def window(self) -> int:
        return self.config.window

    def embed(self, frame: pd.DataFrame) -> np.ndarray:
        """Embed every full window of the bar frame `frame` (one symbol, time order).

        Raises
        ------
        NotEnoughHistory
            If `frame` has fewer bars than one window.
        """
        count = len(frame)
        if count < self.window:
            symbol = frame["symbol"].iloc[0] if count else "?"
            raise NotEnoughHistory(f"{symbol}: {count} bars, the embedder needs at least {self.window}")
        series = _bar_series(frame)
        outputs = []
        # Blocks overlap by window - 1 rows so that every window is embedded exactly once.
        for start in range(0, count - self.window + 1, BLOCK_ROWS):
            stop = min(count, start + BLOCK_ROWS + self.window - 1)
            features = self._features({name: values[start:stop] for name, values in series.items()})
            projected = features @ self._projection
            norms = np.sqrt(np.einsum("ij,ij->i", projected, projected))
            projected /= np.maximum(norms, _TINY)[:, None]
            outputs.append(projected)
        return np.ascontiguousarray(np.concatenate(outputs), dtype=np.float32)

    def _features(self, series: dict[str, np.ndarray]) -> np.ndarray:
        window, clip = self.config.window, self.config.clip
        # A vector depends on the bars of its window only: its first return is that bar's open-to-close
        # return, not one that reaches back to the bar before the window.
        returns = sliding_window_view(series["returns"], window).copy()
        returns[:, 0] = series["intrabar_returns"][: len(returns)]
        ranges = sliding_window_view(series["ranges"], window)
        volumes = sliding_window_view(series["log_volumes"], window)
        spreads = sliding_window_view(series["spreads"], window)

        volatility = np.sqrt(np.mean(returns**2, axis=1, keepdims=True)) + 1e-8
        shape = np.clip(returns / volatility, -clip, clip) / clip
        path = np.cumsum(returns, axis=1)[:, :: self._path_step] / (volatility * np.sqrt(window))
        mean_range = np.mean(ranges, axis=1, keepdims=True) + 1e-8
        range_profile = np.clip(ranges / mean_range - 1.0, -clip, clip) / clip
        mean_volume = np.mean(volumes, axis=1, keepdims=True)
        volume_profile = np.clip(volumes - mean_volume, -clip, clip) / clip
        summary = np.column_stack(
            [
                (np.log(volatility[:, 0]) + 4.0) / 2.0,
                np.sum(returns, axis=1) / (volatility[:, 0] * np.sqrt(window)) / 2.0,
                (np.log(mean_range[:, 0]) + 4.0) / 2.0,
                (np.log(np.mean(spreads, axis=1) + 1e-8) + 6.0) / 3.0,
                np.clip(volumes[:, -4:].mean(axis=1) - mean_volume[:, 0], -clip, clip) / clip,
                shape[:, -1],
            ]
        )
        # Each group is scaled to a comparable norm so that no group drowns the others.
        groups = [
            shape / np.sqrt(window),
            path / np.sqrt(path.shape[1]),
            range_profile / np.sqrt(window),
            volume_profile / np.sqrt(window),
            summary / np.sqrt(summary.shape[1]),
        ]
        return np.concatenate(groups, axis=1).astype(np.float32)


def _bar_series(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    opens = frame["open"].to_numpy(np.float64)
    highs = frame["high"].to_numpy(np.float64)
    lows = frame["low"].to_numpy(np.float64)
    closes = frame["close"].to_numpy(np.float64)
    volumes = frame["volume"].to_numpy(np.float64)
    spreads = relative_spreads(frame)
    intrabar_returns = np.log(closes / opens)
    returns = np.empty_like(closes)
    returns[0] = intrabar_returns[0]
    returns[1:] = np.diff(np.log(closes))
    return {
        "returns": returns,
        "intrabar_returns": intrabar_returns,
        "ranges": np.log(highs / lows),
        "log_volumes": np.log1p(volumes),
        "spreads": spreads,
    }


def relative_spreads(frame: pd.DataFrame) -> np.ndarray:
    """Return each bar's relative spread: the quoted one, else the high-low range over the close.

    The range is an upper bound of the spread, not an estimate of it; it is used only where the source
    has no quotes, and documented as such.
    """
    spreads = frame["spread"].to_numpy(np.float64).copy()
    missing = np.isnan(spreads)
    if missing.any():
        highs = frame["high"].to_numpy(np.float64)
        lows = frame["low"].to_numpy(np.float64)
        closes = frame["close"].to_numpy(np.float64)
        spreads[missing] = ((highs - lows) / closes)[missing]
    return spreads
