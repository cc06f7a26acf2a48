"""The memory gate (`gated:<base>`): it vetoes entries from what the learning memory knew before each decision.

The memories here are built in memory from real runs of the base strategy on real daily bars: every closed
trade an episode (`episode_from_trade`), judged (`judge`), embedded by its entry state.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache

import numpy as np
import pytest

from neuraltrade.backtest import BacktestConfig, MarketData, run_backtest
from neuraltrade.errors import ConfigError, UnknownStrategy
from neuraltrade.learning.episodes import Episode, episode_from_trade
from neuraltrade.learning.judge import Verdict, judge
from neuraltrade.learning.regime import state_feature_matrix
from neuraltrade.learning.retrieval import EpisodeMemory, LearningMemory, learning_memory
from neuraltrade.market.history import PriceHistory
from neuraltrade.records import CauseKind, Relation
from neuraltrade.strategies.gated import GatedConfig, gated_class
from neuraltrade.strategies.indicators import market_state_vectors
from neuraltrade.strategies.needs import LearningRead
from neuraltrade.strategies.registry import build_config, build_strategy, parameter_names
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig
from tests.domain.strategy_support import real_history

BARS = 1_800
EARLY = datetime(1990, 1, 1, tzinfo=UTC)
LATE = datetime(2100, 1, 1, tzinfo=UTC)


@cache
def _history() -> PriceHistory:
    return real_history("NVDA").head(BARS)


@cache
def _judged() -> tuple[tuple[Episode, ...], tuple[Verdict, ...], dict[uuid.UUID, np.ndarray]]:
    """The base strategy's real episodes on the history, their verdicts and entry-state vectors."""
    history = _history()
    base = SmaCross(SmaCrossConfig(fast=5, slow=20))
    result = run_backtest(MarketData.from_histories([history]), base, BacktestConfig(commission=0.001))
    vectors = np.nan_to_num(market_state_vectors(history, GatedConfig(base="sma_cross").embedder_config))
    episodes, verdicts = [], []
    for trade in result.trades:
        episode = episode_from_trade(
            trade,
            history,
            trade_id=uuid.uuid5(uuid.NAMESPACE_URL, f"trade-{trade.entry_time.isoformat()}"),
            run_id=None,
            strategy=base.name,
            strategy_id=base.strategy_id,
        )
        verdict = None if episode is None else judge(episode, history)
        if episode is not None and verdict is not None:
            episodes.append(episode)
            verdicts.append(verdict)
    return tuple(episodes), tuple(verdicts), {e.id: vectors[e.decision_bar] for e in episodes}


def _base() -> SmaCross:
    return SmaCross(SmaCrossConfig(fast=5, slow=20))


def _gated(memory: LearningMemory, **gate: object) -> object:
    base = _base()
    config = GatedConfig(base="sma_cross", base_parameters=base.config.to_plain(), **gate)  # type: ignore[arg-type]
    return gated_class("sma_cross")(config, base, memory)


def _uniform_memory(success: bool, known_at: datetime) -> LearningMemory:
    """Every state of the history remembered as an episode of one outcome, all known at `known_at`."""
    history = _history()
    vectors = np.nan_to_num(market_state_vectors(history, GatedConfig(base="sma_cross").embedder_config))
    rows = np.arange(40, len(history), 7)
    episodes = EpisodeMemory.build(
        ids=[uuid.UUID(int=int(row) + 1) for row in rows],
        vectors=vectors[rows],
        known_at=[known_at] * len(rows),
        success=[success] * len(rows),
        side=[1 if index % 2 else -1 for index in range(len(rows))],
    )
    return LearningMemory(strategy=_base().strategy_id, episodes=episodes)


def test_an_empty_memory_changes_no_decision() -> None:
    history = _history()
    empty = LearningMemory(strategy=_base().strategy_id, episodes=EpisodeMemory.empty(512))
    gated = _gated(empty).signals(history)  # type: ignore[attr-defined]
    base = _base().signals(history)
    np.testing.assert_array_equal(gated.target, base.target)
    assert gated.details["gate"]["vetoes"] == 0 and gated.details["gate"]["retrievals_with_hits"] == 0


def test_a_memory_of_failures_vetoes_every_entry_and_one_of_successes_none() -> None:
    history = _history()
    entries = int(np.sum(np.abs(np.nan_to_num(_base().signals(history).target)) == 1))

    failing = _gated(_uniform_memory(False, EARLY)).signals(history)  # type: ignore[attr-defined]
    assert failing.details["gate"]["vetoes"] == failing.details["gate"]["retrievals"] > 0
    assert not np.any(np.abs(np.nan_to_num(failing.target)) == 1)  # no entry left
    result = run_backtest(MarketData.from_histories([history]), _gated(_uniform_memory(False, EARLY)))  # type: ignore[arg-type]
    assert result.trades == ()

    winning = _gated(_uniform_memory(True, EARLY)).signals(history)  # type: ignore[attr-defined]
    assert winning.details["gate"]["vetoes"] == 0
    kept = np.flatnonzero(np.abs(np.nan_to_num(winning.target)) == 1)
    assert len(kept) == entries
    for bar in kept:
        recalled = [link for link in winning.links[int(bar)] if link.cause_kind is CauseKind.EPISODE]
        assert recalled and all(link.relation is Relation.RECALLED for link in recalled)
        # The probability of success is the signal's confidence.
        assert winning.confidence[bar] == pytest.approx(winning.features["gate_probability"][bar])


def test_what_becomes_known_at_or_after_a_decision_is_never_read() -> None:
    history = _history()
    # Failures known only in the future: nothing to recall, nothing vetoed, the base's decisions stand.
    future = _gated(_uniform_memory(False, LATE)).signals(history)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(future.target, _base().signals(history).target)
    assert future.details["gate"]["retrievals_with_hits"] == 0
    # Known exactly at a decision's own time is not before it either.
    gate = _gated(_uniform_memory(False, EARLY))
    bar = int(_base().signals(history).decisions()[5])
    at_decision = datetime.fromtimestamp(int(history.timestamps[bar]) / 1e6, tz=UTC)
    same_time = _gated(_uniform_memory(False, at_decision))
    vector = np.nan_to_num(market_state_vectors(history, GatedConfig(base="sma_cross").embedder_config))[bar]
    features = np.nan_to_num(state_feature_matrix(history)[bar])
    assert same_time.assess(history, bar, 1, vector, features).recalled == ()  # type: ignore[attr-defined]
    assert gate.assess(history, bar, 1, vector, features).recalled  # type: ignore[attr-defined]


def test_real_episodes_recalled_are_all_known_before_each_decision() -> None:
    history = _history()
    episodes, verdicts, vectors = _judged()
    memory = learning_memory(_base().strategy_id, episodes, verdicts, vectors)
    assert len(memory.episodes) == len(episodes) > 20
    frame = _gated(memory, min_evidence=3).signals(history)  # type: ignore[attr-defined]
    known = {episode.id: episode.outcome_known_at for episode in episodes}
    cited = 0
    for bar, links in frame.links.items():
        decided = datetime.fromtimestamp(int(history.timestamps[bar]) / 1e6, tz=UTC)
        for link in links:
            if link.cause_kind is CauseKind.EPISODE:
                cited += 1
                assert known[link.cause_id] < decided
    assert cited > 0


def test_decisions_do_not_depend_on_the_order_of_dates_or_of_memory() -> None:
    """Each entry assessed in shuffled date order, and the memory built from shuffled episodes, decide alike."""
    history = _history()
    episodes, verdicts, vectors = _judged()
    memory = learning_memory(_base().strategy_id, episodes, verdicts, vectors)
    gate = _gated(memory, min_evidence=3)
    frame = gate.signals(history)  # type: ignore[attr-defined]
    state = np.nan_to_num(market_state_vectors(history, GatedConfig(base="sma_cross").embedder_config))
    features = np.nan_to_num(state_feature_matrix(history))
    base_frame = _base().signals(history)
    bars = [int(bar) for bar in base_frame.decisions() if base_frame.target[bar] != 0]
    in_order = {bar: gate.assess(history, bar, int(base_frame.target[bar]), state[bar], features[bar]) for bar in bars}  # type: ignore[attr-defined]
    shuffled = list(bars)
    random.Random(7).shuffle(shuffled)
    out_of_order = {
        bar: gate.assess(history, bar, int(base_frame.target[bar]), state[bar], features[bar])  # type: ignore[attr-defined]
        for bar in shuffled
    }
    assert out_of_order == in_order
    order = list(range(len(episodes)))
    random.Random(11).shuffle(order)
    reshuffled = learning_memory(
        _base().strategy_id, [episodes[i] for i in order], [verdicts[i] for i in reversed(order)], vectors
    )
    assert reshuffled.digest == memory.digest
    again = _gated(reshuffled, min_evidence=3).signals(history)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(again.target, frame.target)
    assert again.links == frame.links


@dataclass
class LearningContext:
    """A strategy context that supplies one learning memory and records which strategy id was asked for."""

    memory: LearningMemory
    asked: list[str] = field(default_factory=list)

    def memory_searcher(self, symbols: object) -> object:
        raise AssertionError("sma_cross needs no vector memory")

    def learning_memory(self, strategy: str) -> LearningRead:
        self.asked.append(strategy)
        return LearningRead(memory=self.memory, strategy=strategy, episodes=0, distillations=0, digest="cd" * 32)


def test_the_registry_builds_gated_strategies_from_text_parameters() -> None:
    assert parameter_names("gated:sma_cross")[:3] == ["fast", "slow", "average"]
    assert "gate_veto_below" in parameter_names("gated:sma_cross")
    config = build_config("gated:sma_cross", {"fast": "5", "slow": "20", "gate_veto_below": "0.4"})
    assert isinstance(config, GatedConfig)
    assert config.veto_below == 0.4 and config.base_parameters == SmaCrossConfig(fast=5, slow=20).to_plain()
    context = LearningContext(LearningMemory(strategy=_base().strategy_id, episodes=EpisodeMemory.empty(512)))
    strategy = build_strategy("gated:sma_cross", {"fast": 5, "slow": 20}, context=context)  # type: ignore[arg-type]
    assert strategy.name == "gated:sma_cross" and strategy.strategy_id.startswith("gated:sma_cross-")
    # The memory asked for is the base strategy's, by its id; the run's specification names its digest.
    assert context.asked == [_base().strategy_id]
    assert strategy.supplies.memory_digest is not None
    assert strategy.supplies.record()["learning"]["digest"] == "cd" * 32


@pytest.mark.parametrize(
    ("name", "params", "error", "message"),
    [
        ("gated:sma_cross", {"gate_veto": "0.4"}, UnknownStrategy, "has no parameter 'gate_veto'"),
        ("gated:sma_cross", {"speed": "3"}, UnknownStrategy, "has no parameter 'speed'"),
        ("gated:nothing", {}, UnknownStrategy, "no strategy 'nothing'"),
        ("gated:gated:sma_cross", {}, UnknownStrategy, "gates a base strategy, not a gated one"),
        ("gated:sma_cross", {"gate_veto_below": "1.5"}, ConfigError, "veto_below"),
    ],
)
def test_bad_gated_names_and_parameters_are_named(
    name: str, params: dict[str, str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build_config(name, params)


def test_a_gated_strategy_without_a_context_says_what_it_needs() -> None:
    with pytest.raises(ConfigError, match="needs learning_memory"):
        build_strategy("gated:sma_cross")


def test_the_gate_config_digest_names_base_and_gate() -> None:
    one = GatedConfig(base="sma_cross")
    assert dataclasses.replace(one, veto_below=0.4).digest != one.digest
    assert dataclasses.replace(one, base_parameters={"fast": 3}).digest != one.digest
