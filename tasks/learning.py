"""Learning-loop tasks: reflect on stored runs, distil what they taught, simulate what else could have been done.

- `reflect_on_run`: every closed trade of a stored run whose outcome window has closed becomes an episode
  (`neuraltrade.learning.episodes`), judged (`judge`) and critiqued (`ReflexionEngine`); the three are stored
  with the critique's reflection in the ``reflections`` collection of the vector memory, in one transaction.
- `distill_strategy`: the episodes of one strategy (by strategy id), distilled into patterns at every
  checkpoint of its history (`neuraltrade.learning.patterns.distill`), each distillation with its own
  ``as_of`` citing exactly the episodes known before it.
- `simulate_run_counterfactuals`: each closed trade of a run re-simulated with the alternatives of
  `neuraltrade.learning.counterfactual`, and the regret of what was done stored.

Plain values in, ids and counts out. Every write is an idempotent insert of records whose ids derive from
what they say, so a re-run after a crash converges on the same rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from prefect import task

from models import repositories
from models.backtest_runs import StoredRun, load_run
from models.engine import session_scope
from models.learning_store import (
    load_episodes,
    load_verdicts,
    pattern_count,
    save_counterfactuals,
    save_critiques,
    save_distillation,
    save_episodes,
    save_verdicts,
    stored_distillation_ids,
)
from models.order_records import load_signals
from models.vector_store import VectorDB
from neuraltrade.backtest import BacktestConfig
from neuraltrade.canonical import stable_id
from neuraltrade.learning.counterfactual import Counterfactual, simulate_counterfactuals
from neuraltrade.learning.defaults import (
    CHECKPOINT_MONTHS,
    COUNTERFACTUAL_CONFIG,
    DISTILLATION_CONFIG,
    EMBEDDER,
    EPISODE_CONFIG,
    JUDGE_CONFIG,
    REFLECTIONS_COLLECTION,
    REFLEXION_CONFIG,
)
from neuraltrade.learning.episodes import Episode, episode_from_trade, unique_decisions
from neuraltrade.learning.judge import Verdict, judge
from neuraltrade.learning.patterns import Outcome, distill, distillation_id_for
from neuraltrade.learning.reflexion import ReflexionEngine
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.embedding import WindowEmbedder
from neuraltrade.strategies.indicators import market_state_vectors
from tasks import progress
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient
from tasks.tracing import traced


def reflections(database_url: str) -> VectorDB:
    """Open (creating it if needed) the ``reflections`` collection, partitioned by strategy id."""
    fingerprint = WindowEmbedder(EMBEDDER).fingerprint
    return VectorDB(
        fingerprint.dimension,
        name=REFLECTIONS_COLLECTION,
        fingerprint=fingerprint,
        partition_key="strategy",
        database_url=database_url,
    )


def _histories(run: StoredRun, database_url: str) -> dict[str, PriceHistory]:
    with session_scope(database_url) as session:
        frames = {symbol: repositories.load_bars(session, symbol)[0] for symbol in run.symbols}
    return {symbol: PriceHistory.from_frame(frame) for symbol, frame in frames.items() if not frame.empty}


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def reflect_on_run(database_url: str, run_id: str) -> dict[str, Any]:
    """Turn the closed trades of stored run `run_id` into episodes, verdicts, critiques and reflections.

    Returns ``{"run_id", "trades", "episodes", "verdicts", "critiques", "pending"}``: `pending` counts
    trades whose outcome window has not closed yet (their episodes come with a later run).
    """
    identifier = uuid.UUID(run_id)
    with session_scope(database_url) as session:
        run = load_run(session, identifier)
        signals = {signal.id: signal for signal in load_signals(session, identifier)}
    histories = _histories(run, database_url)
    engine = ReflexionEngine(REFLEXION_CONFIG)
    episodes: list[Episode] = []
    verdicts: list[Verdict] = []
    critiques = []
    vectors: list[np.ndarray] = []
    cached_vectors: dict[str, np.ndarray] = {}
    pending = 0
    for sequence, trade in enumerate(run.trades):
        history = histories.get(trade.symbol)
        signal = signals.get(trade.signal_id) if trade.signal_id is not None else None
        episode = (
            None
            if history is None
            else episode_from_trade(
                trade,
                history,
                trade_id=stable_id("backtest_trade", run.id, sequence),
                run_id=run.id,
                strategy=run.strategy,
                strategy_id=run.strategy_id,
                signal_links=signal.causal_links if signal is not None else (),
                config=EPISODE_CONFIG,
            )
        )
        verdict = None if episode is None or history is None else judge(episode, history, JUDGE_CONFIG)
        if episode is None or verdict is None or history is None:
            pending += 1
            continue
        if trade.symbol not in cached_vectors:
            cached_vectors[trade.symbol] = np.nan_to_num(market_state_vectors(history, EMBEDDER))
        episodes.append(episode)
        verdicts.append(verdict)
        critiques.append(engine.critique(episode, verdict, history))
        vectors.append(cached_vectors[trade.symbol][episode.decision_bar])
    written = {"episodes": 0, "verdicts": 0, "critiques": 0}
    if episodes:
        memory = reflections(database_url)
        # A decision before the first full window has no market state to embed: its episode is kept, judged
        # and critiqued, but it has no reflection to recall.
        embedded = [index for index, vector in enumerate(vectors) if vector.any()]
        with session_scope(database_url, write=True) as session:
            written["episodes"] = save_episodes(session, episodes)
            written["verdicts"] = save_verdicts(session, verdicts)
            written["critiques"] = save_critiques(session, critiques)
            if embedded:
                memory.upsert_many(
                    [str(episodes[index].id) for index in embedded],
                    np.asarray([vectors[index] for index in embedded], dtype=np.float32),
                    [_reflection_metadata(episodes[index], verdicts[index], critiques[index]) for index in embedded],
                    # A reflection is known when its outcome is: the store's as-of filter is then point in time.
                    timestamps=[episodes[index].outcome_known_at for index in embedded],
                    session=session,
                )
    progress.report("reflect", run_id, len(episodes))
    return {"run_id": run_id, "trades": len(run.trades), **written, "pending": pending}


def _reflection_metadata(episode: Episode, verdict: Verdict, critique: Any) -> dict[str, Any]:
    return {
        "strategy": episode.strategy_id,
        "symbol": episode.symbol,
        "episode_id": str(episode.id),
        "side": episode.side,
        "success": verdict.success,
        "score": float(verdict.score),
        "lessons": ",".join(critique.lessons),
        "text": critique.text,
    }


def checkpoints(first: datetime, last: datetime, months: int = CHECKPOINT_MONTHS) -> list[datetime]:
    """Month starts every `months` months after `first`, up to the first one after `last` (UTC)."""
    moments: list[datetime] = []
    year, month = first.year, first.month
    while True:
        month += months
        year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
        moment = datetime(year, month, 1, tzinfo=UTC)
        moments.append(moment)
        if moment > last:
            return moments


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
@traced("distill", "strategy_id")
def distill_strategy(database_url: str, strategy_id: str) -> dict[str, Any]:
    """Distil the episodes of `strategy_id` at every checkpoint of its history; store each distillation.

    Returns ``{"strategy_id", "episodes", "distillations", "new", "patterns"}``: checkpoints, distillations
    made now, and the patterns of the latest.
    """
    with session_scope(database_url) as session:
        episodes = unique_decisions(load_episodes(session, strategy_id=strategy_id))
        verdicts = {
            verdict.episode_id: verdict
            for verdict in load_verdicts(
                session, episode_ids=[episode.id for episode in episodes], judge_digest=JUDGE_CONFIG.digest
            )
        }
    outcomes = [
        Outcome(
            episode_id=episode.id,
            strategy=strategy_id,
            side=episode.side,
            features=np.asarray(episode.state_features, dtype=np.float64),
            success=verdicts[episode.id].success,
            known_at=episode.outcome_known_at,
        )
        for episode in episodes
        if episode.id in verdicts
    ]
    if not outcomes:
        return {"strategy_id": strategy_id, "episodes": 0, "distillations": 0, "new": 0, "patterns": 0}
    moments = checkpoints(outcomes[0].known_at, outcomes[-1].known_at + timedelta(microseconds=1))
    wanted = {
        moment: distillation_id_for(outcomes, strategy=strategy_id, as_of=moment, config=DISTILLATION_CONFIG)
        for moment in moments
    }
    with session_scope(database_url) as session:
        stored = stored_distillation_ids(session, wanted.values())
    # A checkpoint whose episodes are those of its stored distillation is not distilled again.
    made = [
        distill(outcomes, strategy=strategy_id, as_of=moment, config=DISTILLATION_CONFIG)
        for moment, identifier in wanted.items()
        if identifier not in stored
    ]
    new = 0
    if made:
        with session_scope(database_url, write=True) as session:
            for distillation, patterns in made:
                new += int(save_distillation(session, distillation, patterns))
    with session_scope(database_url) as session:
        latest = pattern_count(session, wanted[moments[-1]])
    return {
        "strategy_id": strategy_id,
        "episodes": len(outcomes),
        "distillations": len(moments),
        "new": new,
        "patterns": latest,
    }


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def simulate_run_counterfactuals(database_url: str, run_id: str) -> dict[str, Any]:
    """Re-simulate every closed trade of stored run `run_id` with each alternative; store the regrets."""
    identifier = uuid.UUID(run_id)
    with session_scope(database_url) as session:
        run = load_run(session, identifier)
    histories = _histories(run, database_url)
    config = BacktestConfig(**dict(run.backtest_config))
    items: list[Counterfactual] = []
    for sequence, trade in enumerate(run.trades):
        history = histories.get(trade.symbol)
        if history is None:
            continue
        items.extend(
            simulate_counterfactuals(
                trade,
                history,
                config,
                trade_id=stable_id("backtest_trade", run.id, sequence),
                run_id=run.id,
                config=COUNTERFACTUAL_CONFIG,
            )
        )
    with session_scope(database_url, write=True) as session:
        written = save_counterfactuals(session, items)
    return {"run_id": run_id, "trades": len(run.trades), "counterfactuals": len(items), "new": written}


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def learning_backlog(database_url: str) -> dict[str, list[str]]:
    """What the learning loop has still to do: runs to reflect on, runs to simulate, strategies to distil."""
    from models.learning_store import runs_without_counterfactuals, runs_without_episodes, strategies_with_episodes

    with session_scope(database_url) as session:
        return {
            "reflect": [str(run) for run in runs_without_episodes(session)],
            "counterfactuals": [str(run) for run in runs_without_counterfactuals(session)],
            "strategies": strategies_with_episodes(session),
        }
