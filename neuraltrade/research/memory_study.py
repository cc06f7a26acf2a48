"""The moving parts of the memory-gate study (docs/learning.md): the base's judged episodes, the memories built
from them (honest, leaking, shuffled), daily returns of a strategy, and the walk-forward choice of a combination.

`bench/learning.py` runs the registered protocol with these; `tests/domain/research/test_memory_controls.py`
runs its controls at a small size with the same code, so that what the test proves holds for the bench.

Each symbol is traded alone (a single-symbol market), so its run's bars are the symbol's bars and a trade's
decision bar is the symbol's. A strategy's daily return on bar i is ``equity[i] / equity[i - 1] - 1`` of one
run over the symbol's whole history (0 on bar 0); a walk-forward picks per fold, on the train bars, which
combination's returns to take on the test bars (`walk_forward_returns`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.engine import run_backtest
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.result import BacktestResult
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.canonical import stable_id
from neuraltrade.errors import ValidationError
from neuraltrade.learning.episodes import Episode, EpisodeConfig, episode_from_trade
from neuraltrade.learning.judge import JudgeConfig, Verdict, judge
from neuraltrade.learning.patterns import Distillation, DistillationConfig, Pattern, distill, outcome_of
from neuraltrade.learning.retrieval import EpisodeMemory, LearningMemory, learning_memory, reliability_of
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.embedding import WindowEmbedderConfig
from neuraltrade.research.walk_forward import FoldWindow
from neuraltrade.strategies.base import Strategy
from neuraltrade.strategies.indicators import market_state_vectors
from neuraltrade.timestamps import to_microseconds

__all__ = [
    "CONTROL_GATE",
    "NIGHTLY_EMBEDDER",
    "BaseEvidence",
    "JudgedEpisode",
    "base_evidence",
    "daily_returns",
    "distillations_at",
    "fold_of_bars",
    "honest_memory",
    "leaking_memory",
    "shuffled_memory",
    "single_run",
    "trade_id_of",
    "walk_forward_returns",
]

#: The gate of the controls (`neuraltrade.strategies.gated.GatedConfig` fields): the nearest episode decides
#: alone (no prior, one neighbour, one piece of evidence suffices), so that a memory that leaks each entry's own
#: outcome vetoes exactly the entries the judge will call failures. At the gate's defaults (ten neighbours
#: behind a prior of ten episodes) an entry's own outcome moves its probability by a few points only, and a
#: leak is not detected on a small market: the control would test the gate's dilution, not the test's teeth.
CONTROL_GATE: dict[str, Any] = {"k": 1, "prior_strength": 0.0, "min_evidence": 1, "veto_below": 0.5}

#: The nightly's market-state embedder: the vectors the episodes carry and the gate compares.
NIGHTLY_EMBEDDER = WindowEmbedderConfig(window=32, dimension=512, seed=20_240_601)


@dataclass(frozen=True, kw_only=True, eq=False)
class JudgedEpisode:
    """An episode, its verdict and its entry-state vector."""

    episode: Episode
    verdict: Verdict
    vector: np.ndarray


@dataclass(frozen=True, kw_only=True, eq=False)
class BaseEvidence:
    """What the base strategy did over whole histories: its runs and closed trades per symbol, its judged
    episodes (all symbols), and its daily returns per symbol."""

    strategy: str
    runs: Mapping[str, BacktestResult]
    trades: Mapping[str, tuple[ClosedTrade, ...]]
    judged: tuple[JudgedEpisode, ...]
    returns: Mapping[str, np.ndarray]

    def all_trades(self) -> tuple[ClosedTrade, ...]:
        """Every symbol's closed trades."""
        return tuple(trade for trades in self.trades.values() for trade in trades)


def single_run(strategy: Strategy, history: PriceHistory, config: BacktestConfig) -> BacktestResult:
    """Backtest `strategy` on `history` alone (its own account)."""
    return run_backtest(MarketData.from_histories([history]), strategy, config)


def daily_returns(result: BacktestResult) -> np.ndarray:
    """The run's daily returns: ``equity[i] / equity[i - 1] - 1``, 0 on the first bar."""
    equity = np.asarray(result.equity, dtype=np.float64)
    returns = np.zeros(len(equity))
    returns[1:] = equity[1:] / equity[:-1] - 1.0
    return returns


def base_evidence(
    base: Strategy,
    histories: Sequence[PriceHistory],
    config: BacktestConfig,
    *,
    episode_config: EpisodeConfig | None = None,
    judge_config: JudgeConfig | None = None,
    embedder: WindowEmbedderConfig = NIGHTLY_EMBEDDER,
) -> BaseEvidence:
    """Run `base` on each history, turn every closed trade into an episode, judge it, and attach its entry state.

    Episodes whose window has not closed, whose judge window is not inside the history, or whose decision
    bar has no full embedding window are left out (the gate could not have compared them).
    """
    episode_config = episode_config or EpisodeConfig()
    judge_config = judge_config or JudgeConfig()
    runs: dict[str, BacktestResult] = {}
    trades: dict[str, tuple[ClosedTrade, ...]] = {}
    returns: dict[str, np.ndarray] = {}
    judged: list[JudgedEpisode] = []
    for history in histories:
        result = single_run(base, history, config)
        runs[history.symbol], trades[history.symbol] = result, result.trades
        returns[history.symbol] = daily_returns(result)
        vectors = market_state_vectors(history, embedder)
        for trade in result.trades:
            episode = episode_from_trade(
                trade,
                history,
                trade_id=trade_id_of(result, trade),
                run_id=result.run_id,
                strategy=base.name,
                strategy_id=base.strategy_id,
                config=episode_config,
            )
            if episode is None or not np.isfinite(vectors[episode.decision_bar]).all():
                continue
            verdict = judge(episode, history, judge_config)
            if verdict is not None:
                judged.append(JudgedEpisode(episode=episode, verdict=verdict, vector=vectors[episode.decision_bar]))
    return BaseEvidence(strategy=base.name, runs=runs, trades=trades, judged=tuple(judged), returns=returns)


def distillations_at(
    evidence: BaseEvidence, moments: Sequence[datetime], config: DistillationConfig | None = None
) -> list[tuple[Distillation, tuple[Pattern, ...]]]:
    """One distillation of the base's outcomes per moment in `moments` (each cites what was known before it)."""
    outcomes = [outcome_of(item.episode, item.verdict) for item in evidence.judged]
    config = config or DistillationConfig()
    return [distill(outcomes, strategy=evidence.strategy, as_of=moment, config=config) for moment in moments]


def honest_memory(
    evidence: BaseEvidence, distillations: Sequence[tuple[Distillation, Sequence[Pattern]]] = ()
) -> LearningMemory:
    """The base's learning memory as the nightly builds it (`learning_memory`)."""
    return learning_memory(
        evidence.strategy,
        [item.episode for item in evidence.judged],
        [item.verdict for item in evidence.judged],
        {item.episode.id: item.vector for item in evidence.judged},
        distillations,
    )


def _memory(
    evidence: BaseEvidence, known_at: Sequence[int], success: Sequence[bool], score: Sequence[float]
) -> LearningMemory:
    items = evidence.judged
    episodes = EpisodeMemory.build(
        ids=[item.episode.id for item in items],
        vectors=np.stack([item.vector for item in items]) if items else np.zeros((0, NIGHTLY_EMBEDDER.dimension)),
        known_at=list(known_at),
        success=list(success),
        score=list(score),
        side=[item.episode.side for item in items],
        reliability=[reliability_of(item.verdict, item.episode.horizon_bars) for item in items],
    )
    return LearningMemory(strategy=evidence.strategy, episodes=episodes)


def leaking_memory(evidence: BaseEvidence) -> LearningMemory:
    """A memory that cheats: every episode known one microsecond before its own decision (no distillations).

    An entry then reads its own outcome, and those of every trade decided before it but not yet closed.
    """
    items = evidence.judged
    return _memory(
        evidence,
        [to_microseconds(item.episode.decision_time) - 1 for item in items],
        [item.verdict.success for item in items],
        [item.verdict.score for item in items],
    )


def shuffled_memory(evidence: BaseEvidence, groups: Sequence[int], seed: int) -> LearningMemory:
    """A memory without information: outcomes (success and score together) permuted within each group.

    `groups` gives each judged episode's group (its fold), in `evidence.judged` order; known-at times stay
    true, so the memory is point in time and only the link between state and outcome is broken.
    """
    items = evidence.judged
    labels = np.asarray(groups)
    if labels.shape != (len(items),):
        raise ValidationError(f"{len(items)} judged episodes need as many groups, were given {labels.shape}")
    generator = np.random.default_rng(seed)
    order = np.arange(len(items))
    for group in np.unique(labels):
        members = np.flatnonzero(labels == group)
        order[members] = generator.permutation(members)
    return _memory(
        evidence,
        [max(to_microseconds(item.episode.outcome_known_at), to_microseconds(item.verdict.known_at)) for item in items],
        [items[index].verdict.success for index in order],
        [items[index].verdict.score for index in order],
    )


def fold_of_bars(bars: int, windows: Sequence[FoldWindow]) -> np.ndarray:
    """The fold of every bar: the number of the test window holding it plus 1 (0 before the first, and after
    the last one the last fold's number plus 2)."""
    folds = np.zeros(bars, dtype=np.int64)
    for number, window in enumerate(windows):
        folds[window.test_start : window.test_stop] = number + 1
    if windows:
        folds[windows[-1].test_stop :] = len(windows) + 1
    return folds


def walk_forward_returns(
    returns: np.ndarray, windows: Sequence[FoldWindow]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per fold, the combination (row of `returns`, combinations x bars) of the best train-window Sharpe ratio,
    and its returns on the test window.

    Returns the out-of-sample bars (test windows concatenated), the returns on them, and the chosen row per
    fold. Ties go to the first row; a row without variation on the train bars has a Sharpe ratio of 0.
    """
    matrix = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    bars: list[np.ndarray] = []
    chosen_returns: list[np.ndarray] = []
    chosen: list[int] = []
    for window in windows:
        train = matrix[:, window.train_start : window.train_stop]
        deviation = train.std(axis=1, ddof=1)
        sharpe = np.where(deviation > 0, train.mean(axis=1) / np.where(deviation > 0, deviation, 1.0), 0.0)
        best = int(np.argmax(sharpe))
        chosen.append(best)
        bars.append(np.arange(window.test_start, window.test_stop))
        chosen_returns.append(matrix[best, window.test_start : window.test_stop])
    if not windows:
        return np.zeros(0, dtype=np.int64), np.zeros(0), []
    return np.concatenate(bars), np.concatenate(chosen_returns), chosen


def trade_id_of(result: BacktestResult, trade: ClosedTrade) -> uuid.UUID:
    """The id `base_evidence` gives a closed trade of `result`."""
    return stable_id("closed_trade", result.run_id, trade.entry_fill_id, trade.exit_fill_id)
