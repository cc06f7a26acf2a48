"""Retrieval: strictly point in time whatever the similarity, MMR diversity, weights, order independence, and
the learning memory joined from real episodes and verdicts."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.backtest import BacktestConfig, run_backtest
from neuraltrade.canonical import stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.episodes import episode_from_trade
from neuraltrade.learning.judge import judge
from neuraltrade.learning.patterns import Distillation, DistillationConfig, Outcome, distill
from neuraltrade.learning.retrieval import (
    EpisodeMemory,
    LearningMemory,
    RetrievalConfig,
    learning_memory,
    retrieve,
)
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig
from neuraltrade.timestamps import to_microseconds
from tests.domain.backtest_support import history, market

NOW = datetime(2025, 6, 1, tzinfo=UTC)
DIMENSION = 8


def ids(count, seed=0):
    generator = np.random.default_rng(seed)
    return [uuid.UUID(bytes=generator.bytes(16), version=4) for _ in range(count)]


def a_distillation(as_of, strategy="s"):
    return Distillation(
        id=stable_id("distillation", strategy, as_of), strategy=strategy, as_of=as_of, config_digest="x",
        episode_ids=(), feature_means=(), feature_scales=(), base_rate=None,
    )  # fmt: skip


offsets = st.integers(min_value=-1_000_000_000, max_value=1_000_000_000)  # µs around the decision


@settings(max_examples=60, deadline=None)
@given(
    past=st.lists(st.integers(min_value=1, max_value=10**12), min_size=0, max_size=12),
    future=st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=12),
    side=st.sampled_from([None, 1, -1]),
    k=st.integers(min_value=1, max_value=8),
    diversity=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_future_episodes_and_distillations_are_never_returned_whatever_their_similarity(
    past, future, side, k, diversity, seed
):
    generator = np.random.default_rng(seed)
    query = generator.standard_normal(DIMENSION)
    now = to_microseconds(NOW)
    count = len(past) + len(future)
    # The future is the query itself (similarity 1), fresh and fully reliable: the best match in every way.
    vectors = np.vstack([generator.standard_normal((len(past), DIMENSION)), np.tile(query, (len(future), 1))])
    known = [now - age for age in past] + [now + ahead for ahead in future]  # ahead 0: known at the decision
    reliability = np.r_[generator.uniform(0, 0.5, len(past)), np.ones(len(future))]
    sides = generator.choice([1, -1], count)
    memory = EpisodeMemory.build(
        ids=ids(count, seed % 1000), vectors=vectors, known_at=known, success=np.ones(count, dtype=bool),
        side=sides, reliability=reliability,
    )  # fmt: skip
    config = RetrievalConfig(k=k, candidates=max(k, 5), diversity=diversity)
    found = retrieve(memory, query, decision_time=NOW, side=side, config=config)
    futures = {memory.ids[i] for i in range(len(memory)) if memory.known_at[i] >= now}
    assert not futures & {item.episode_id for item in found}
    assert all(item.known_at < NOW for item in found)
    eligible = sum(1 for age, s in zip(past, sides[: len(past)], strict=True) if side in (None, s))
    assert len(found) == min(k, eligible)

    distillations = [(a_distillation(NOW - timedelta(microseconds=age)), ()) for age in past]
    distillations += [(a_distillation(NOW + timedelta(microseconds=ahead)), ()) for ahead in future]
    learned = LearningMemory(strategy="s", episodes=memory, distillations=tuple(reversed(distillations)))
    visible = learned.visible_patterns(NOW)
    if past:
        assert visible is not None and visible[0].as_of == NOW - timedelta(microseconds=min(past))
    else:
        assert visible is None


def test_retrieval_only_reads_outcomes_known_strictly_before_the_decision():
    vectors = np.eye(DIMENSION)[:3]
    names = ids(3)
    memory = EpisodeMemory.build(
        ids=names, vectors=vectors, known_at=[NOW - timedelta(days=1), NOW, NOW + timedelta(days=1)],
        success=[True, True, True],
    )  # fmt: skip
    found = retrieve(memory, np.ones(DIMENSION), decision_time=NOW, config=RetrievalConfig(k=3))
    assert [item.episode_id for item in found] == [names[0]]
    later = retrieve(memory, np.ones(DIMENSION), decision_time=NOW + timedelta(days=2), config=RetrievalConfig(k=3))
    assert len(later) == 3


def near_duplicates():
    """A and its twin point where the query does; B is less similar, in another direction."""
    query = np.array([1.0, 0.0, 0.0, 0.0])
    a = np.array([1.0, 0.1, 0.0, 0.0])
    b = np.array([0.7, 0.0, 0.7, 0.0])
    first, twin, other = ids(3, seed=5)
    memory = EpisodeMemory.build(
        ids=[first, twin, other], vectors=[a, a, b], known_at=[NOW - timedelta(days=3)] * 3,
        success=[True, True, False],
    )  # fmt: skip
    return memory, query, {first, twin}, other


def test_high_diversity_does_not_return_two_near_duplicates():
    memory, query, twins, other = near_duplicates()
    plain = retrieve(memory, query, decision_time=NOW, config=RetrievalConfig(k=2, diversity=0.0))
    assert {item.episode_id for item in plain} == twins
    diverse = retrieve(memory, query, decision_time=NOW, config=RetrievalConfig(k=2, diversity=0.8))
    chosen = {item.episode_id for item in diverse}
    assert len(chosen & twins) == 1 and other in chosen
    assert diverse[0].episode_id == min(twins, key=str)  # the tie between the twins goes to the smaller id


def test_each_weight_orders_the_answer_as_documented():
    first, second, third = ids(3, seed=9)
    query = np.array([1.0, 0.0])
    memory = EpisodeMemory.build(
        ids=[first, second, third],
        vectors=[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],  # similarity: first > second > third
        known_at=[NOW - timedelta(days=300), NOW - timedelta(days=100), NOW - timedelta(days=1)],  # newest: third
        success=[True, False, True],
        reliability=[0.5, 1.0, 0.0],  # most reliable: second
    )  # fmt: skip

    def order(**weights):
        config = RetrievalConfig(k=3, diversity=0.0, **weights)
        return [item.episode_id for item in retrieve(memory, query, decision_time=NOW, config=config)]

    assert order(similarity_weight=1.0, recency_weight=0.0, reliability_weight=0.0) == [first, second, third]
    assert order(similarity_weight=0.0, recency_weight=1.0, reliability_weight=0.0) == [third, second, first]
    assert order(similarity_weight=0.0, recency_weight=0.0, reliability_weight=1.0) == [second, first, third]
    found = retrieve(memory, query, decision_time=NOW, config=RetrievalConfig(k=1, diversity=0.0))
    (top,) = found
    assert top.similarity == pytest.approx(1.0)
    assert top.recency == pytest.approx(0.5 ** (300 / 365))
    assert top.score == pytest.approx(0.6 * 1.0 + 0.2 * 0.5 ** (300 / 365) + 0.2 * 0.5)


def test_the_answer_and_digest_do_not_depend_on_the_memory_item_order():
    generator = np.random.default_rng(3)
    count = 200
    names = ids(count, seed=3)
    vectors = generator.standard_normal((count, DIMENSION))
    vectors[7] = vectors[8]  # exact ties are broken by id, not by position
    known = [NOW - timedelta(days=float(day)) for day in generator.uniform(-50, 500, count)]
    success = generator.random(count) < 0.5
    sides = generator.choice([1, -1], count)
    reliability = generator.random(count)
    memory = EpisodeMemory.build(
        ids=names, vectors=vectors, known_at=known, success=success, side=sides, reliability=reliability
    )
    order = generator.permutation(count)
    shuffled = EpisodeMemory.build(
        ids=[names[i] for i in order], vectors=vectors[order], known_at=[known[i] for i in order],
        success=success[order], side=sides[order], reliability=reliability[order],
    )  # fmt: skip
    assert shuffled.digest == memory.digest and shuffled.ids == memory.ids
    for _ in range(10):
        query = generator.standard_normal(DIMENSION)
        for side in (None, 1):
            config = RetrievalConfig(k=7, candidates=20, diversity=0.5)
            assert retrieve(memory, query, decision_time=NOW, side=side, config=config) == retrieve(
                shuffled, query, decision_time=NOW, side=side, config=config
            )


def test_the_learning_memory_shows_the_latest_distillation_strictly_before_the_decision():
    older, newer = a_distillation(NOW - timedelta(days=2)), a_distillation(NOW - timedelta(days=1))
    learned = LearningMemory(
        strategy="s", episodes=EpisodeMemory.empty(DIMENSION), distillations=((newer, ()), (older, ()))
    )
    assert learned.visible_patterns(NOW - timedelta(days=1)) == (older, ())
    assert learned.visible_patterns(NOW) == (newer, ())
    assert learned.visible_patterns(NOW - timedelta(days=2)) is None
    with pytest.raises(ValidationError, match="strategy"):
        LearningMemory(strategy="t", episodes=EpisodeMemory.empty(DIMENSION), distillations=((older, ()),))
    assert learned.digest != dataclasses.replace(learned, distillations=((older, ()),)).digest


def walk(seed, count=400):
    generator = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(generator.normal(0, 0.02, count)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(generator.normal(0, 0.005, count))
    high = np.maximum(open_, close) * (1 + generator.uniform(0, 0.01, count))
    low = np.minimum(open_, close) * (1 - generator.uniform(0, 0.01, count))
    return history("A", open_.tolist(), high.tolist(), low.tolist(), close.tolist())


def test_learning_memory_joins_real_episodes_with_their_verdicts_and_vectors():
    prices = walk(4)
    result = run_backtest(market(prices), SmaCross(SmaCrossConfig(fast=5, slow=15)), BacktestConfig())
    episodes = [
        episode_from_trade(
            trade, prices, trade_id=stable_id("trade", result.run_id, number), run_id=result.run_id,
            strategy="sma_cross", strategy_id=result.strategy.strategy_id,
        )
        for number, trade in enumerate(result.trades)
    ]  # fmt: skip
    episodes = [episode for episode in episodes if episode is not None]
    verdicts = [judge(episode, prices) for episode in episodes]
    judged = [(e, v) for e, v in zip(episodes, verdicts, strict=True) if v is not None]
    assert len(judged) > 10
    generator = np.random.default_rng(4)
    vectors = {episode.id: generator.standard_normal(DIMENSION) for episode, _ in judged[1:]}  # one lacks a vector
    stranger = dataclasses.replace(judged[0][0], strategy="other")
    memory = learning_memory(
        "sma_cross", [e for e, _ in judged] + [stranger], [v for _, v in judged if v is not None], vectors
    )
    assert set(memory.episodes.ids) == set(vectors)
    for episode, verdict in judged[1:]:
        index = memory.episodes.ids.index(episode.id)
        assert memory.episodes.known_at[index] == to_microseconds(episode.outcome_known_at)
        assert memory.episodes.success[index] == verdict.success
        assert memory.episodes.score[index] == pytest.approx(verdict.score)
        assert memory.episodes.side[index] == episode.side
        assert 0.0 <= memory.episodes.reliability[index] <= 1.0
    middle = judged[len(judged) // 2][0].outcome_known_at
    found = retrieve(memory.episodes, generator.standard_normal(DIMENSION), decision_time=middle)
    assert found and all(item.known_at < middle for item in found)
    assert memory.base_rate_at(middle) == pytest.approx(
        np.mean([v.success for e, v in judged[1:] if e.outcome_known_at < middle])
    )
    outcomes = [
        Outcome(episode_id=e.id, strategy="sma_cross", side=e.side, features=np.asarray(e.state_features),
                success=v.success, known_at=e.outcome_known_at)
        for e, v in judged
    ]  # fmt: skip
    distillation, patterns = distill(outcomes, strategy="sma_cross", as_of=middle, config=DistillationConfig())
    with_patterns = learning_memory("sma_cross", [e for e, _ in judged], verdicts, vectors, [(distillation, patterns)])
    assert with_patterns.visible_patterns(middle) is None
    assert with_patterns.visible_patterns(middle + timedelta(microseconds=1)) == (distillation, patterns)


def test_bad_queries_and_configs_are_refused_by_name():
    memory, query, _, _ = near_duplicates()
    with pytest.raises(ValidationError, match="does not fit"):
        retrieve(memory, np.ones(3), decision_time=NOW)
    with pytest.raises(ValidationError, match="zero"):
        retrieve(memory, np.zeros(4), decision_time=NOW)
    with pytest.raises(ValidationError, match="naive"):
        retrieve(memory, query, decision_time=datetime(2025, 1, 1))
    with pytest.raises(ConfigError, match="candidates"):
        RetrievalConfig(k=10, candidates=5)
    with pytest.raises(ConfigError, match="diversity"):
        RetrievalConfig(diversity=1.5)
    with pytest.raises(ConfigError, match="at least one"):
        RetrievalConfig(similarity_weight=0.0, recency_weight=0.0, reliability_weight=0.0)
    with pytest.raises(ValidationError, match="distinct"):
        EpisodeMemory.build(ids=ids(1) * 2, vectors=np.ones((2, 4)), known_at=[NOW, NOW], success=[True, True])
    assert EpisodeMemory.empty(4).digest == EpisodeMemory.empty(4).digest
    assert retrieve(EpisodeMemory.empty(4), query, decision_time=NOW) == []
