"""Specification of the learning loop's repositories (`models.learning_store`): every record comes back as it
was saved, a second save writes nothing, a run takes its learning records with it, reads are point in time."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from models.backtest_runs import run_details, save_backtest
from models.engine import session_scope
from models.learning import CounterfactualRecord, CritiqueRecord, DistillationRecord, EpisodeRecord, PatternRecord
from models.learning_store import (
    DistillationWithPatterns,
    episode_ids_of_run,
    latest_patterns,
    learning_counts,
    load_counterfactuals,
    load_critiques,
    load_distillations,
    load_episodes,
    load_trials,
    load_verdicts,
    runs_without_counterfactuals,
    runs_without_episodes,
    save_counterfactuals,
    save_critiques,
    save_distillation,
    save_episodes,
    save_trials,
    save_verdicts,
    strategies_with_episodes,
)
from models.trading import BacktestRunRecord
from neuraltrade.backtest import BacktestConfig, run_backtest
from neuraltrade.backtest.result import BacktestResult
from neuraltrade.backtest.run_spec import RunSpec, run_spec
from neuraltrade.canonical import stable_id
from neuraltrade.errors import ValidationError
from neuraltrade.learning.counterfactual import Counterfactual, simulate_counterfactuals
from neuraltrade.learning.episodes import Episode, episode_from_trade
from neuraltrade.learning.judge import JudgeConfig, Verdict, judge
from neuraltrade.learning.patterns import Outcome, distill
from neuraltrade.learning.reflexion import Critique, ReflexionEngine
from neuraltrade.market.history import PriceHistory
from neuraltrade.research.trials import Trial
from tests.domain.backtest_support import history, market, scripted

CREATED = datetime(2024, 9, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Night:
    """A stored-to-be backtest of one symbol and what the learning loop made of it."""

    result: BacktestResult
    spec: RunSpec
    history: PriceHistory
    episodes: tuple[Episode, ...]
    verdicts: tuple[Verdict, ...]
    critiques: tuple[Critique, ...]
    counterfactuals: tuple[Counterfactual, ...]


def prices(count: int, seed: int) -> np.ndarray:
    steps = np.random.default_rng(seed).normal(0.0005, 0.015, count)
    return 100.0 * np.exp(np.cumsum(steps))


def night(symbol: str = "AAA", *, seed: int = 1, count: int = 120) -> Night:
    """A real backtest: ten round trips scripted on a random walk, each trade an episode with a verdict, a
    critique and its counterfactuals."""
    closes = prices(count, seed)
    opens = np.concatenate([[closes[0]], closes[:-1]])
    highs, lows = np.maximum(opens, closes) * 1.004, np.minimum(opens, closes) * 0.996
    bars = history(symbol, opens.tolist(), highs.tolist(), lows.tolist(), closes.tolist())
    script = {bar: (1.0 if bar % 20 == 5 else -1.0) for bar in range(5, count - 15, 10)}
    script |= {bar + 6: 0.0 for bar in list(script)}
    result = run_backtest(
        market(bars), scripted({symbol: script}), BacktestConfig(commission=0.001), record_orders=True
    )
    spec = run_spec(result.strategy, result.config, result.market)
    episodes = []
    for sequence, trade in enumerate(result.trades):
        episode = episode_from_trade(
            trade,
            bars,
            trade_id=stable_id("backtest_trade", spec.run_id, sequence),
            run_id=spec.run_id,
            strategy=result.strategy.name,
            strategy_id=result.strategy.strategy_id,
        )
        assert episode is not None
        episodes.append(episode)
    verdicts = tuple(verdict for verdict in (judge(episode, bars) for episode in episodes) if verdict is not None)
    assert len(episodes) >= 8 and len(verdicts) == len(episodes)
    engine = ReflexionEngine()
    critiques = tuple(
        engine.critique(episode, verdict, bars) for episode, verdict in zip(episodes, verdicts, strict=True)
    )
    counterfactuals = tuple(
        counterfactual
        for trade, episode in zip(result.trades, episodes, strict=True)
        for counterfactual in simulate_counterfactuals(
            trade, bars, result.config, trade_id=episode.trade_id, run_id=spec.run_id
        )
    )
    return Night(result, spec, bars, tuple(episodes), verdicts, critiques, counterfactuals)


@pytest.fixture(scope="module")
def first_night() -> Night:
    return night()


@pytest.fixture
def url(storage_url: str) -> str:
    """This module's storage runs on SQLite and on PostgreSQL."""
    return storage_url


def store_run(url: str, stored: Night) -> None:
    with session_scope(url, write=True) as session:
        assert save_backtest(session, stored.result, stored.spec, run_details(stored.result), created_at=CREATED)


def count(url: str, model: Any) -> int:
    with session_scope(url) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def paper(episode: Episode, **changes: Any) -> Episode:
    """`episode` as if a paper trade of another id had made it (no run)."""
    trade_id = uuid.uuid4()
    return dataclasses.replace(episode, trade_id=trade_id, id=stable_id("episode", trade_id), run_id=None, **changes)


# -- episodes ---------------------------------------------------------------------------------------------


def test_episodes_come_back_as_saved_ordered_by_when_they_became_known(url: str, first_night: Night) -> None:
    store_run(url, first_night)
    shuffled = list(reversed(first_night.episodes))

    with session_scope(url, write=True) as session:
        assert save_episodes(session, shuffled) == len(shuffled)
    with session_scope(url) as session:
        loaded = load_episodes(session)

    assert loaded == sorted(first_night.episodes, key=lambda episode: (episode.outcome_known_at, episode.id))
    assert all(isinstance(episode.outcome_known_at.tzinfo, type(UTC)) for episode in loaded)


def test_saving_episodes_twice_writes_them_once(url: str, first_night: Night) -> None:
    store_run(url, first_night)
    with session_scope(url, write=True) as session:
        save_episodes(session, first_night.episodes[:3])

    with session_scope(url, write=True) as session:
        written = save_episodes(session, first_night.episodes)

    assert written == len(first_night.episodes) - 3
    assert count(url, EpisodeRecord) == len(first_night.episodes)
    with session_scope(url, write=True) as session:
        assert save_episodes(session, first_night.episodes) == 0


def test_episodes_are_filtered_by_strategy_run_and_strictly_by_when_they_became_known(
    url: str, first_night: Night
) -> None:
    store_run(url, first_night)
    episodes = first_night.episodes
    other = paper(episodes[0], strategy="gated:scripted", strategy_id="gated:scripted-1")
    cut = sorted(episodes, key=lambda episode: episode.outcome_known_at)[4].outcome_known_at
    with session_scope(url, write=True) as session:
        save_episodes(session, [*episodes, other])

    with session_scope(url) as session:
        assert load_episodes(session, strategy="gated:scripted") == [other]
        assert load_episodes(session, strategy_id="gated:scripted-1") == [other]
        assert strategies_with_episodes(session) == sorted({"gated:scripted-1", episodes[0].strategy_id})
        assert set(load_episodes(session, run_id=first_night.spec.run_id)) == set(episodes)
        assert episode_ids_of_run(session, first_night.spec.run_id) == {episode.id for episode in episodes}
        assert episode_ids_of_run(session, uuid.uuid4()) == set()
        before = load_episodes(session, strategy="scripted", known_before=cut)
        just_after = load_episodes(session, strategy="scripted", known_before=cut + timedelta(microseconds=1))

    assert before == [episode for episode in just_after if episode.outcome_known_at < cut]
    assert all(episode.outcome_known_at < cut for episode in before)  # strict: known at `cut` is not yet known
    assert {episode.outcome_known_at for episode in just_after} - {e.outcome_known_at for e in before} == {cut}


def test_a_naive_moment_is_refused(url: str) -> None:
    with session_scope(url) as session, pytest.raises(ValidationError, match="known_before"):
        load_episodes(session, known_before=datetime(2024, 1, 1))  # naive: the point of the test


def test_an_episode_of_a_run_not_stored_is_refused_and_nothing_stays(url: str, first_night: Night) -> None:
    with pytest.raises(IntegrityError), session_scope(url, write=True) as session:
        save_episodes(session, first_night.episodes)

    assert count(url, EpisodeRecord) == 0


def test_a_record_of_another_kind_is_refused(url: str, first_night: Night) -> None:
    with session_scope(url, write=True) as session, pytest.raises(ValidationError, match="episodes stores Episode"):
        save_episodes(session, first_night.verdicts)  # type: ignore[arg-type]


# -- verdicts -------------------------------------------------------------------------------------------


def test_verdicts_come_back_by_episode_and_by_judge(url: str, first_night: Night) -> None:
    store_run(url, first_night)
    strict = JudgeConfig(take_profit_width=1.0, stop_width=1.0)
    others = [judge(episode, first_night.history, strict) for episode in first_night.episodes]
    with session_scope(url, write=True) as session:
        save_episodes(session, first_night.episodes)
        assert save_verdicts(session, first_night.verdicts) == len(first_night.verdicts)
        assert save_verdicts(session, [verdict for verdict in others if verdict is not None]) == len(others)
        assert save_verdicts(session, first_night.verdicts) == 0

    wanted = {episode.id for episode in first_night.episodes[:3]}
    with session_scope(url) as session:
        by_default_judge = load_verdicts(session, judge_digest=JudgeConfig().digest)
        of_three = load_verdicts(session, episode_ids=wanted, judge_digest=strict.digest)
        every = load_verdicts(session)

    assert by_default_judge == sorted(first_night.verdicts, key=lambda verdict: (verdict.known_at, verdict.id))
    assert {verdict.episode_id for verdict in of_three} == wanted
    assert all(verdict.judge_digest == strict.digest for verdict in of_three)
    assert len(every) == 2 * len(first_night.verdicts)


# -- critiques ------------------------------------------------------------------------------------------


def save_judged(url: str, stored: Night) -> None:
    """Store the run of `stored` and its episodes, verdicts and critiques."""
    store_run(url, stored)
    with session_scope(url, write=True) as session:
        save_episodes(session, stored.episodes)
        save_verdicts(session, stored.verdicts)
        assert save_critiques(session, stored.critiques) == len(stored.critiques)


def test_critiques_come_back_by_run_and_by_episode_and_are_written_once(url: str, first_night: Night) -> None:
    second = night("BBB", seed=2)
    save_judged(url, first_night)
    save_judged(url, second)
    with session_scope(url, write=True) as session:
        assert save_critiques(session, [*first_night.critiques, *second.critiques]) == 0

    wanted = {episode.id for episode in second.episodes[:2]}
    with session_scope(url) as session:
        of_first = load_critiques(session, run_id=first_night.spec.run_id)
        of_two = load_critiques(session, episode_ids=wanted)
        both = load_critiques(session, run_id=second.spec.run_id, episode_ids=wanted)
        every = load_critiques(session)

    assert of_first == sorted(first_night.critiques, key=lambda critique: (critique.known_at, critique.id))
    assert {critique.episode_id for critique in of_two} == wanted and both == of_two
    assert len(every) == len(first_night.critiques) + len(second.critiques)
    with session_scope(url) as session:
        lessons = session.scalars(select(CritiqueRecord.lessons).order_by(CritiqueRecord.id)).all()
    assert sorted(map(tuple, lessons)) == sorted(critique.lessons for critique in every)


# -- counterfactuals -----------------------------------------------------------------------------------


def test_counterfactuals_come_back_by_run_and_are_written_once(url: str, first_night: Night) -> None:
    store_run(url, first_night)
    items = first_night.counterfactuals
    with session_scope(url, write=True) as session:
        assert save_counterfactuals(session, reversed(items)) == len(items)
        assert save_counterfactuals(session, items) == 0
    trade_id = uuid.uuid4()
    paper_trade = dataclasses.replace(
        items[0],
        trade_id=trade_id,
        run_id=None,
        id=Counterfactual.id_for(trade_id, items[0].alternative, items[0].config_digest),
    )
    with session_scope(url, write=True) as session:
        assert save_counterfactuals(session, [paper_trade]) == 1

    with session_scope(url) as session:
        loaded = load_counterfactuals(session, first_night.spec.run_id)

    assert loaded == sorted(items, key=lambda item: (item.trade_id, item.alternative, item.id))
    assert count(url, CounterfactualRecord) == len(items) + 1


# -- a run takes its learning records with it ------------------------------------------------------------


def test_deleting_a_run_deletes_its_episodes_verdicts_critiques_and_counterfactuals(
    url: str, first_night: Night
) -> None:
    second = night("BBB", seed=2)
    for stored in (first_night, second):
        save_judged(url, stored)
        with session_scope(url, write=True) as session:
            save_counterfactuals(session, stored.counterfactuals)
    kept = paper(first_night.episodes[0])
    with session_scope(url, write=True) as session:
        save_episodes(session, [kept])

    with session_scope(url, write=True) as session:
        session.execute(delete(BacktestRunRecord).where(BacktestRunRecord.id == first_night.spec.run_id))

    with session_scope(url) as session:
        assert set(load_episodes(session)) == {*second.episodes, kept}
        assert set(load_verdicts(session)) == set(second.verdicts)
        assert set(load_critiques(session)) == set(second.critiques)
        assert load_counterfactuals(session, first_night.spec.run_id) == []
        assert len(load_counterfactuals(session, second.spec.run_id)) == len(second.counterfactuals)
    assert count(url, CounterfactualRecord) == len(second.counterfactuals)


# -- distillations and their patterns ------------------------------------------------------------------


def outcomes(strategy: str, count: int = 60, *, seed: int = 5) -> list[Outcome]:
    """Judged episodes of `strategy`, one a day from 2024-01-01: longs win in one corner of the state space."""
    rng = np.random.default_rng(seed)
    made = []
    for number in range(count):
        features = rng.normal(size=4)
        side = 1 if number % 3 else -1
        made.append(
            Outcome(
                episode_id=stable_id("test_episode", strategy, number),
                strategy=strategy,
                side=side,
                features=features,
                success=bool(rng.random() < (0.8 if side > 0 and features[0] > 0 else 0.4)),
                known_at=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=number),
            )
        )
    return made


def distilled(strategy: str, day: int) -> DistillationWithPatterns:
    return distill(outcomes(strategy), strategy=strategy, as_of=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day))


def test_a_distillation_is_saved_with_its_patterns_once_and_comes_back_in_rank_order(url: str) -> None:
    distillation, patterns = distilled("scripted", 50)
    assert patterns  # the test needs some

    with session_scope(url, write=True) as session:
        assert save_distillation(session, distillation, tuple(reversed(patterns)))
        assert not save_distillation(session, distillation, patterns)
    with session_scope(url) as session:
        [(loaded, loaded_patterns)] = load_distillations(session, "scripted")

    assert loaded == distillation and loaded_patterns == patterns
    assert [pattern.rank for pattern in loaded_patterns] == sorted(pattern.rank for pattern in patterns)
    assert count(url, PatternRecord) == len(patterns)


def test_distillations_are_read_strictly_before_a_moment_and_the_latest_of_each_strategy(url: str) -> None:
    stored = [distilled("scripted", day) for day in (20, 40, 60)] + [distilled("gated:scripted", 30)]
    with session_scope(url, write=True) as session:
        for distillation, patterns in reversed(stored):
            save_distillation(session, distillation, patterns)

    cut = stored[1][0].as_of
    with session_scope(url) as session:
        assert load_distillations(session, "scripted") == stored[:3]
        assert load_distillations(session, "scripted", before=cut) == stored[:1]  # strict: as_of == cut is not seen
        assert load_distillations(session, "scripted", before=cut + timedelta(microseconds=1)) == stored[:2]
        assert load_distillations(session, "scripted", config_digest="0" * 64) == []
        assert latest_patterns(session) == [stored[3], stored[2]]  # by strategy name
        assert latest_patterns(session, "scripted") == [stored[2]]
        assert latest_patterns(session, "momentum") == []


def test_a_distillation_given_patterns_it_does_not_name_is_refused_and_nothing_stays(url: str) -> None:
    distillation, patterns = distilled("scripted", 50)
    _, others = distilled("gated:scripted", 50)

    with session_scope(url, write=True) as session:
        with pytest.raises(ValidationError, match="belongs to distillation"):
            save_distillation(session, distillation, others)
        with pytest.raises(ValidationError, match="names patterns"):
            save_distillation(session, distillation, patterns[1:])

    assert count(url, DistillationRecord) == count(url, PatternRecord) == 0


def test_deleting_a_distillation_deletes_its_patterns(url: str) -> None:
    first, second = distilled("scripted", 40), distilled("scripted", 60)
    with session_scope(url, write=True) as session:
        save_distillation(session, *first)
        save_distillation(session, *second)

    with session_scope(url, write=True) as session:
        session.execute(delete(DistillationRecord).where(DistillationRecord.id == first[0].id))

    assert count(url, PatternRecord) == len(second[1])


# -- trials ------------------------------------------------------------------------------------------------


def trial(family: str, variant: str, strategy: str = "sma_cross") -> Trial:
    return Trial.create(
        family=family,
        variant=variant,
        strategy=strategy,
        parameters={"k": 10, "veto_below": 0.45},
        symbols=("AAA", "BBB"),
        timestamps=(1_704_153_600_000_000, 1_704_240_000_000_000),
        returns=(0.01, -0.005),
    )


def test_trials_are_saved_once_and_come_back_by_family(url: str) -> None:
    walk_forward = [trial("memory_gate_walk_forward", variant) for variant in ("ungated", "gated", "shuffled")]
    sweep = trial("sweep", "ungated", "momentum")
    with session_scope(url, write=True) as session:
        assert save_trials(session, [*walk_forward, sweep]) == 4
        assert save_trials(session, walk_forward) == 0

    with session_scope(url) as session:
        assert load_trials(session, family="memory_gate_walk_forward") == sorted(
            walk_forward, key=lambda item: (item.variant, item.id)
        )
        assert load_trials(session) == [*sorted(walk_forward, key=lambda item: item.variant), sweep]


# -- counts ----------------------------------------------------------------------------------------------


def test_learning_counts_give_verdict_coverage_of_the_stored_closed_trades(url: str, first_night: Night) -> None:
    store_run(url, first_night)
    judged = first_night.verdicts[:5]
    lonely = paper(first_night.episodes[0])
    with session_scope(url, write=True) as session:
        assert learning_counts(session)["closed_trades"] == len(first_night.result.trades)
        save_episodes(session, [*first_night.episodes, lonely])
        save_verdicts(session, judged)
        save_verdicts(session, [judge(lonely, first_night.history)])  # type: ignore[list-item]
        save_critiques(session, first_night.critiques[:5])
        save_counterfactuals(session, first_night.counterfactuals)
        save_distillation(session, *distilled("scripted", 50))
        save_trials(session, [trial("sweep", "ungated")])

    with session_scope(url) as session:
        counts = learning_counts(session)

    assert counts == {
        "episodes": len(first_night.episodes) + 1,
        "verdicts": 6,
        "judged_episodes": 6,
        "critiques": 5,
        "distillations": 1,
        "patterns": len(distilled("scripted", 50)[1]),
        "counterfactuals": len(first_night.counterfactuals),
        "trials": 1,
        "closed_trades": len(first_night.result.trades),
        "judged_trades": 5,  # the paper trade's verdict covers no stored trade
    }


def test_runs_with_trades_but_no_episodes_or_counterfactuals_are_the_backlog(url: str, first_night: Night) -> None:
    second = night("BBB", seed=2)
    store_run(url, first_night)
    store_run(url, second)
    with session_scope(url) as session:
        waiting = runs_without_episodes(session)
        assert waiting == runs_without_counterfactuals(session)
    assert set(waiting) == {first_night.spec.run_id, second.spec.run_id}

    with session_scope(url, write=True) as session:
        save_episodes(session, first_night.episodes[:1])  # one episode: the run has been reflected on
        save_counterfactuals(session, second.counterfactuals)

    with session_scope(url) as session:
        assert runs_without_episodes(session) == [second.spec.run_id]
        assert runs_without_counterfactuals(session) == [first_night.spec.run_id]
