"""The reflexion engine: a structured critique of each judged episode, computed from the numbers alone.

A critique names the regime at the decision and at the exit (`neuraltrade.learning.regime`), what was done,
and what went right or wrong from a fixed vocabulary (`Lesson`), plus one or two sentences generated from the
same numbers. No language model: the same episode, verdict, bars and configuration always give the same
critique. It reads only bars up to the episode's `window_end_bar`, so it is known when the episode is.
"""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.canonical import digest, parse_timestamp, stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.episodes import Episode, _integer, _text, _uuid
from neuraltrade.learning.judge import Verdict
from neuraltrade.learning.regime import Regime, regime_of, state_features
from neuraltrade.market.history import PriceHistory
from neuraltrade.records import Record
from neuraltrade.timestamps import require_aware


class Lesson(enum.Enum):
    """What a critique can say about an episode (see `ReflexionEngine.critique` for each rule)."""

    #: Long in an up trend or short in a down trend at the decision.
    WITH_TREND = "with_trend"
    #: Long in a down trend or short in an up trend at the decision.
    AGAINST_TREND = "against_trend"
    #: Closed by a stop, and a close later in the outcome window was back past the entry price.
    STOP_TOO_TIGHT = "stop_too_tight"
    #: The favourable excursion reached `giveback_threshold` and at least `giveback_share` of it was given back.
    HELD_TOO_LONG = "held_too_long"
    #: After the exit, within the window, the price went on at least ``early_exit_width · σ·√h`` the trade's way.
    EXITED_TOO_EARLY = "exited_too_early"
    #: The regime (trend or volatility) at the exit bar is not the regime at the decision.
    REGIME_CHANGED = "regime_changed"
    #: The trade made money before costs and none after.
    COSTS_EXCEEDED_EDGE = "costs_exceeded_edge"
    #: Volatility at the decision was high.
    HIGH_VOLATILITY_ENTRY = "high_volatility_entry"
    #: The judge's score is negative: the benchmark over the same window did better.
    LAGGED_BENCHMARK = "lagged_benchmark"
    #: A success with none of the faults (against the trend, stop too tight, held too long, exited too early,
    #: costs exceeded the edge).
    CLEAN_WIN = "clean_win"


#: The lessons that say something went wrong: a success with none of them is a clean win.
FAULTS = frozenset(
    {
        Lesson.AGAINST_TREND,
        Lesson.STOP_TOO_TIGHT,
        Lesson.HELD_TOO_LONG,
        Lesson.EXITED_TOO_EARLY,
        Lesson.COSTS_EXCEEDED_EDGE,
    }
)

_STOP_EXITS = ("stop_loss", "trailing_stop")


@dataclass(frozen=True, kw_only=True)
class ReflexionConfig:
    """Thresholds of the lessons: the favourable excursion worth keeping (`giveback_threshold`, a fraction),
    the share of it that counts as given back, and the further move (in σ·√horizon) that makes an exit early."""

    giveback_threshold: float = 0.02
    giveback_share: float = 0.5
    early_exit_width: float = 1.0

    def __post_init__(self) -> None:
        for name in ("giveback_threshold", "giveback_share", "early_exit_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"reflexion {name} must be a positive finite number, was {value!r}")
            object.__setattr__(self, name, float(value))
        if self.giveback_share > 1:
            raise ConfigError(f"reflexion giveback_share must lie in (0, 1], was {self.giveback_share!r}")

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of this configuration."""
        return digest(self)


_LESSON_VALUES = frozenset(lesson.value for lesson in Lesson)


@dataclass(frozen=True, kw_only=True)
class Critique(Record):
    """The critique of one judged episode: regimes, what was done, the lessons (sorted values) and a text."""

    KIND = "critique"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    episode_id: uuid.UUID
    verdict_id: uuid.UUID
    config_digest: str
    entry_trend: str
    entry_volatility: str
    exit_trend: str
    exit_volatility: str
    side: int
    holding_bars: int
    exit_reason: str
    success: bool
    lessons: tuple[str, ...]
    text: str
    known_at: datetime

    def __post_init__(self) -> None:
        for name in ("id", "episode_id", "verdict_id"):
            _uuid(f"critique {name}", getattr(self, name))
        _text("critique config_digest", self.config_digest)
        expected = stable_id("critique", self.episode_id, self.verdict_id, self.config_digest)
        if self.id != expected:
            raise ValidationError(f"critique of episode {self.episode_id} has id {self.id}; its id is {expected}")
        label = f"critique {self.id}"
        Regime(trend=self.entry_trend, volatility=self.entry_volatility)
        Regime(trend=self.exit_trend, volatility=self.exit_volatility)
        if self.side not in (1, -1) or isinstance(self.side, bool):
            raise ValidationError(f"{label} side must be 1 (long) or -1 (short), was {self.side!r}")
        object.__setattr__(self, "holding_bars", _integer(f"{label} holding_bars", self.holding_bars, minimum=0))
        _text(f"{label} exit_reason", self.exit_reason)
        _text(f"{label} text", self.text)
        if not isinstance(self.success, bool):
            raise ValidationError(f"{label} success must be a bool, was {self.success!r}")
        lessons = tuple(sorted(self.lessons))
        unknown = [lesson for lesson in lessons if lesson not in _LESSON_VALUES]
        if unknown or len(set(lessons)) != len(lessons):
            raise ValidationError(f"{label} lessons {lessons!r} hold an unknown or repeated lesson")
        object.__setattr__(self, "lessons", lessons)
        object.__setattr__(self, "known_at", require_aware(f"{label} known_at", self.known_at))

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Critique:
        values = dict(plain)
        for name in ("id", "episode_id", "verdict_id"):
            values[name] = uuid.UUID(values[name])
        values["lessons"] = tuple(values["lessons"])
        values["known_at"] = parse_timestamp(values["known_at"])
        return cls(**values)


def _percent(fraction: float) -> str:
    return f"{100.0 * abs(fraction):.1f}%"


class ReflexionEngine:
    """Critiques judged episodes by the rules of `Lesson`, with thresholds from a `ReflexionConfig`."""

    def __init__(self, config: ReflexionConfig | None = None) -> None:
        self.config = config or ReflexionConfig()

    def critique(self, episode: Episode, verdict: Verdict, history: PriceHistory) -> Critique:
        """The critique of `episode` judged by `verdict`, reading `history` (the symbol's bars) up to the
        episode's window end."""
        if verdict.episode_id != episode.id:
            raise ValidationError(f"verdict {verdict.id} judges episode {verdict.episode_id}, not {episode.id}")
        if history.symbol != episode.symbol:
            raise ValidationError(f"episode {episode.id} of {episode.symbol} was given the history of {history.symbol}")
        if episode.window_end_bar >= len(history):
            raise ValidationError(
                f"episode {episode.id}'s window ends at bar {episode.window_end_bar}; "
                f"the {history.symbol} history has {len(history)} bars"
            )
        entry = regime_of(np.asarray(episode.state_features))
        exit_ = regime_of(state_features(history, episode.exit_bar))
        found = self._lessons(episode, verdict, history, entry, exit_)
        config_digest = self.config.digest
        return Critique(
            id=stable_id("critique", episode.id, verdict.id, config_digest),
            episode_id=episode.id,
            verdict_id=verdict.id,
            config_digest=config_digest,
            entry_trend=entry.trend,
            entry_volatility=entry.volatility,
            exit_trend=exit_.trend,
            exit_volatility=exit_.volatility,
            side=episode.side,
            holding_bars=episode.holding_bars,
            exit_reason=episode.exit_reason,
            success=verdict.success,
            lessons=tuple(sorted(lesson.value for lesson in found)),
            text=_text_of(episode, verdict, entry, found),
            known_at=episode.outcome_known_at,
        )

    def _lessons(
        self, episode: Episode, verdict: Verdict, history: PriceHistory, entry: Regime, exit_: Regime
    ) -> set[Lesson]:
        config = self.config
        found: set[Lesson] = set()
        trend_side = {"up": 1, "down": -1}.get(entry.trend)
        if trend_side is not None:
            found.add(Lesson.WITH_TREND if trend_side == episode.side else Lesson.AGAINST_TREND)
        # Closes from the exit bar (whose close follows an intrabar stop or an exit at its open) to the window end.
        after = np.asarray(history.close[episode.exit_bar : episode.window_end_bar + 1], dtype=float)
        moves = episode.side * (after / episode.entry_price - 1.0)
        if episode.exit_reason in _STOP_EXITS and bool(np.any(moves > 0)):
            found.add(Lesson.STOP_TOO_TIGHT)
        favourable = episode.max_favourable_excursion
        given_back = favourable - episode.gross_return
        if favourable >= config.giveback_threshold and given_back >= config.giveback_share * favourable:
            found.add(Lesson.HELD_TOO_LONG)
        further = episode.side * (after / episode.exit_price - 1.0)
        reach = config.early_exit_width * verdict.volatility * math.sqrt(episode.horizon_bars)
        if reach > 0 and bool(np.any(further >= reach)):
            found.add(Lesson.EXITED_TOO_EARLY)
        if entry != exit_:
            found.add(Lesson.REGIME_CHANGED)
        if episode.gross_return > 0 >= episode.net_return:
            found.add(Lesson.COSTS_EXCEEDED_EDGE)
        if entry.volatility == "high":
            found.add(Lesson.HIGH_VOLATILITY_ENTRY)
        if verdict.score < 0:
            found.add(Lesson.LAGGED_BENCHMARK)
        if verdict.success and not found & FAULTS:
            found.add(Lesson.CLEAN_WIN)
        return found


_PHRASES = {
    Lesson.AGAINST_TREND: "Traded against the trend.",
    Lesson.STOP_TOO_TIGHT: "Stop too tight: the price recovered past the entry within the window.",
    Lesson.EXITED_TOO_EARLY: "Exited too early: the price moved on in the trade's favour after the exit.",
    Lesson.REGIME_CHANGED: "The regime changed during the trade.",
    Lesson.HIGH_VOLATILITY_ENTRY: "Entered in high volatility.",
    Lesson.LAGGED_BENCHMARK: "Lagged buy-and-hold over the window.",
    Lesson.CLEAN_WIN: "Clean win.",
}


def _text_of(episode: Episode, verdict: Verdict, entry: Regime, found: set[Lesson]) -> str:
    """One sentence of what was done and how it ended, then one of what the lessons say."""
    side = "Long" if episode.is_long else "Short"
    outcome = "made" if episode.net_return > 0 else "lost"
    bars = "bar" if episode.holding_bars == 1 else "bars"
    summary = (
        f"{side} {episode.strategy} on {episode.symbol} in {'an' if entry.trend == 'up' else 'a'} {entry.trend} "
        f"trend, {entry.volatility} volatility; held {episode.holding_bars} {bars}, exit by "
        f"{episode.exit_reason.replace('_', ' ')}; {outcome} {_percent(episode.net_return)} net "
        f"(judge: {verdict.barrier}, {'success' if verdict.success else 'failure'})."
    )
    notes = []
    for lesson in sorted(found, key=lambda item: item.value):
        if lesson is Lesson.HELD_TOO_LONG:
            notes.append(
                f"Held too long: gave back {_percent(episode.max_favourable_excursion - episode.gross_return)} "
                f"of a {_percent(episode.max_favourable_excursion)} favourable move."
            )
        elif lesson is Lesson.COSTS_EXCEEDED_EDGE:
            notes.append(
                f"Costs exceeded the edge: {_percent(episode.gross_return)} gross became "
                f"{'-' if episode.net_return < 0 else ''}{_percent(episode.net_return)} net."
            )
        elif lesson in _PHRASES:
            notes.append(_PHRASES[lesson])
    return " ".join([summary, *notes])
