"""Distillation: planted clusters are found, counts and intervals are exact, decay, BH, merge, contradictions,
pruning, ranking, point in time and order independence."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from statsmodels.stats.proportion import proportion_confint

from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.patterns import (
    Distillation,
    DistillationConfig,
    Outcome,
    Pattern,
    distill,
    distillation_id_for,
    match_pattern,
)

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
CENTRES = np.array([[1.5, -0.3, 1.0, 0.8], [-1.5, 0.3, -1.0, 0.2]])
SPREADS = np.array([0.4, 0.1, 0.4, 0.1])
NO_DECAY = 1e9  # days: weights of 1 to within 1e-6


def episode_id(generator: np.random.Generator) -> uuid.UUID:
    return uuid.UUID(bytes=generator.bytes(16), version=4)


def outcome(generator, features, success, *, age_days=10.0, side=1, strategy="s"):
    return Outcome(
        episode_id=episode_id(generator),
        strategy=strategy,
        side=side,
        features=np.asarray(features, dtype=float),
        success=bool(success),
        known_at=AS_OF - timedelta(days=age_days),
    )


def blobs(seed, per_blob=150, rates=(0.65, 0.45), centres=CENTRES, side=1):
    """Outcomes from separated Gaussian blobs with the given win rates; also each one's true blob."""
    generator = np.random.default_rng(seed)
    outcomes, truth = [], []
    for blob, rate in enumerate(rates):
        points = centres[blob] + generator.standard_normal((per_blob, centres.shape[1])) * SPREADS
        wins = generator.random(per_blob) < rate
        ages = generator.uniform(1, 700, per_blob)
        for point, win, age in zip(points, wins, ages, strict=True):
            outcomes.append(outcome(generator, point, win, age_days=float(age), side=side))
            truth.append(blob)
    return outcomes, np.asarray(truth)


def labels_of(outcomes, patterns):
    where = {member: index for index, pattern in enumerate(patterns) for member in pattern.members}
    return np.array([where.get(item.episode_id, -1) for item in outcomes])


def test_distillation_recovers_planted_clusters_and_ranks_the_winning_one_first():
    outcomes, truth = blobs(seed=3)
    distillation, patterns = distill(outcomes, strategy="s", as_of=AS_OF)
    assert len(patterns) == 2
    assert adjusted_rand_score(truth, labels_of(outcomes, patterns)) >= 0.95
    best = patterns[0]
    assert best.rank == 1 and patterns[1].rank == 2
    held = {item.episode_id for item, blob in zip(outcomes, truth, strict=True) if blob == 0}
    assert len(held & set(best.members)) >= 0.95 * len(best.members)
    assert best.interval_low <= 0.65 <= best.interval_high
    assert distillation.pattern_ids == tuple(p.id for p in patterns)
    assert distillation.base_rate == pytest.approx(np.mean([item.success for item in outcomes]))


def test_counts_and_beta_posterior_are_exact_on_a_hand_example():
    generator = np.random.default_rng(0)
    config = DistillationConfig(half_life_days=100.0, min_support=1.0)
    # Six outcomes, too few for a cluster: one pattern. Ages 100 days (weight 1/2) and 200 days (weight 1/4).
    rows = [(True, 100.0), (True, 100.0), (False, 100.0), (True, 200.0), (False, 200.0), (False, 200.0)]
    outcomes = [outcome(generator, [0.1 * i, 0.0], win, age_days=age) for i, (win, age) in enumerate(rows)]
    _, (pattern,) = distill(outcomes, strategy="s", as_of=AS_OF, config=config)
    assert (pattern.wins, pattern.trials) == (3, 6)
    assert pattern.decayed_wins == pytest.approx(0.5 + 0.5 + 0.25)
    assert pattern.decayed_trials == pytest.approx(3 * 0.5 + 3 * 0.25)
    assert pattern.alpha == pytest.approx(0.5 + 1.25)
    assert pattern.beta == pytest.approx(0.5 + 2.25 - 1.25)
    assert pattern.probability == pytest.approx(1.75 / 3.25)
    assert pattern.base_rate == 0.5
    assert pattern.members == tuple(sorted((item.episode_id for item in outcomes), key=str))


@pytest.mark.parametrize("method", ["jeffreys", "wilson"])
def test_the_interval_is_statsmodels_figure(method):
    generator = np.random.default_rng(1)
    outcomes = [outcome(generator, [0.0, 0.1 * i], True) for i in range(3)]
    config = DistillationConfig(interval=method, half_life_days=NO_DECAY, min_support=1.0)
    _, (pattern,) = distill(outcomes, strategy="s", as_of=AS_OF, config=config)
    low, high = proportion_confint(3, 3, alpha=0.05, method=method)
    assert (pattern.interval_low, pattern.interval_high) == pytest.approx((low, high), abs=1e-6)
    if method == "wilson":  # the figure the issue quotes: three wins of three prove little
        assert pattern.interval_low == pytest.approx(0.4385, abs=1e-4)
    decayed = DistillationConfig(interval=method, half_life_days=5.0, min_support=0.1)  # weights 1/4
    _, (older,) = distill(outcomes, strategy="s", as_of=AS_OF, config=decayed)
    expected = proportion_confint(older.decayed_wins, older.decayed_trials, alpha=0.05, method=method)
    assert (older.interval_low, older.interval_high) == pytest.approx(expected)


def test_decay_halves_the_weight_at_one_half_life_and_widens_the_interval():
    generator = np.random.default_rng(2)
    wins = [True] * 7 + [False] * 3
    config = DistillationConfig(half_life_days=365.0, min_support=1.0)
    fresh = [outcome(generator, [0.0, 0.01 * i], win, age_days=1e-6) for i, win in enumerate(wins)]
    aged = [outcome(generator, [0.0, 0.01 * i], win, age_days=365.0) for i, win in enumerate(wins)]
    _, (new,) = distill(fresh, strategy="s", as_of=AS_OF, config=config)
    _, (old,) = distill(aged, strategy="s", as_of=AS_OF, config=config)
    assert new.decayed_trials == pytest.approx(10.0)
    assert old.decayed_trials == pytest.approx(5.0) and old.decayed_wins == pytest.approx(3.5)
    assert (old.wins, old.trials) == (new.wins, new.trials) == (7, 10)
    assert old.interval_high - old.interval_low > new.interval_high - new.interval_low
    assert old.interval_low < new.interval_low


def test_benjamini_hochberg_rarely_flags_anything_on_a_null_set():
    three = np.vstack([CENTRES, [[0.0, 0.6, 0.0, 0.5]]])
    flagged = patterns_seen = seeds_with_a_flag = 0
    for seed in range(50):
        outcomes, _ = blobs(seed, per_blob=40, rates=(0.5, 0.5, 0.5), centres=three)
        _, patterns = distill(outcomes, strategy="s", as_of=AS_OF)
        count = sum(p.better_than_base or p.worse_than_base for p in patterns)
        flagged += count
        patterns_seen += len(patterns)
        seeds_with_a_flag += count > 0
    assert patterns_seen >= 100
    assert flagged / patterns_seen <= 0.05
    assert seeds_with_a_flag / 50 <= 0.12  # BH at q = 0.10 bounds the chance of any flag under the null


def test_a_planted_difference_is_flagged_by_direction():
    outcomes, _ = blobs(seed=5, per_blob=300, rates=(0.75, 0.35))
    _, patterns = distill(outcomes, strategy="s", as_of=AS_OF)
    winner, loser = patterns
    assert winner.better_than_base and not winner.worse_than_base and winner.q_value < 0.1
    assert loser.worse_than_base and not loser.better_than_base
    assert winner.q_value >= winner.p_value


def test_near_duplicates_merge_into_one_pattern_with_recounted_members():
    outcomes, _ = blobs(seed=6)
    _, apart = distill(outcomes, strategy="s", as_of=AS_OF)
    merged, together = distill(outcomes, strategy="s", as_of=AS_OF, config=DistillationConfig(merge_distance=10.0))
    assert len(apart) == 2 and len(together) == 1
    assert merged.merged == 1
    (whole,) = together
    assert whole.trials == len(outcomes) == sum(p.trials for p in apart)
    assert whole.wins == sum(p.wins for p in apart)


def test_contradicting_advice_in_one_region_is_flagged_and_consistent_advice_is_not():
    generator = np.random.default_rng(7)
    points = CENTRES[0] + generator.standard_normal((120, 4)) * SPREADS
    # Longs and shorts both winning in one region: the memory recommends two opposite actions.
    longs = [outcome(generator, p, generator.random() < 0.9, side=1) for p in points[:60]]
    shorts = [outcome(generator, p, generator.random() < 0.9, side=-1) for p in points[60:]]
    elsewhere = CENTRES[1] + generator.standard_normal((60, 4)) * SPREADS
    lows = [outcome(generator, p, generator.random() < 0.15, side=1) for p in elsewhere]
    distillation, patterns = distill(longs + shorts + lows, strategy="s", as_of=AS_OF)
    long_pattern = next(p for p in patterns if p.side == 1 and p.better_than_base)
    short_pattern = next(p for p in patterns if p.side == -1)
    assert short_pattern.better_than_base
    assert long_pattern.contradicts == (short_pattern.id,) and short_pattern.contradicts == (long_pattern.id,)
    assert distillation.contradictions == 1
    # Longs winning where shorts lose is one consistent lesson.
    losing = [outcome(generator, p, generator.random() < 0.1, side=-1) for p in points[60:]]
    _, consistent = distill(longs + losing, strategy="s", as_of=AS_OF)
    assert {p.side for p in consistent} == {1, -1} and all(p.contradicts == () for p in consistent)
    _, apart = distill(blobs(seed=8, rates=(0.9, 0.1))[0], strategy="s", as_of=AS_OF)
    assert all(p.contradicts == () for p in apart)  # opposite verdicts, but in different regions


def test_patterns_below_the_support_or_confidence_floor_are_pruned_and_counted():
    outcomes, _ = blobs(seed=9, per_blob=150, rates=(0.8, 0.3))
    generator = np.random.default_rng(9)
    few_shorts = [outcome(generator, CENTRES[0], True, side=-1) for _ in range(3)]
    distillation, patterns = distill(outcomes + few_shorts, strategy="s", as_of=AS_OF)
    assert {p.side for p in patterns} == {1} and distillation.pruned == 1
    assert len(distillation.episode_ids) == len(outcomes) + 3  # pruned patterns' episodes are still cited
    strict = DistillationConfig(min_lower_bound=0.5)
    pruned, kept = distill(outcomes + few_shorts, strategy="s", as_of=AS_OF, config=strict)
    assert len(kept) == 1 and kept[0].interval_low >= 0.5 and pruned.pruned == 2


def test_patterns_are_ranked_by_the_interval_lower_bound():
    three = np.vstack([CENTRES, [[0.0, 0.6, 0.0, 0.5]]])
    outcomes, _ = blobs(seed=10, per_blob=120, rates=(0.5, 0.8, 0.3), centres=three)
    _, patterns = distill(outcomes, strategy="s", as_of=AS_OF)
    assert len(patterns) == 3
    lows = [p.interval_low for p in patterns]
    assert lows == sorted(lows, reverse=True)
    assert [p.rank for p in patterns] == [1, 2, 3]


def test_outcomes_known_at_or_after_as_of_or_of_another_strategy_are_never_cited():
    outcomes, _ = blobs(seed=11, per_blob=60)
    generator = np.random.default_rng(11)
    at = [outcome(generator, CENTRES[0], True, age_days=0.0) for _ in range(20)]
    after = [outcome(generator, CENTRES[0], True, age_days=-5.0) for _ in range(20)]
    other = [outcome(generator, CENTRES[0], True, strategy="other") for _ in range(20)]
    distillation, patterns = distill(outcomes + at + after + other, strategy="s", as_of=AS_OF)
    alone, alone_patterns = distill(outcomes, strategy="s", as_of=AS_OF)
    excluded = {item.episode_id for item in at + after + other}
    assert not excluded & set(distillation.episode_ids)
    assert not excluded & {member for p in patterns for member in p.members}
    assert (distillation, patterns) == (alone, alone_patterns)
    assert set(distillation.episode_ids) == {item.episode_id for item in outcomes}


def test_the_result_is_independent_of_input_order():
    outcomes, _ = blobs(seed=12, per_blob=80)
    first = distill(outcomes, strategy="s", as_of=AS_OF)
    generator = np.random.default_rng(12)
    for _ in range(3):
        shuffled = [outcomes[i] for i in generator.permutation(len(outcomes))]
        assert distill(shuffled, strategy="s", as_of=AS_OF) == first


def test_distillations_and_patterns_read_back_from_their_canonical_form():
    outcomes, _ = blobs(seed=13, per_blob=60)
    distillation, patterns = distill(outcomes, strategy="s", as_of=AS_OF)
    assert Distillation.from_canonical(distillation.canonical_bytes()) == distillation
    for pattern in patterns:
        assert Pattern.from_canonical(pattern.canonical_bytes()) == pattern
    empty, none = distill([], strategy="s", as_of=AS_OF)
    assert none == () and empty.base_rate is None
    assert Distillation.from_canonical(empty.canonical_bytes()) == empty


def test_match_pattern_finds_the_region_holding_a_state_on_the_same_side_only():
    outcomes, truth = blobs(seed=14)
    distillation, patterns = distill(outcomes, strategy="s", as_of=AS_OF)
    found = match_pattern(distillation, patterns, CENTRES[0], side=1)
    assert found is not None
    assert set(found.members) == {item.episode_id for item, blob in zip(outcomes, truth, strict=True) if blob == 0}
    assert match_pattern(distillation, patterns, CENTRES[1], side=1) not in (None, found)
    assert match_pattern(distillation, patterns, CENTRES[0], side=-1) is None
    assert match_pattern(distillation, patterns, np.array([30.0, 5.0, 30.0, 5.0]), side=1) is None
    with pytest.raises(ValidationError, match="do not fit"):
        match_pattern(distillation, patterns, np.zeros(3), side=1)


def test_bad_inputs_and_configs_are_refused_by_name():
    generator = np.random.default_rng(15)
    with pytest.raises(ValidationError, match="side"):
        outcome(generator, [0.0], True, side=0)
    with pytest.raises(ValidationError, match="features"):
        outcome(generator, [float("nan")], True)
    with pytest.raises(ValidationError, match="naive"):
        Outcome(episode_id=uuid.uuid4(), strategy="s", side=1, features=np.zeros(2), success=True,
                known_at=datetime(2024, 1, 1))  # fmt: skip
    same = outcome(generator, [0.0, 1.0], True)
    with pytest.raises(ValidationError, match="twice"):
        distill([same, same], strategy="s", as_of=AS_OF)
    with pytest.raises(ValidationError, match="dimensions"):
        distill([same, outcome(generator, [0.0], True)], strategy="s", as_of=AS_OF)
    with pytest.raises(ValidationError, match="naive"):
        distill([same], strategy="s", as_of=datetime(2025, 1, 1))
    with pytest.raises(ConfigError, match="interval"):
        DistillationConfig(interval="wald")
    with pytest.raises(ConfigError, match="fdr"):
        DistillationConfig(fdr=0.0)
    with pytest.raises(ConfigError, match="min_cluster_size"):
        DistillationConfig(min_cluster_size=1)
    assert DistillationConfig().digest == DistillationConfig().digest != DistillationConfig(fdr=0.05).digest


def test_the_id_of_a_distillation_is_known_before_distilling():
    outcomes, _ = blobs(seed=5, per_blob=40)
    for as_of in (AS_OF, AS_OF - timedelta(days=300)):
        distillation, _ = distill(outcomes, strategy="s", as_of=as_of)
        assert distillation_id_for(outcomes, strategy="s", as_of=as_of) == distillation.id
    # Another configuration, or one more episode known before as_of, is another distillation.
    assert distillation_id_for(outcomes, strategy="s", as_of=AS_OF, config=DistillationConfig(fdr=0.05)) != (
        distill(outcomes, strategy="s", as_of=AS_OF)[0].id
    )
    assert distillation_id_for(outcomes[1:], strategy="s", as_of=AS_OF) != distillation_id_for(
        outcomes, strategy="s", as_of=AS_OF
    )
