"""The memory retrievals strategies report (`Products.retrievals`): what each decision read, known when.

`memory_vote` reports the market states each decision recalled, each known `horizon` bars after its own
bar; `gated:<base>` reports its base's retrievals under its own id and, per entry kept, the episodes it
recalled and the pattern it was gated by, each known when the learning memory says.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest

from neuraltrade.learning.patterns import Distillation, Pattern
from neuraltrade.learning.regime import state_feature_matrix
from neuraltrade.learning.retrieval import EpisodeMemory, LearningMemory
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.query import Query, SearchResult
from neuraltrade.provenance.records import Retrieval
from neuraltrade.records import CauseKind, Relation
from neuraltrade.strategies.base import SignalFrame, Strategy
from neuraltrade.strategies.gated import GatedConfig, GatedStrategy, gated_class
from neuraltrade.strategies.indicators import market_state_vectors
from neuraltrade.strategies.memory_vote import MemoryVote, MemoryVoteConfig
from neuraltrade.strategies.needs import Products
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig
from tests.domain.strategy_support import BruteForceMemory, moment, real_history

SMALL = MemoryVoteConfig(dimension=32, horizon=4, k=10, min_neighbours=5, min_confidence=0.7)
EARLY = datetime(1990, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def nvda() -> tuple[PriceHistory, MemoryVote, SignalFrame]:
    """600 NVDA bars, a memory of every one of their states (the future too), the strategy and its votes."""
    history = real_history("NVDA").head(600)
    memory = BruteForceMemory()
    memory.add_history(history, SMALL.embedder_config)
    strategy = MemoryVote(SMALL, memory)
    return history, strategy, strategy.signals(history)


def _by_time(retrievals: tuple[Retrieval, ...]) -> dict[datetime, Retrieval]:
    found = {retrieval.decision_time: retrieval for retrieval in retrievals}
    assert len(found) == len(retrievals), "one retrieval per decision"
    return found


def test_memory_vote_reports_one_retrieval_per_decision_of_exactly_its_links(
    nvda: tuple[PriceHistory, MemoryVote, SignalFrame],
) -> None:
    history, strategy, frame = nvda
    retrievals = strategy.products(history, frame).retrievals
    assert len(frame.links) > 5
    by_time = _by_time(retrievals)
    assert set(by_time) == {moment(history.timestamps[bar]) for bar in frame.links}
    for bar, links in frame.links.items():
        retrieval = by_time[moment(history.timestamps[bar])]
        assert retrieval.strategy_id == strategy.strategy_id
        assert retrieval.symbol == history.symbol
        assert retrieval.horizon_bars == SMALL.horizon
        assert [(item.cause_kind, item.cause_id) for item in retrieval.items] == [
            (link.cause_kind, link.cause_id) for link in links
        ]


def test_each_recalled_state_is_known_horizon_bars_after_its_bar_and_before_the_decision(
    nvda: tuple[PriceHistory, MemoryVote, SignalFrame],
) -> None:
    history, strategy, frame = nvda
    bar_of = {history.observation_id(bar): bar for bar in range(len(history))}
    retrievals = strategy.products(history, frame).retrievals
    assert retrievals
    for retrieval in retrievals:
        for item in retrieval.items:
            assert item.cause_kind is CauseKind.MEMORY_ITEM
            assert item.known_at == moment(history.timestamps[bar_of[item.cause_id] + SMALL.horizon])
            assert item.known_at <= retrieval.decision_time
            assert item.known_at < retrieval.decision_time  # the query's as_of is strict


def test_retrieval_ids_are_stable_across_calls_and_instances(
    nvda: tuple[PriceHistory, MemoryVote, SignalFrame],
) -> None:
    history, strategy, frame = nvda
    first = strategy.products(history, frame).retrievals
    again = strategy.products(history, frame).retrievals
    assert [retrieval.id for retrieval in first] == [retrieval.id for retrieval in again]
    assert first == again
    other = MemoryVote(SMALL, strategy.searcher)
    assert [r.id for r in other.products(history, other.signals(history)).retrievals] == [r.id for r in first]
    assert len({retrieval.id for retrieval in first}) == len(first)


@dataclass
class KeyedMemory:
    """Answers every query with the same bars of the history, by item key only (no observation id)."""

    history: PriceHistory
    bars: list[int]

    def search(self, query: Query) -> list[SearchResult]:
        stamps = [moment(self.history.timestamps[bar]) for bar in self.bars]
        return [
            SearchResult(f"item-{bar}", 0.1, {"symbol": self.history.symbol}, stamp)
            for bar, stamp in zip(self.bars, stamps, strict=True)
            if query.as_of is None or stamp < query.as_of
        ]


def test_recalled_items_that_are_no_bar_of_the_history_are_left_out() -> None:
    history = real_history("NVDA").head(120)
    strategy = MemoryVote(SMALL, KeyedMemory(history, [40, 41, 42, 43, 44]))
    frame = strategy.signals(history)
    assert frame.links, "the fixed neighbours decide"
    assert strategy.products(history, frame).retrievals == ()


def test_products_keep_retrievals_as_a_tuple() -> None:
    retrieval = Retrieval.of(strategy_id="s-1", symbol="X", decision_time=EARLY, horizon_bars=0, items=())
    made = Products(retrievals=[retrieval])  # type: ignore[arg-type]
    assert made.retrievals == (retrieval,) and Products().retrievals == ()


# -- the gate ------------------------------------------------------------------------------------------


def _gated(base: Strategy, memory: LearningMemory) -> GatedStrategy:
    config = GatedConfig(base=base.name, base_parameters=base.config.to_plain())
    return gated_class(base.name)(config, base, memory)


def _pattern(distillation_id: uuid.UUID, strategy: str, side: int, dimension: int, members: list[uuid.UUID]) -> Pattern:
    """A pattern whose region holds every state (a huge radius), of `members` all winners."""
    ordered = tuple(sorted(members, key=str))
    count = len(ordered)
    return Pattern(
        id=uuid.uuid5(distillation_id, f"pattern{side}"),
        distillation_id=distillation_id,
        strategy=strategy,
        side=side,
        centroid=(0.0,) * dimension,
        radius=1e12,
        members=ordered,
        wins=count,
        trials=count,
        decayed_wins=float(count),
        decayed_trials=float(count),
        alpha=count + 1.0,
        beta=1.0,
        interval_low=0.5,
        interval_high=1.0,
        base_rate=0.5,
        p_value=0.5,
        q_value=0.5,
        better_than_base=False,
        worse_than_base=False,
    )


def _winning_memory(history: PriceHistory, strategy: str) -> tuple[LearningMemory, datetime, datetime]:
    """Episodes of every 7th state, all successes known at `EARLY`, and one distillation with a pattern per
    side that holds every state, made a year later; returns the memory, the episodes' and patterns' times."""
    vectors = np.nan_to_num(market_state_vectors(history, GatedConfig(base="x").embedder_config))
    rows = np.arange(40, len(history), 7)
    ids = [uuid.UUID(int=int(row) + 1) for row in rows]
    episodes = EpisodeMemory.build(
        ids=ids,
        vectors=vectors[rows],
        known_at=[EARLY] * len(rows),
        success=[True] * len(rows),
        side=[1 if index % 2 else -1 for index in range(len(rows))],
    )
    dimension = state_feature_matrix(history).shape[1]
    as_of = datetime(1991, 1, 1, tzinfo=UTC)
    distillation_id = uuid.UUID(int=10**6)
    patterns = tuple(_pattern(distillation_id, strategy, side, dimension, ids[:5]) for side in (1, -1))
    distillation = Distillation(
        id=distillation_id,
        strategy=strategy,
        as_of=as_of,
        config_digest="00" * 32,
        episode_ids=tuple(sorted(ids[:5], key=str)),
        feature_means=(0.0,) * dimension,
        feature_scales=(1.0,) * dimension,
        base_rate=0.5,
        pattern_ids=tuple(pattern.id for pattern in patterns),
    )
    memory = LearningMemory(strategy=strategy, episodes=episodes, distillations=((distillation, patterns),))
    return memory, EARLY, as_of


def test_the_gate_reports_the_episodes_and_pattern_each_kept_entry_read_and_when_each_was_known() -> None:
    history = real_history("NVDA").head(1_200)
    base = SmaCross(SmaCrossConfig(fast=5, slow=20))
    memory, episodes_known, patterns_known = _winning_memory(history, base.strategy_id)
    gated = _gated(base, memory)
    frame = gated.signals(history)
    made = gated.products(history, frame)
    gate_edges = {(CauseKind.EPISODE, Relation.RECALLED), (CauseKind.PATTERN, Relation.GATED_BY)}
    expected = {
        moment(history.timestamps[bar]): [link for link in links if (link.cause_kind, link.relation) in gate_edges]
        for bar, links in frame.links.items()
    }
    expected = {time: links for time, links in expected.items() if links}
    assert len(expected) > 5
    by_time = _by_time(made.retrievals)
    assert set(by_time) == set(expected)
    patterns_seen = 0
    for time, links in expected.items():
        retrieval = by_time[time]
        assert retrieval.strategy_id == gated.strategy_id and retrieval.horizon_bars == 0
        assert [(item.cause_kind, item.cause_id) for item in retrieval.items] == [
            (link.cause_kind, link.cause_id) for link in links
        ]
        for item in retrieval.items:
            assert item.known_at < retrieval.decision_time
            if item.cause_kind is CauseKind.PATTERN:
                patterns_seen += 1
                assert item.known_at == patterns_known
            else:
                assert item.known_at == episodes_known
    assert patterns_seen > 0
    again = gated.products(history, gated.signals(history))
    assert [r.id for r in again.retrievals] == [r.id for r in made.retrievals]


def test_the_gate_passes_on_its_bases_retrievals_under_its_own_id() -> None:
    history = real_history("NVDA").head(600)
    store = BruteForceMemory()
    store.add_history(history, SMALL.embedder_config)
    base = MemoryVote(SMALL, store)
    empty = LearningMemory(strategy=base.strategy_id, episodes=EpisodeMemory.empty(512))
    gated = _gated(base, empty)
    frame = gated.signals(history)
    base_frame = base.signals(history)
    np.testing.assert_array_equal(frame.target, base_frame.target)  # an empty memory vetoes nothing
    own = gated.products(history, frame).retrievals
    theirs = base.products(history, base_frame).retrievals
    assert own and len(own) == len(theirs)
    for mine, base_retrieval in zip(own, theirs, strict=True):
        assert mine.strategy_id == gated.strategy_id != base_retrieval.strategy_id
        assert (mine.decision_time, mine.horizon_bars, mine.items) == (
            base_retrieval.decision_time,
            base_retrieval.horizon_bars,
            base_retrieval.items,
        )
        assert mine.id != base_retrieval.id
