"""Distillation: judged episodes grouped by state region and action into patterns with honest counts.

`distill` takes the `Outcome` of every judged episode of one strategy and, as of a moment, builds a
`Distillation` (what was used, how) and its `Pattern` records:

1. Cite every outcome of the strategy with ``known_at < as_of`` (strict); ignore the rest.
2. Standardise the state features (means and standard deviations of the cited outcomes, kept on the
   distillation so a later query lands in the same space; a constant feature gets scale 1).
3. Per side, cluster with scikit-learn's `HDBSCAN` (leaf selection, minimum cluster size
   ``max(min_cluster_size, ceil(min_cluster_share * n))``). Why leaf: excess-of-mass selection kept two
   regimes five standard deviations apart as one cluster in `bench/learning_distillation.py` (adjusted Rand
   index 0.57); leaf selection takes the finest dense cores, the share floor (default 5%) keeps it from
   splitting one regime into slivers (at 2%, a quarter of two-regime sets of 300 episodes came out as three
   patterns; at 5% and 10% none did, from 100 to 3,000 episodes), and step 4 consolidates. A region
   holding under 5% of a strategy's episodes is also too small for its test against the base rate to have
   power. Points HDBSCAN calls noise join the nearest core (by centroid), so a side's patterns partition its
   episodes; too few points, or no core, make one pattern.
4. Merge near-duplicates: while two same-side centroids lie closer than ``merge_distance``, union them.
5. Count: raw wins and trials, and decayed ones (each episode weighted ``0.5 ** (age_days /
   half_life_days)``, age = as_of − known_at). Beta posterior on the decayed counts; interval from
   `statsmodels.stats.proportion.proportion_confint` on the decayed counts (it accepts fractional counts;
   ``sum(w) <= effective sample size (sum w)^2 / sum w^2`` for weights <= 1, so the interval is conservative).
6. Prune patterns whose decayed support is below ``min_support`` (before testing: support does not depend on
   outcomes, so dropping them does not bias the test family).
7. Test each remaining pattern's raw counts against the base rate (the strategy's raw success share over all
   cited outcomes) with `scipy.stats.binomtest`, two-sided; Benjamini-Hochberg across them
   (`statsmodels.stats.multitest.multipletests`).
8. Prune patterns whose interval lower bound is below ``min_lower_bound``.
9. Flag contradictions: two patterns of one region (either centre inside the other's radius) that advise
   against each other, the same side judged both better and worse than base, or opposite sides both judged
   better (or both worse); a long that wins where a short loses is consistent. Rank by the interval's lower
   bound (descending, ties by id).

Deterministic: outcomes are sorted by episode id first, so the result does not depend on input order.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import binomtest
from sklearn.cluster import HDBSCAN
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from neuraltrade.canonical import digest, parse_timestamp, stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.records import Record
from neuraltrade.timestamps import require_aware, to_microseconds

if TYPE_CHECKING:
    from neuraltrade.learning.episodes import Episode
    from neuraltrade.learning.judge import Verdict

__all__ = [
    "INTERVAL_METHODS",
    "Distillation",
    "DistillationConfig",
    "Outcome",
    "Pattern",
    "distill",
    "join_verdicts",
    "match_pattern",
    "outcome_of",
]

#: The interval methods of `proportion_confint` a distillation may use.
INTERVAL_METHODS = ("jeffreys", "wilson")

_MICROSECONDS_PER_DAY = 86_400_000_000


@dataclass(frozen=True, kw_only=True, eq=False)
class Outcome:
    """One judged episode as distillation sees it: who acted, on which side, in what state, with what result."""

    episode_id: uuid.UUID
    strategy: str
    side: int
    features: np.ndarray
    success: bool
    known_at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.episode_id, uuid.UUID):
            raise ValidationError(f"outcome episode_id must be a UUID, was {self.episode_id!r}")
        if self.side not in (1, -1) or isinstance(self.side, bool):
            raise ValidationError(f"outcome {self.episode_id} side must be +1 or -1, was {self.side!r}")
        features = np.array(self.features, dtype=np.float64)
        if features.ndim != 1 or features.size == 0 or not np.isfinite(features).all():
            raise ValidationError(f"outcome {self.episode_id} features must be a finite 1-d vector, was {features!r}")
        features.flags.writeable = False
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "success", bool(self.success))
        object.__setattr__(self, "known_at", require_aware(f"outcome {self.episode_id} known_at", self.known_at))


def finite_number(value: object) -> bool:
    """Whether `value` is a finite int or float (not a bool): what the learning loop's configurations take."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class DistillationConfig:
    """How episodes are grouped, counted, tested and pruned; its digest is stored with each distillation.

    Attributes
    ----------
    min_cluster_size, min_cluster_share
        HDBSCAN's minimum cluster size is ``max(min_cluster_size, ceil(min_cluster_share * n))`` for a side of
        n episodes (its ``min_samples`` is ``min_samples``, or that size when None).
    half_life_days
        Age at which an episode's weight in the decayed counts halves.
    confidence, interval
        Interval level and `proportion_confint` method ("jeffreys" or "wilson").
    prior_successes, prior_failures
        The Beta prior (0.5, 0.5 is Jeffreys', consistent with the default interval).
    fdr
        Benjamini-Hochberg false-discovery rate of the tests against the base rate.
    merge_distance
        Same-side patterns whose standardised centroids lie closer are merged; patterns of opposite verdicts
        this close are flagged as contradicting each other.
    min_support, min_lower_bound
        Pruning floors: decayed trials, and the interval's lower bound.
    radius_quantile
        A pattern's radius is this quantile of its members' standardised distances to its centroid.
    """

    min_cluster_size: int = 8
    min_cluster_share: float = 0.05
    min_samples: int | None = None
    half_life_days: float = 365.0
    confidence: float = 0.95
    interval: str = "jeffreys"
    prior_successes: float = 0.5
    prior_failures: float = 0.5
    fdr: float = 0.10
    merge_distance: float = 0.5
    min_support: float = 5.0
    min_lower_bound: float = 0.0
    radius_quantile: float = 0.95

    def __post_init__(self) -> None:
        for name in ("min_cluster_size", "min_samples"):
            value = getattr(self, name)
            if name == "min_samples" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ConfigError(f"{name} must be an integer >= 2, was {value!r}")
        for name in ("half_life_days", "merge_distance", "min_support"):
            value = getattr(self, name)
            if not finite_number(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, was {value!r}")
        for name in ("prior_successes", "prior_failures"):
            value = getattr(self, name)
            if not finite_number(value) or value < 0:
                raise ConfigError(f"{name} must be a number >= 0, was {value!r}")
        for name in ("min_cluster_share", "min_lower_bound", "radius_quantile"):
            value = getattr(self, name)
            if not finite_number(value) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], was {value!r}")
        for name in ("confidence", "fdr"):
            value = getattr(self, name)
            if not finite_number(value) or not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), was {value!r}")
        if self.interval not in INTERVAL_METHODS:
            raise ConfigError(f"interval must be one of {', '.join(INTERVAL_METHODS)}, was {self.interval!r}")

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


def _uuids(values: Sequence[Any]) -> tuple[uuid.UUID, ...]:
    return tuple(value if isinstance(value, uuid.UUID) else uuid.UUID(value) for value in values)


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


@dataclass(frozen=True, kw_only=True)
class Pattern(Record):
    """A state region and action of one strategy, with its counts, posterior, interval and test against base.

    `centroid` and `radius` live in the distillation's standardised feature space; `members` are the
    episode ids (sorted); `wins`/`trials` are raw counts, `decayed_wins`/`decayed_trials` the half-life
    weighted ones, `alpha`/`beta` the Beta posterior on the decayed counts, `interval_low`/`interval_high`
    its interval; `p_value` is the exact binomial test of the raw counts against `base_rate`, `q_value` its
    Benjamini-Hochberg adjustment, `better_than_base`/`worse_than_base` the significant direction;
    `contradicts` names patterns of opposite verdict in the same region; `rank` is 1 for the highest lower bound.
    """

    KIND = "pattern"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    distillation_id: uuid.UUID
    strategy: str
    side: int
    centroid: tuple[float, ...]
    radius: float
    members: tuple[uuid.UUID, ...]
    wins: int
    trials: int
    decayed_wins: float
    decayed_trials: float
    alpha: float
    beta: float
    interval_low: float
    interval_high: float
    base_rate: float
    p_value: float
    q_value: float
    better_than_base: bool
    worse_than_base: bool
    contradicts: tuple[uuid.UUID, ...] = ()
    rank: int = 1

    def __post_init__(self) -> None:
        name = f"pattern {self.id}"
        if self.side not in (1, -1) or isinstance(self.side, bool):
            raise ValidationError(f"{name} side must be +1 or -1, was {self.side!r}")
        if not self.members or list(self.members) != sorted(self.members, key=str):
            raise ValidationError(f"{name} members must be a non-empty sorted tuple of episode ids")
        if not 0 <= self.wins <= self.trials == len(self.members):
            raise ValidationError(f"{name} needs 0 <= wins <= trials = members, was {self.wins}/{self.trials}")
        for label in ("radius", "decayed_wins", "decayed_trials", "alpha", "beta", "p_value", "q_value"):
            value = getattr(self, label)
            if not finite_number(value) or value < 0:
                raise ValidationError(f"{name} {label} must be a finite number >= 0, was {value!r}")
        if not 0.0 <= self.interval_low <= self.interval_high <= 1.0:
            raise ValidationError(f"{name} interval [{self.interval_low!r}, {self.interval_high!r}] is not in [0, 1]")
        if self.rank < 1:
            raise ValidationError(f"{name} rank must be >= 1, was {self.rank!r}")

    @property
    def probability(self) -> float:
        """The posterior mean probability of success, α / (α + β)."""
        return self.alpha / (self.alpha + self.beta)

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Pattern:
        floats = ("radius", "decayed_wins", "decayed_trials", "alpha", "beta", "interval_low", "interval_high")
        return cls(
            **{
                **plain,
                **{name: float(plain[name]) for name in (*floats, "base_rate", "p_value", "q_value")},
                "id": uuid.UUID(plain["id"]),
                "distillation_id": uuid.UUID(plain["distillation_id"]),
                "centroid": _floats(plain["centroid"]),
                "members": _uuids(plain["members"]),
                "contradicts": _uuids(plain["contradicts"]),
            }
        )


@dataclass(frozen=True, kw_only=True)
class Distillation(Record):
    """One distillation run of one strategy as of a moment: the episodes it cited and the patterns it kept.

    `base_rate` is None when no episode was cited. `pattern_ids` are in rank order; `pruned`, `merged` and
    `contradictions` count patterns pruned, clusters merged away, and contradicting pairs.
    """

    KIND = "distillation"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    strategy: str
    as_of: datetime
    config_digest: str
    episode_ids: tuple[uuid.UUID, ...]
    feature_means: tuple[float, ...]
    feature_scales: tuple[float, ...]
    base_rate: float | None
    pattern_ids: tuple[uuid.UUID, ...] = ()
    pruned: int = 0
    merged: int = 0
    contradictions: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", require_aware(f"distillation {self.id} as_of", self.as_of))
        if len(self.feature_means) != len(self.feature_scales):
            raise ValidationError(f"distillation {self.id} has {len(self.feature_means)} means and scales of another")

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Distillation:
        base = plain["base_rate"]
        return cls(
            **{
                **plain,
                "id": uuid.UUID(plain["id"]),
                "as_of": parse_timestamp(plain["as_of"]),
                "episode_ids": _uuids(plain["episode_ids"]),
                "feature_means": _floats(plain["feature_means"]),
                "feature_scales": _floats(plain["feature_scales"]),
                "base_rate": None if base is None else float(base),
                "pattern_ids": _uuids(plain["pattern_ids"]),
            }
        )


@dataclass(kw_only=True)
class _Group:
    """A cluster under construction: positions into the sorted cited outcomes."""

    side: int
    rows: np.ndarray
    values: dict[str, Any] = field(default_factory=dict)


def _cluster_side(points: np.ndarray, config: DistillationConfig) -> np.ndarray:
    """Labels 0..k-1 for every point: HDBSCAN's leaf cores, noise joined to the nearest core."""
    size = max(config.min_cluster_size, math.ceil(config.min_cluster_share * len(points)))
    if len(points) < max(size, 2):
        return np.zeros(len(points), dtype=np.int64)
    labels = HDBSCAN(
        min_cluster_size=size, min_samples=config.min_samples, cluster_selection_method="leaf", copy=True
    ).fit_predict(points)
    cores = int(labels.max()) + 1
    if cores == 0:
        return np.zeros(len(points), dtype=np.int64)
    centroids = np.stack([points[labels == label].mean(axis=0) for label in range(cores)])
    nearest = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=-1).argmin(axis=1)
    return np.where(labels < 0, nearest, labels).astype(np.int64)


def _merge(points: np.ndarray, labels: np.ndarray, distance: float) -> tuple[np.ndarray, int]:
    """Union the closest pair of clusters while their centroids lie closer than `distance`."""
    labels = labels.copy()
    merged = 0
    while True:
        present = np.unique(labels)
        if len(present) < 2:
            return labels, merged
        centroids = np.stack([points[labels == label].mean(axis=0) for label in present])
        gaps = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=-1)
        np.fill_diagonal(gaps, np.inf)
        first, second = np.unravel_index(int(np.argmin(gaps)), gaps.shape)  # the first minimum: deterministic
        if gaps[first, second] >= distance:
            return labels, merged
        labels[labels == present[max(first, second)]] = present[min(first, second)]
        merged += 1


def _verdict(values: dict[str, Any]) -> int:
    """+1 if the pattern is judged better than its base rate (after BH, or its interval above one half), -1 if
    worse, 0 if neither."""
    if values["better_than_base"] or values["interval_low"] > 0.5:
        return 1
    if values["worse_than_base"] or values["interval_high"] < 0.5:
        return -1
    return 0


def _contradict(one: dict[str, Any], one_side: int, other: dict[str, Any], other_side: int) -> bool:
    """Whether two patterns of one region give contradicting advice: the same action judged both better and
    worse than base, or opposite actions both judged better (or both worse). A long that wins where a short
    loses is one consistent lesson, not a contradiction."""
    first, second = _verdict(one), _verdict(other)
    if not first or not second:
        return False
    return first != second if one_side == other_side else first == second


def _cited(outcomes: Sequence[Outcome], strategy: str, as_of: datetime) -> list[Outcome]:
    """The outcomes of `strategy` known strictly before `as_of`, in episode-id order."""
    cutoff = to_microseconds(as_of)
    cited_by_id: dict[uuid.UUID, Outcome] = {}
    for outcome in outcomes:
        if outcome.strategy != strategy or to_microseconds(outcome.known_at) >= cutoff:
            continue
        if outcome.episode_id in cited_by_id:
            raise ValidationError(f"episode {outcome.episode_id} is given twice to the distillation of {strategy!r}")
        cited_by_id[outcome.episode_id] = outcome
    return sorted(cited_by_id.values(), key=lambda outcome: str(outcome.episode_id))


def distillation_id_for(
    outcomes: Sequence[Outcome], *, strategy: str, as_of: datetime, config: DistillationConfig = DistillationConfig()
) -> uuid.UUID:
    """The id `distill` gives the distillation of these arguments, without distilling: it names what was
    distilled (strategy, as_of, configuration, the episodes cited), so a stored one need not be made again."""
    as_of = require_aware("distillation as_of", as_of)
    cited = [str(outcome.episode_id) for outcome in _cited(outcomes, strategy, as_of)]
    return stable_id("distillation", strategy, as_of, config.digest, cited)


def distill(
    outcomes: Sequence[Outcome], *, strategy: str, as_of: datetime, config: DistillationConfig = DistillationConfig()
) -> tuple[Distillation, tuple[Pattern, ...]]:
    """Distill the outcomes of `strategy` known strictly before `as_of` into ranked patterns (module docstring)."""
    as_of = require_aware("distillation as_of", as_of)
    cited = _cited(outcomes, strategy, as_of)
    episode_ids = tuple(outcome.episode_id for outcome in cited)
    config_digest = config.digest
    distillation_id = distillation_id_for(outcomes, strategy=strategy, as_of=as_of, config=config)
    if not cited:
        empty = Distillation(
            id=distillation_id, strategy=strategy, as_of=as_of, config_digest=config_digest, episode_ids=(),
            feature_means=(), feature_scales=(), base_rate=None,
        )  # fmt: skip
        return empty, ()
    dimensions = {outcome.features.size for outcome in cited}
    if len(dimensions) > 1:
        raise ValidationError(f"outcomes of {strategy!r} have features of {sorted(dimensions)} dimensions, not one")

    features = np.stack([outcome.features for outcome in cited])
    means = features.mean(axis=0)
    scales = features.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)  # a constant feature separates nothing; keep it at its scale
    points = (features - means) / scales
    success = np.array([outcome.success for outcome in cited], dtype=bool)
    sides = np.array([outcome.side for outcome in cited], dtype=np.int64)
    cutoff = to_microseconds(as_of)
    ages = np.array([cutoff - to_microseconds(outcome.known_at) for outcome in cited], dtype=np.float64)
    weights = 0.5 ** (ages / _MICROSECONDS_PER_DAY / config.half_life_days)
    base_rate = float(success.mean())

    groups: list[_Group] = []
    merged = 0
    for side in (1, -1):
        rows = np.flatnonzero(sides == side)
        if rows.size == 0:
            continue
        labels, side_merged = _merge(points[rows], _cluster_side(points[rows], config), config.merge_distance)
        merged += side_merged
        groups.extend(_Group(side=side, rows=rows[labels == label]) for label in np.unique(labels))

    kept: list[_Group] = []
    pruned = 0
    for group in groups:
        values = group.values
        values["decayed_trials"] = float(weights[group.rows].sum())
        if values["decayed_trials"] < config.min_support:
            pruned += 1
            continue
        values["decayed_wins"] = float(weights[group.rows][success[group.rows]].sum())
        values["wins"] = int(success[group.rows].sum())
        values["trials"] = int(group.rows.size)
        low, high = proportion_confint(
            values["decayed_wins"], values["decayed_trials"], alpha=1.0 - config.confidence, method=config.interval
        )
        values["interval_low"], values["interval_high"] = float(np.clip(low, 0, 1)), float(np.clip(high, 0, 1))
        values["p_value"] = float(binomtest(values["wins"], values["trials"], base_rate).pvalue)
        kept.append(group)

    if kept:
        rejected, adjusted, _, _ = multipletests([g.values["p_value"] for g in kept], alpha=config.fdr, method="fdr_bh")
        for group, reject, q_value in zip(kept, rejected, adjusted, strict=True):
            share = group.values["wins"] / group.values["trials"]
            group.values["q_value"] = float(min(q_value, 1.0))
            group.values["better_than_base"] = bool(reject and share > base_rate)
            group.values["worse_than_base"] = bool(reject and share < base_rate)
    surviving = [g for g in kept if g.values["interval_low"] >= config.min_lower_bound]
    pruned += len(kept) - len(surviving)

    for group in surviving:
        members = tuple(sorted((episode_ids[row] for row in group.rows), key=str))
        centroid = points[group.rows].mean(axis=0)
        distances = np.linalg.norm(points[group.rows] - centroid, axis=1)
        group.values.update(
            id=stable_id("pattern", distillation_id, group.side, [str(member) for member in members]),
            members=members,
            centroid=centroid,
            radius=float(np.quantile(distances, config.radius_quantile)),
        )
    contradicts: dict[uuid.UUID, list[uuid.UUID]] = {g.values["id"]: [] for g in surviving}
    pairs = 0
    for index, one in enumerate(surviving):
        for other in surviving[index + 1 :]:
            gap = float(np.linalg.norm(one.values["centroid"] - other.values["centroid"]))
            # One region: either centre lies inside the other's region.
            region = max(one.values["radius"], other.values["radius"], config.merge_distance)
            if gap < region and _contradict(one.values, one.side, other.values, other.side):
                contradicts[one.values["id"]].append(other.values["id"])
                contradicts[other.values["id"]].append(one.values["id"])
                pairs += 1

    ordered = sorted(surviving, key=lambda g: (-g.values["interval_low"], str(g.values["id"])))
    patterns = []
    for rank, group in enumerate(ordered, start=1):
        values = group.values
        patterns.append(
            Pattern(
                id=values["id"], distillation_id=distillation_id, strategy=strategy, side=group.side,
                centroid=tuple(float(x) for x in values["centroid"]), radius=values["radius"],
                members=values["members"], wins=values["wins"], trials=values["trials"],
                decayed_wins=values["decayed_wins"], decayed_trials=values["decayed_trials"],
                alpha=config.prior_successes + values["decayed_wins"],
                beta=config.prior_failures + values["decayed_trials"] - values["decayed_wins"],
                interval_low=values["interval_low"], interval_high=values["interval_high"], base_rate=base_rate,
                p_value=values["p_value"], q_value=values["q_value"],
                better_than_base=values["better_than_base"], worse_than_base=values["worse_than_base"],
                contradicts=tuple(sorted(contradicts[values["id"]], key=str)), rank=rank,
            )
        )  # fmt: skip
    distillation = Distillation(
        id=distillation_id, strategy=strategy, as_of=as_of, config_digest=config_digest, episode_ids=episode_ids,
        feature_means=tuple(float(x) for x in means), feature_scales=tuple(float(x) for x in scales),
        base_rate=base_rate, pattern_ids=tuple(p.id for p in patterns), pruned=pruned, merged=merged,
        contradictions=pairs,
    )  # fmt: skip
    return distillation, tuple(patterns)


def match_pattern(
    distillation: Distillation, patterns: Sequence[Pattern], features: np.ndarray, side: int
) -> Pattern | None:
    """The same-side pattern of `distillation` whose radius holds `features` and whose centroid is nearest.

    None if no pattern's region holds the state. Ties go to the better rank.
    """
    vector = np.asarray(features, dtype=np.float64)
    if vector.shape != (len(distillation.feature_means),) or not np.isfinite(vector).all():
        raise ValidationError(
            f"features {vector!r} do not fit distillation {distillation.id}'s {len(distillation.feature_means)}-d space"
        )
    point = (vector - np.asarray(distillation.feature_means)) / np.asarray(distillation.feature_scales)
    best: tuple[float, int, Pattern] | None = None
    for pattern in patterns:
        if pattern.side != side or pattern.distillation_id != distillation.id:
            continue
        gap = float(np.linalg.norm(point - np.asarray(pattern.centroid)))
        if gap <= pattern.radius and (best is None or (gap, pattern.rank) < best[:2]):
            best = (gap, pattern.rank, pattern)
    return None if best is None else best[2]


def join_verdicts(
    episodes: Sequence[Episode], verdicts: Sequence[Verdict], *, judge_digest: str | None = None
) -> list[tuple[Episode, Verdict]]:
    """Pair each episode with its verdict (episodes without one are left out), in episode-id order.

    With `judge_digest` only that judge's verdicts count; without it the verdicts must all come from one
    judge (two definitions of success cannot be pooled), else `ValidationError` names the digests.
    """
    chosen = [v for v in verdicts if judge_digest is None or v.judge_digest == judge_digest]
    digests = sorted({verdict.judge_digest for verdict in chosen})
    if len(digests) > 1:
        raise ValidationError(f"verdicts come from {len(digests)} judges ({', '.join(digests)}); name one")
    by_episode: Mapping[uuid.UUID, Verdict] = {verdict.episode_id: verdict for verdict in chosen}
    pairs = [(episode, by_episode[episode.id]) for episode in episodes if episode.id in by_episode]
    return sorted(pairs, key=lambda pair: str(pair[0].id))


def outcome_of(episode: Episode, verdict: Verdict) -> Outcome:
    """The `Outcome` of a judged episode; known at the later of the episode's and the verdict's times."""
    if verdict.episode_id != episode.id:
        raise ValidationError(f"verdict {verdict.id} judges episode {verdict.episode_id}, not {episode.id}")
    return Outcome(
        episode_id=episode.id,
        strategy=episode.strategy,
        side=episode.side,
        features=np.asarray(episode.state_features, dtype=np.float64),
        success=verdict.success,
        known_at=max(episode.outcome_known_at, verdict.known_at),
    )


def one_per_checkpoint(
    stored: Sequence[tuple[Distillation, Sequence[Pattern]]], config_digest: str
) -> list[tuple[Distillation, tuple[Pattern, ...]]]:
    """The distillations of `config_digest` among `stored`, one per ``as_of``, in time order: of several at
    one ``as_of`` (a later night learnt of more episodes known before the same checkpoint), the one citing
    the most episodes, then the greatest id."""
    best: dict[datetime, tuple[Distillation, tuple[Pattern, ...]]] = {}
    for distillation, patterns in stored:
        if distillation.config_digest != config_digest:
            continue
        held = best.get(distillation.as_of)
        rank = (len(distillation.episode_ids), distillation.id.int)
        if held is None or rank > (len(held[0].episode_ids), held[0].id.int):
            best[distillation.as_of] = (distillation, tuple(patterns))
    return [best[moment] for moment in sorted(best)]
