"""Behaviour of the `memory_vote` strategy (`neuraltrade.strategies.memory_vote`) over an honest in-memory memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from neuraltrade.canonical import stable_id
from neuraltrade.errors import ConfigError, FingerprintMismatch, ValidationError
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.embedding import WindowEmbedder, WindowEmbedderConfig
from neuraltrade.memory.query import Filter, Query, SearchResult
from neuraltrade.records import CauseKind, Relation
from neuraltrade.strategies.base import SignalFrame, verify_causality
from neuraltrade.strategies.memory_vote import DISTANCE_FLOOR, MemoryVote, MemoryVoteConfig
from tests.domain.strategy_support import BruteForceMemory, moment, periodic_history, real_history

SMALL = MemoryVoteConfig(dimension=32, horizon=4, k=10, min_neighbours=5, min_confidence=0.7)


@pytest.fixture(scope="module")
def nvda() -> tuple[PriceHistory, BruteForceMemory, SignalFrame]:
    """600 NVDA bars, a memory holding every one of their states (the future too), and the votes."""
    history = real_history("NVDA").head(600)
    memory = BruteForceMemory()
    memory.add_history(history, SMALL.embedder_config)
    memory.add_history(real_history("ORCL").head(600), SMALL.embedder_config)
    frame = MemoryVote(SMALL, memory).signals(history)
    return history, memory, frame


def test_memory_votes_are_valid_and_causal_although_the_memory_holds_the_future(
    nvda: tuple[PriceHistory, BruteForceMemory, SignalFrame],
) -> None:
    history, memory, frame = nvda
    strategy = MemoryVote(SMALL, memory)
    frame.check(history, strategy.strategy_id)
    after_decisions = [int(bar) + 1 for bar in frame.decisions()[::12]]
    verify_causality(strategy, history, frame, cuts=sorted({45, 300, *after_decisions}))
    assert len(frame.decisions()) > 5


def test_every_query_asks_only_for_states_whose_outcome_is_known_on_its_bar(
    nvda: tuple[PriceHistory, BruteForceMemory, SignalFrame],
) -> None:
    history, memory, _ = nvda
    memory.queries.clear()
    MemoryVote(SMALL, memory).signals(history)
    first = SMALL.window - 1 + SMALL.horizon + SMALL.min_neighbours
    assert len(memory.queries) == len(history) - first
    for bar, query in enumerate(memory.queries, start=first):
        assert query.as_of == moment(history.timestamps[bar - SMALL.horizon])
        assert query.where is not None and query.where.describe() == Filter.eq("symbol", "NVDA").describe()
        assert query.k == SMALL.k


def test_decisions_link_the_observations_of_neighbours_that_had_played_out(
    nvda: tuple[PriceHistory, BruteForceMemory, SignalFrame],
) -> None:
    history, _, frame = nvda
    bar_of = {history.observation_id(bar): bar for bar in range(len(history))}
    assert set(frame.links) == set(frame.decisions().tolist())
    for bar, links in frame.links.items():
        assert SMALL.min_neighbours <= len(links) <= SMALL.k
        for link in links:
            assert (link.cause_kind, link.relation) == (CauseKind.MEMORY_ITEM, Relation.RECALLED)
            assert bar_of[link.cause_id] + SMALL.horizon < bar, "a neighbour's outcome was not known yet"


def test_the_vote_remembers_a_market_whose_next_move_is_written_in_its_recent_past() -> None:
    history = periodic_history(700, noise=0.01)
    memory = BruteForceMemory()
    memory.add_history(history, SMALL.embedder_config)
    frame = MemoryVote(SMALL, memory).signals(history)
    decided = frame.decisions()
    decided = decided[decided + SMALL.horizon < len(history)]
    realised = np.sign(history.close[decided + SMALL.horizon] - history.close[decided])
    assert len(decided) > 40
    assert np.mean(frame.target[decided] == realised) > 0.7


@dataclass
class FixedMemory:
    """Answers every query with the same neighbours (bars of the history, with given distances)."""

    history: PriceHistory
    neighbours: list[tuple[int, float]]
    asked: int = 0

    def search(self, query: Query) -> list[SearchResult]:
        self.asked += 1
        return [
            SearchResult(f"item-{bar}", distance, {"symbol": self.history.symbol}, moment(self.history.timestamps[bar]))
            for bar, distance in self.neighbours
            if query.as_of is None or moment(self.history.timestamps[bar]) < query.as_of
        ]


def rising_then_falling(count: int) -> PriceHistory:
    """Closes rising by 1 for 50 bars, then falling by 1: outcomes +1 before bar 46, -1 from bar 50 on."""
    base = real_history("NVDA").head(count)
    close = np.concatenate([100.0 + np.arange(50), 149.0 - np.arange(count - 50)])
    return PriceHistory(
        symbol="SHAPE",
        timestamps=base.timestamps,
        open=close,
        high=close + 0.5,
        low=close - 0.5,
        close=close,
        volume=base.volume,
    )


def test_the_vote_weighs_each_neighbours_outcome_by_inverse_distance() -> None:
    history = rising_then_falling(90)
    # Three risers close by and two fallers farther away: weighted, the risers win with 0.75 agreement.
    neighbours = [(40, 0.09), (41, 0.09), (42, 0.09), (55, 0.19), (56, 0.19)]
    config = MemoryVoteConfig(dimension=32, horizon=4, k=5, min_neighbours=5, min_confidence=0.7)
    frame = MemoryVote(config, FixedMemory(history, neighbours)).signals(history)
    near, far = 1 / (0.09 + DISTANCE_FLOOR), 1 / (0.19 + DISTANCE_FLOOR)
    bar = 80
    assert frame.features["neighbours"][bar] == 5
    assert frame.features["vote"][bar] == pytest.approx((3 * near - 2 * far) / (3 * near + 2 * far))
    assert frame.features["agreement"][bar] == pytest.approx(3 * near / (3 * near + 2 * far))
    decided = frame.decisions()
    assert list(decided) == [int(np.argmax(frame.features["neighbours"] >= 5))]
    assert frame.target[decided[0]] == 1.0
    # Items without an observation id are linked by a UUID of their key.
    assert [link.cause_id for link in frame.links[int(decided[0])]] == [
        stable_id("memory_item", f"item-{bar}") for bar, _ in neighbours
    ]


def test_too_few_neighbours_or_too_little_agreement_gives_no_decision() -> None:
    history = rising_then_falling(90)
    split = [(40, 0.1), (41, 0.1), (55, 0.1), (56, 0.1), (42, 0.1)]
    config = MemoryVoteConfig(dimension=32, horizon=4, k=5, min_neighbours=5, min_confidence=0.7)
    assert len(MemoryVote(config, FixedMemory(history, split)).signals(history).decisions()) == 0
    few = MemoryVoteConfig(dimension=32, horizon=4, k=10, min_neighbours=6, min_confidence=0.5)
    assert len(MemoryVote(few, FixedMemory(history, split)).signals(history).decisions()) == 0


def test_neighbours_from_outside_the_history_carry_no_outcome() -> None:
    history = rising_then_falling(90)

    class Foreign(FixedMemory):
        def search(self, query: Query) -> list[SearchResult]:
            stranger = SearchResult("elsewhere", 0.0, {"symbol": "SHAPE"}, moment(history.timestamps[10] + 1))
            return [stranger, *super().search(query)]

    config = MemoryVoteConfig(dimension=32, horizon=4, k=6, min_neighbours=5, min_confidence=0.7)
    frame = MemoryVote(config, Foreign(history, [(40, 0.1), (41, 0.1), (42, 0.1), (43, 0.1), (44, 0.1)])).signals(
        history
    )
    assert frame.features["neighbours"][80] == 5
    assert all(len(links) == 5 for links in frame.links.values())


def test_a_memory_that_answers_from_the_future_is_refused() -> None:
    history = rising_then_falling(90)

    class Leaky(FixedMemory):
        def search(self, query: Query) -> list[SearchResult]:
            return [SearchResult("late", 0.1, {"symbol": "SHAPE"}, moment(self.history.timestamps[-1]))]

    with pytest.raises(ValidationError, match=r"item 'late' of .* not before the query's as_of"):
        MemoryVote(SMALL, Leaky(history, [])).signals(history)


def test_a_memory_of_another_embedder_is_refused_up_front() -> None:
    @dataclass
    class Spec:
        name: str
        fingerprint: object

    class Described(BruteForceMemory):
        spec = Spec("market_state", WindowEmbedder(WindowEmbedderConfig(window=32, dimension=512)).fingerprint)

    with pytest.raises(FingerprintMismatch, match="market_state"):
        MemoryVote(SMALL, Described())
    MemoryVote(MemoryVoteConfig(), Described())


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"k": 0}, "k"),
        ({"min_neighbours": 11}, r"min_neighbours \(11\) must not exceed k \(10\)"),
        ({"min_confidence": 0.4}, "min_confidence"),
        ({"horizon": 0}, "horizon"),
        ({"window": 2}, "window"),
    ],
)
def test_memory_vote_refuses_parameters_naming_the_value(parameters: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        MemoryVoteConfig(**parameters)  # type: ignore[arg-type]
