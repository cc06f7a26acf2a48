"""The judge: a deterministic triple-barrier verdict on an episode, net of costs, scored against a benchmark.

Around the entry price sit a take-profit and a stop at ``± width · σ_daily · √horizon_bars`` (fractions of the
entry price), where ``σ_daily`` is the standard deviation (``ddof=1``) of the log returns of the
`volatility_lookback` bars up to the decision bar: what was known when the trade was decided. The vertical
barrier is bar ``entry_bar + horizon_bars``. The judge walks bars ``entry_bar..vertical``: for a long, a high
at or above the upper barrier takes profit and a low at or below the lower one stops; a bar reaching both
counts as a stop (we cannot know which came first, so the conservative reading); a short is the mirror image.
With fewer than two returns before the decision, or flat prices (σ = 0), there are no horizontal barriers and
the vertical decides.

`barrier_return` is the side's return from the entry price to the barrier price (to the close at the vertical)
minus the trade's round-trip cost fraction (its ``gross_return - net_return``). Success means the path reached
the take-profit first or the vertical, with a positive `barrier_return` either way: a stop is a failure, and
so is a path whose gain the costs eat. The `score` is ``barrier_return - benchmark_return``, where the
benchmark is buy-and-hold over the judge's whole window (``close[vertical] / entry_price - 1``) or cash (0).
The benchmark enters the score and not the success bit on purpose: a long's path is buy-and-hold's own path,
so "beat buy-and-hold" would make every long in a rising market a failure and every long in a falling one a
success; the success bit judges the decision on its own barriers, the score ranks it against doing nothing.

Only bars up to the vertical are read (and σ only from bars up to the decision), so a verdict never changes
when later bars do, and it is known at the episode's `outcome_known_at`, never before its window closes.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.canonical import digest, parse_timestamp, stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.episodes import Episode, _bar_at, _finite, _integer, _uuid
from neuraltrade.market.history import PriceHistory
from neuraltrade.records import Record
from neuraltrade.timestamps import require_aware

#: The benchmarks a judge can score against.
BENCHMARKS = ("buy_and_hold", "cash")
#: The barriers a path can reach first.
BARRIERS = ("take_profit", "stop_loss", "vertical")


@dataclass(frozen=True, kw_only=True)
class JudgeConfig:
    """The judge's definition: horizon, barrier widths (in σ·√horizon), σ's lookback and the benchmark."""

    horizon_bars: int = 10
    take_profit_width: float = 2.0
    stop_width: float = 2.0
    volatility_lookback: int = 20
    benchmark: str = "buy_and_hold"

    def __post_init__(self) -> None:
        for name, least in (("horizon_bars", 1), ("volatility_lookback", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"judge {name} must be an integer >= {least}, was {value!r}")
        for name in ("take_profit_width", "stop_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"judge {name} must be a positive finite number, was {value!r}")
            object.__setattr__(self, name, float(value))
        if self.benchmark not in BENCHMARKS:
            raise ConfigError(f"judge benchmark {self.benchmark!r} is not one of {', '.join(BENCHMARKS)}")

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of this configuration: stored with every verdict."""
        return digest(self)


@dataclass(frozen=True, kw_only=True)
class Verdict(Record):
    """The judge's verdict on one episode (see the module docstring); `volatility` is the σ_daily it used."""

    KIND = "verdict"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    episode_id: uuid.UUID
    judge_digest: str
    success: bool
    score: float
    barrier: str
    barrier_bar: int
    barrier_return: float
    benchmark_return: float
    volatility: float
    known_at: datetime

    def __post_init__(self) -> None:
        _uuid("verdict id", self.id)
        _uuid("verdict episode_id", self.episode_id)
        if not isinstance(self.judge_digest, str) or not self.judge_digest:
            raise ValidationError(f"verdict judge_digest must be a non-empty string, was {self.judge_digest!r}")
        expected = stable_id("verdict", self.episode_id, self.judge_digest)
        if self.id != expected:
            raise ValidationError(f"verdict on episode {self.episode_id} has id {self.id}; its id is {expected}")
        label = f"verdict {self.id}"
        if not isinstance(self.success, bool):
            raise ValidationError(f"{label} success must be a bool, was {self.success!r}")
        if self.barrier not in BARRIERS:
            raise ValidationError(f"{label} barrier {self.barrier!r} is not one of {', '.join(BARRIERS)}")
        object.__setattr__(self, "barrier_bar", _integer(f"{label} barrier_bar", self.barrier_bar, minimum=0))
        for name in ("score", "barrier_return", "benchmark_return"):
            object.__setattr__(self, name, _finite(f"{label} {name}", getattr(self, name)))
        object.__setattr__(self, "volatility", _finite(f"{label} volatility", self.volatility, minimum=0.0))
        object.__setattr__(self, "known_at", require_aware(f"{label} known_at", self.known_at))

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Verdict:
        values = dict(plain)
        values["id"] = uuid.UUID(values["id"])
        values["episode_id"] = uuid.UUID(values["episode_id"])
        values["known_at"] = parse_timestamp(values["known_at"])
        return cls(**values)


def daily_volatility(history: PriceHistory, bar: int, lookback: int) -> float:
    """σ of the log returns of the `lookback` bars up to `bar` (fewer near the start; 0 with fewer than two)."""
    first = max(0, bar - lookback)
    closes = np.asarray(history.close[first : bar + 1], dtype=float)
    if len(closes) < 3:
        return 0.0
    return float(np.std(np.diff(np.log(closes)), ddof=1))


def _first_barrier(
    history: PriceHistory, episode: Episode, vertical: int, upper: float, lower: float
) -> tuple[str, int, float]:
    """(barrier, bar, price) of the first barrier the path reaches over bars entry..vertical."""
    highs = history.high[episode.entry_bar : vertical + 1]
    lows = history.low[episode.entry_bar : vertical + 1]
    if episode.is_long:
        stops, profits = lows <= lower, highs >= upper
    else:
        stops, profits = highs >= upper, lows <= lower
    for offset in np.flatnonzero(stops | profits).tolist():
        bar = episode.entry_bar + offset
        # Both barriers within one bar: the order inside the bar is unknown, so the stop (conservative).
        if stops[offset]:
            return "stop_loss", bar, lower if episode.is_long else upper
        return "take_profit", bar, upper if episode.is_long else lower
    return "vertical", vertical, float(history.close[vertical])


def judge(episode: Episode, history: PriceHistory, config: JudgeConfig = JudgeConfig()) -> Verdict | None:
    """The verdict on `episode` from its symbol's `history`, or None if the judge's window is not inside it.

    Raises `ConfigError` when the judge looks further ahead than the episode's own horizon (its window would
    not have closed when the episode became known).
    """
    if not isinstance(config, JudgeConfig):
        raise ConfigError(f"judge config must be a JudgeConfig, was {config!r}")
    if config.horizon_bars > episode.horizon_bars:
        raise ConfigError(
            f"judge horizon_bars {config.horizon_bars} exceeds episode {episode.id}'s horizon_bars "
            f"{episode.horizon_bars}: its window would not have closed when the episode became known"
        )
    if history.symbol != episode.symbol:
        raise ValidationError(f"episode {episode.id} of {episode.symbol} was given the history of {history.symbol}")
    vertical = episode.entry_bar + config.horizon_bars
    if vertical >= len(history):
        return None
    if _bar_at(history, episode.entry_time, f"episode {episode.id} entry time") != episode.entry_bar:
        raise ValidationError(f"episode {episode.id} entry bar {episode.entry_bar} is not its entry time's bar")
    sigma = daily_volatility(history, episode.decision_bar, config.volatility_lookback)
    spread = sigma * math.sqrt(config.horizon_bars)
    entry = episode.entry_price
    if spread > 0:
        upper_width = config.take_profit_width if episode.is_long else config.stop_width
        lower_width = config.stop_width if episode.is_long else config.take_profit_width
        upper, lower = entry * (1.0 + upper_width * spread), entry * (1.0 - lower_width * spread)
    else:
        upper, lower = math.inf, -math.inf
    barrier, bar, price = _first_barrier(history, episode, vertical, upper, lower)
    cost = episode.gross_return - episode.net_return
    barrier_return = episode.side * (price / entry - 1.0) - cost
    benchmark = float(history.close[vertical]) / entry - 1.0 if config.benchmark == "buy_and_hold" else 0.0
    judge_digest = config.digest
    return Verdict(
        id=stable_id("verdict", episode.id, judge_digest),
        episode_id=episode.id,
        judge_digest=judge_digest,
        success=barrier != "stop_loss" and barrier_return > 0,
        score=barrier_return - benchmark,
        barrier=barrier,
        barrier_bar=bar,
        barrier_return=barrier_return,
        benchmark_return=benchmark,
        volatility=sigma,
        known_at=episode.outcome_known_at,
    )
