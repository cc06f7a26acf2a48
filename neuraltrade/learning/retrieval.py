"""Point-in-time retrieval of judged episodes, and the learning memory a gated strategy reads.

`retrieve` answers "which past episodes resemble this state?" for a decision at `decision_time`. It first
masks every episode whose outcome was not known strictly before the decision (and, if asked, of the other
side); nothing later can leak in, whatever its similarity and whatever order the memory was built in. Then:
cosine similarity to the query; the `candidates` most similar; a combined score

    score = similarity_weight * similarity + recency_weight * recency + reliability_weight * reliability

with ``recency = 0.5 ** (age_days / recency_half_life_days)`` (age = decision_time − known_at); and maximal
marginal relevance over the candidates, ``λ * score − (1 − λ) * max cosine to those already chosen`` with
λ = 1 − diversity, to pick k. Ties go to the smaller episode id: the memory keeps its items sorted by id,
so the answer depends on the set of episodes, never on their order.

`LearningMemory` is one strategy's episodes and its distillations; `visible_patterns` returns the latest
distillation with ``as_of < decision_time`` (strict).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from neuraltrade.canonical import digest
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.patterns import Distillation, Pattern, finite_number, join_verdicts
from neuraltrade.timestamps import from_microseconds, microseconds_of, to_microseconds

if TYPE_CHECKING:
    from neuraltrade.learning.episodes import Episode
    from neuraltrade.learning.judge import Verdict

__all__ = [
    "EpisodeMemory",
    "LearningMemory",
    "RetrievalConfig",
    "Retrieved",
    "learning_memory",
    "reliability_of",
    "retrieve",
]

_MICROSECONDS_PER_DAY = 86_400_000_000


@dataclass(frozen=True, kw_only=True)
class RetrievalConfig:
    """How many episodes to return and how to score them; its digest is stored with what uses it.

    `diversity` is 1 − MMR's λ: 0 returns the k best combined scores, 1 only avoids resemblance.
    """

    k: int = 10
    candidates: int = 50
    similarity_weight: float = 0.6
    recency_weight: float = 0.2
    reliability_weight: float = 0.2
    recency_half_life_days: float = 365.0
    diversity: float = 0.3

    def __post_init__(self) -> None:
        for name in ("k", "candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, was {value!r}")
        if self.candidates < self.k:
            raise ConfigError(f"candidates ({self.candidates}) must be at least k ({self.k})")
        weights = ("similarity_weight", "recency_weight", "reliability_weight")
        for name in weights:
            value = getattr(self, name)
            if not finite_number(value) or value < 0:
                raise ConfigError(f"{name} must be a number >= 0, was {value!r}")
        if sum(getattr(self, name) for name in weights) <= 0:
            raise ConfigError("at least one of similarity_weight, recency_weight, reliability_weight must be > 0")
        if not finite_number(self.recency_half_life_days) or self.recency_half_life_days <= 0:
            raise ConfigError(f"recency_half_life_days must be a positive number, was {self.recency_half_life_days!r}")
        if not finite_number(self.diversity) or not 0.0 <= self.diversity <= 1.0:
            raise ConfigError(f"diversity must be in [0, 1], was {self.diversity!r}")

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, kw_only=True, eq=False)
class EpisodeMemory:
    """Judged episodes as arrays: unit entry-state vectors, known-at times, outcomes, sides, reliabilities.

    Items are kept sorted by episode id (the constructor sorts them), so two memories of the same episodes
    are identical whatever order they were given in. A zero vector stays zero (similarity 0 to everything).
    """

    ids: tuple[uuid.UUID, ...]
    vectors: np.ndarray
    known_at: np.ndarray
    success: np.ndarray
    score: np.ndarray
    side: np.ndarray
    reliability: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.ids)
        if len(set(self.ids)) != count or not all(isinstance(item, uuid.UUID) for item in self.ids):
            raise ValidationError("episode memory ids must be distinct UUIDs")
        vectors = np.array(self.vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != count or not np.isfinite(vectors).all():
            raise ValidationError(f"episode memory vectors must be a finite ({count}, d) array, was {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        columns = {
            "known_at": np.array(self.known_at, dtype=np.int64),
            "success": np.array(self.success, dtype=bool),
            "score": np.array(self.score, dtype=np.float64),
            "side": np.array(self.side, dtype=np.int8),
            "reliability": np.array(self.reliability, dtype=np.float64),
        }
        for name, column in columns.items():
            if column.shape != (count,):
                raise ValidationError(f"episode memory {name} must hold {count} values, was shape {column.shape}")
        if not np.isfinite(columns["score"]).all():
            raise ValidationError("episode memory scores must be finite")
        reliability = columns["reliability"]
        if not (np.isfinite(reliability).all() and ((reliability >= 0) & (reliability <= 1)).all()):
            raise ValidationError("episode memory reliabilities must lie in [0, 1]")
        if not np.isin(columns["side"], (1, -1)).all():
            raise ValidationError(
                f"episode memory sides must be +1 or -1, were {sorted(set(columns['side'].tolist()))}"
            )
        order = sorted(range(count), key=lambda index: str(self.ids[index]))
        object.__setattr__(self, "ids", tuple(self.ids[index] for index in order))
        object.__setattr__(self, "vectors", _readonly(np.ascontiguousarray(vectors[order])))
        for name, column in columns.items():
            object.__setattr__(self, name, _readonly(column[order]))

    @classmethod
    def build(
        cls,
        *,
        ids: Sequence[uuid.UUID],
        vectors: Sequence[Sequence[float]] | np.ndarray,
        known_at: Sequence[datetime | int] | np.ndarray,
        success: Sequence[bool] | np.ndarray,
        score: Sequence[float] | np.ndarray | None = None,
        side: Sequence[int] | np.ndarray | None = None,
        reliability: Sequence[float] | np.ndarray | None = None,
    ) -> EpisodeMemory:
        """Build from sequences; `known_at` as aware datetimes or epoch µs; defaults: score 0, long, reliability 1."""
        count = len(ids)
        array = np.asarray(vectors, dtype=np.float32)
        return cls(
            ids=tuple(ids),
            vectors=array if array.ndim == 2 else array.reshape(count, -1),
            known_at=np.array([microseconds_of("episode known_at", moment) for moment in known_at], dtype=np.int64),
            success=np.asarray(success, dtype=bool),
            score=np.zeros(count) if score is None else np.asarray(score, dtype=np.float64),
            side=np.ones(count, dtype=np.int8) if side is None else np.asarray(side, dtype=np.int8),
            reliability=np.ones(count) if reliability is None else np.asarray(reliability, dtype=np.float64),
        )

    @classmethod
    def empty(cls, dimension: int) -> EpisodeMemory:
        """A memory of no episodes, for vectors of `dimension`."""
        return cls.build(ids=(), vectors=np.zeros((0, dimension), dtype=np.float32), known_at=(), success=())

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dimension(self) -> int:
        """The vectors' dimension."""
        return int(self.vectors.shape[1])

    @property
    def digest(self) -> str:
        """SHA-256 over the ids, known-at times and outcomes, in id order (insertion order does not matter)."""
        hasher = hashlib.sha256()
        for index, item in enumerate(self.ids):
            hasher.update(f"{item}|{int(self.known_at[index])}|{int(self.success[index])};".encode())
        return hasher.hexdigest()

    def known_before(self, decision_time: datetime) -> np.ndarray:
        """The mask of episodes whose outcome was known strictly before `decision_time`."""
        return self.known_at < microseconds_of("decision_time", decision_time)

    def base_rate(self, decision_time: datetime, side: int | None = None) -> float | None:
        """The success share of the episodes known strictly before `decision_time` (of `side`), None if none."""
        mask = self.known_before(decision_time)
        if side is not None:
            mask &= self.side == side
        return float(self.success[mask].mean()) if mask.any() else None


@dataclass(frozen=True, kw_only=True)
class Retrieved:
    """One retrieved episode: its similarity, recency and reliability, the combined score, its outcome."""

    episode_id: uuid.UUID
    similarity: float
    recency: float
    reliability: float
    score: float
    success: bool
    known_at: datetime


def _top(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` largest values, largest first, ties by position (no full sort of big arrays)."""
    if values.size > count:
        threshold = np.partition(values, values.size - count)[values.size - count]
        above = np.flatnonzero(values > threshold)
        level = np.flatnonzero(values == threshold)[: count - above.size]
        chosen = np.concatenate([above, level])
    else:
        chosen = np.arange(values.size)
    return chosen[np.lexsort((chosen, -values[chosen]))]


def retrieve(
    memory: EpisodeMemory,
    query: np.ndarray,
    *,
    decision_time: datetime,
    side: int | None = None,
    config: RetrievalConfig = RetrievalConfig(),
) -> list[Retrieved]:
    """The k episodes known strictly before `decision_time` (of `side` if given), chosen as the module says."""
    now = microseconds_of("decision_time", decision_time)
    vector = np.asarray(query, dtype=np.float32).reshape(-1)
    if vector.size != memory.dimension or not np.isfinite(vector).all():
        raise ValidationError(f"query of {vector.size} values does not fit a memory of {memory.dimension}-d vectors")
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        raise ValidationError("query vector is zero; it has no direction to compare")
    visible = memory.known_at < now  # first: nothing known at or after the decision goes further
    if side is not None:
        visible &= memory.side == side
    positions = np.flatnonzero(visible)
    if positions.size == 0:
        return []
    # One product over the contiguous array is cheaper than gathering the visible rows first; only the
    # visible positions' similarities are read from it.
    similarity = (memory.vectors @ (vector / norm))[positions]
    candidates = positions[_top(similarity, config.candidates)]
    candidates.sort()  # id order, so that argmax below breaks ties by the smaller id
    similarity = (memory.vectors[candidates] @ (vector / norm)).astype(np.float64)
    age_days = (now - memory.known_at[candidates]) / _MICROSECONDS_PER_DAY
    recency = 0.5 ** (age_days / config.recency_half_life_days)
    reliability = memory.reliability[candidates]
    combined = (
        config.similarity_weight * similarity
        + config.recency_weight * recency
        + config.reliability_weight * reliability
    )
    resemblance = (memory.vectors[candidates] @ memory.vectors[candidates].T).astype(np.float64)
    relevance = 1.0 - config.diversity
    closest = np.full(candidates.size, -np.inf)
    remaining = np.ones(candidates.size, dtype=bool)
    chosen: list[int] = []
    for _ in range(min(config.k, candidates.size)):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        marginal = np.where(remaining, relevance * combined - config.diversity * penalty, -np.inf)
        pick = int(np.argmax(marginal))
        chosen.append(pick)
        remaining[pick] = False
        closest = np.maximum(closest, resemblance[pick])
    return [
        Retrieved(
            episode_id=memory.ids[candidates[pick]],
            similarity=float(similarity[pick]),
            recency=float(recency[pick]),
            reliability=float(reliability[pick]),
            score=float(combined[pick]),
            success=bool(memory.success[candidates[pick]]),
            known_at=from_microseconds(int(memory.known_at[candidates[pick]])),
        )
        for pick in chosen
    ]


@dataclass(frozen=True, kw_only=True, eq=False)
class LearningMemory:
    """What one strategy has learned: its judged episodes and its distillations (sorted by as_of, then id).

    `base_rate` is an optional fixed prior given by the caller; the point-in-time base rate is
    `base_rate_at(decision_time)` (a rate over every episode would count outcomes a decision could not know).
    """

    strategy: str
    episodes: EpisodeMemory
    distillations: tuple[tuple[Distillation, tuple[Pattern, ...]], ...] = ()
    base_rate: float | None = None

    def __post_init__(self) -> None:
        for distillation, patterns in self.distillations:
            if distillation.strategy != self.strategy:
                raise ValidationError(
                    f"distillation {distillation.id} is of strategy {distillation.strategy!r}, not {self.strategy!r}"
                )
            strays = [p.id for p in patterns if p.distillation_id != distillation.id]
            if strays:
                raise ValidationError(f"patterns {strays} do not belong to distillation {distillation.id}")
        ordered = sorted(
            ((d, tuple(ps)) for d, ps in self.distillations),
            key=lambda pair: (to_microseconds(pair[0].as_of), str(pair[0].id)),
        )
        object.__setattr__(self, "distillations", tuple(ordered))
        if self.base_rate is not None and not (finite_number(self.base_rate) and 0.0 <= self.base_rate <= 1.0):
            raise ValidationError(f"learning memory base_rate must be in [0, 1] or None, was {self.base_rate!r}")

    def visible_patterns(self, decision_time: datetime) -> tuple[Distillation, tuple[Pattern, ...]] | None:
        """The latest distillation with ``as_of < decision_time`` (strict) and its patterns, or None."""
        now = microseconds_of("decision_time", decision_time)
        visible = [pair for pair in self.distillations if to_microseconds(pair[0].as_of) < now]
        return visible[-1] if visible else None

    def base_rate_at(self, decision_time: datetime, side: int | None = None) -> float | None:
        """The success share of the episodes known strictly before `decision_time`, else `base_rate`."""
        rate = self.episodes.base_rate(decision_time, side)
        return self.base_rate if rate is None else rate

    @property
    def digest(self) -> str:
        """SHA-256 of the episodes' digest and the distillation ids."""
        return digest([self.strategy, self.episodes.digest, [str(d.id) for d, _ in self.distillations]])


def reliability_of(verdict: Verdict, horizon_bars: int) -> float:
    """How decisive a verdict's label is: |barrier return| in units of the horizon's σ move, capped at 1.

    A trade that hit a barrier moved about a full σ·√h or more and counts fully; one that drifted to the
    vertical barrier with a return near zero is close to a coin flip and counts little.
    """
    scale = verdict.volatility * math.sqrt(max(horizon_bars, 1))
    if not scale > 0:
        return 1.0 if verdict.barrier_return != 0 else 0.0
    return float(min(1.0, abs(verdict.barrier_return) / scale))


def learning_memory(
    strategy: str,
    episodes: Sequence[Episode],
    verdicts: Sequence[Verdict],
    vectors: Mapping[uuid.UUID, np.ndarray],
    distillations: Sequence[tuple[Distillation, Sequence[Pattern]]] = (),
    *,
    judge_digest: str | None = None,
    dimension: int | None = None,
) -> LearningMemory:
    """Join `strategy`'s episodes with their verdicts and entry-state vectors into a `LearningMemory`.

    `vectors` maps an episode id (or its entry observation id) to its entry-state vector. Episodes of other
    strategies, without a verdict or without a vector are left out. Each item is known at the later of the
    episode's ``outcome_known_at`` and its verdict's ``known_at``; success and score are the verdict's;
    reliability is `reliability_of`. `dimension` sizes an empty memory (default: the vectors' own).
    """
    # A memory is kept by strategy id (name and configuration: another configuration decides otherwise) or,
    # for a caller that pools configurations, by name.
    own = [episode for episode in episodes if strategy in (episode.strategy_id, episode.strategy)]
    rows = []
    for episode, verdict in join_verdicts(own, verdicts, judge_digest=judge_digest):
        vector = vectors.get(episode.id)
        if vector is None:
            vector = vectors.get(episode.entry_observation_id)
        if vector is not None:
            rows.append((episode, verdict, np.asarray(vector, dtype=np.float32).reshape(-1)))
    widths = sorted({vector.size for _, _, vector in rows})
    if len(widths) > 1:
        raise ValidationError(f"entry-state vectors of {strategy!r} have {widths} dimensions, not one")
    if not rows:
        sizes = {np.asarray(v).size for v in vectors.values()}
        width = dimension if dimension is not None else (sizes.pop() if len(sizes) == 1 else 0)
        memory = EpisodeMemory.empty(width)
    else:
        memory = EpisodeMemory.build(
            ids=[episode.id for episode, _, _ in rows],
            vectors=np.stack([vector for _, _, vector in rows]),
            known_at=[max(episode.outcome_known_at, verdict.known_at) for episode, verdict, _ in rows],
            success=[verdict.success for _, verdict, _ in rows],
            score=[verdict.score for _, verdict, _ in rows],
            side=[episode.side for episode, _, _ in rows],
            reliability=[reliability_of(verdict, episode.horizon_bars) for episode, verdict, _ in rows],
        )
    pairs = tuple((distillation, tuple(patterns)) for distillation, patterns in distillations)
    return LearningMemory(strategy=strategy, episodes=memory, distillations=pairs)
