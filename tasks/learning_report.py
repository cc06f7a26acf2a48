"""What the learning loop stored, read for the command line, the learning report and the metrics.

- `pattern_listing`: the latest distillation of each strategy with its patterns (``neuraltrade patterns``);
- `reflection_listing`: a run's episodes with their verdicts and critiques (``neuraltrade reflections``);
- `counterfactual_listing` / `regret_rows`: a run's counterfactual summary (``neuraltrade counterfactual``, the
  run report's regret panel);
- `learning_report_data`: the learning report's input, every statistic computed
  (`neuraltrade.research.learning_report` renders it);
- `learning_gauges`: the learning figures the Prometheus textfile exports (`tasks.metrics`).

Only reads; no Prefect. Where records of several configurations are stored side by side (verdicts of two
judges, counterfactuals of two simulations), the configuration with the most records is the one read, so that
nothing is counted twice; the listings name its digest.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.backtest_runs import RunOverview, find_run, list_runs, load_run
from models.engine import display_url, session_scope
from models.learning_store import (
    latest_patterns,
    load_counterfactuals,
    load_critiques,
    load_episodes,
    load_trials,
    load_verdicts,
)
from models.order_records import load_signals
from models.trading import BacktestRunRecord
from neuraltrade.canonical import digest
from neuraltrade.errors import NeuralTradeError, UnknownRun
from neuraltrade.learning.counterfactual import summarise_counterfactuals
from neuraltrade.learning.judge import Verdict
from neuraltrade.research.learning_report import (
    Comparison,
    LearningReportData,
    PatternForest,
    RunCurve,
    VariantEvaluation,
    daily_curve,
    daily_returns,
)

GATED_PREFIX = "gated:"
ItemT = TypeVar("ItemT")


def _run_id(run_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(run_id)
    except ValueError:
        raise UnknownRun(run_id) from None


def _prevailing(items: Iterable[ItemT], key: Callable[[ItemT], str]) -> list[ItemT]:
    """The items of the configuration (by `key`, a digest) that has the most of them (ties: the smaller digest)."""
    given = list(items)
    if not given:
        return []
    counts = Counter(key(item) for item in given)
    chosen = min(counts, key=lambda value: (-counts[value], value))
    return [item for item in given if key(item) == chosen]


def _side(side: int) -> str:
    return "long" if side > 0 else "short"


# -- patterns -------------------------------------------------------------------------------------------


def pattern_row(pattern: Any) -> dict[str, Any]:
    """One pattern as plain values: counts raw and decayed, posterior mean, interval, test against the base."""
    return {
        "id": str(pattern.id),
        "rank": pattern.rank,
        "side": _side(pattern.side),
        "wins": pattern.wins,
        "trials": pattern.trials,
        "decayed_wins": pattern.decayed_wins,
        "decayed_trials": pattern.decayed_trials,
        "probability": pattern.probability,
        "interval_low": pattern.interval_low,
        "interval_high": pattern.interval_high,
        "base_rate": pattern.base_rate,
        "p_value": pattern.p_value,
        "q_value": pattern.q_value,
        "better_than_base": pattern.better_than_base,
        "worse_than_base": pattern.worse_than_base,
        "contradicts": [str(other) for other in pattern.contradicts],
    }


def _latest(session: Session, strategy: str | None) -> list[tuple[Any, tuple[Any, ...]]]:
    """The newest distillation of each strategy (latest `as_of`; of one `as_of`, the one citing the most
    episodes, as the gate reads it: a later night that knew more episodes before the same moment supersedes)."""
    return [(distillation, tuple(patterns)) for distillation, patterns in latest_patterns(session, strategy)]


def pattern_listing(database_url: str, strategy: str | None = None) -> list[dict[str, Any]]:
    """The latest distillation of every strategy (or of strategy id `strategy`), with its patterns by rank."""
    with session_scope(database_url) as session:
        latest = _latest(session, strategy)
    return [
        {
            "strategy": distillation.strategy,
            "distillation_id": str(distillation.id),
            "as_of": distillation.as_of.isoformat(),
            "config_digest": distillation.config_digest,
            "episodes": len(distillation.episode_ids),
            "base_rate": distillation.base_rate,
            "pruned": distillation.pruned,
            "merged": distillation.merged,
            "contradictions": distillation.contradictions,
            "patterns": [pattern_row(pattern) for pattern in sorted(patterns, key=lambda item: item.rank)],
        }
        for distillation, patterns in latest
    ]


# -- reflections and counterfactuals --------------------------------------------------------------------


def _require_run(session: Session, run_id: str) -> RunOverview:
    run = find_run(session, _run_id(run_id))
    if run is None:
        raise UnknownRun(run_id)
    return run


def reflection_listing(database_url: str, run_id: str) -> dict[str, Any]:
    """Each episode of stored run `run_id` with its verdict (the one its critique cites, else the prevailing
    judge's) and its critique's lessons and text."""
    with session_scope(database_url) as session:
        run = _require_run(session, run_id)
        episodes = load_episodes(session, run_id=run.id)
        verdicts = load_verdicts(session, episode_ids=[episode.id for episode in episodes]) if episodes else []
        critiques = load_critiques(session, run_id=run.id)
        trades = int(run.statistics.get("trades") or 0)
    by_id = {verdict.id: verdict for verdict in verdicts}
    critique_of = {critique.episode_id: critique for critique in critiques}
    prevailing = {verdict.episode_id: verdict for verdict in _prevailing(verdicts, lambda item: item.judge_digest)}
    rows = []
    for episode in sorted(episodes, key=lambda item: (item.decision_time, item.symbol, item.id.int)):
        critique = critique_of.get(episode.id)
        verdict = by_id.get(critique.verdict_id) if critique is not None else None
        verdict = verdict or prevailing.get(episode.id)
        rows.append(
            {
                "episode_id": str(episode.id),
                "symbol": episode.symbol,
                "side": _side(episode.side),
                "decision_time": episode.decision_time.isoformat(),
                "exit_time": episode.exit_time.isoformat(),
                "outcome_known_at": episode.outcome_known_at.isoformat(),
                "holding_bars": episode.holding_bars,
                "net_return": episode.net_return,
                "pnl": episode.pnl,
                "exit_reason": episode.exit_reason,
                "verdict": None if verdict is None else _verdict_row(verdict),
                "lessons": [] if critique is None else list(critique.lessons),
                "text": None if critique is None else critique.text,
            }
        )
    return {
        "run_id": str(run.id),
        "strategy": run.strategy,
        "strategy_id": run.strategy_id,
        "symbols": list(run.symbols),
        "trades": trades,
        "episodes": rows,
    }


def _verdict_row(verdict: Verdict) -> dict[str, Any]:
    return {
        "success": verdict.success,
        "score": verdict.score,
        "barrier": verdict.barrier,
        "barrier_return": verdict.barrier_return,
        "benchmark_return": verdict.benchmark_return,
        "judge_digest": verdict.judge_digest,
    }


def regret_rows(session: Session, run_id: uuid.UUID) -> tuple[str | None, list[dict[str, Any]]]:
    """The counterfactual summary of run `run_id` (`summarise_counterfactuals` rows, one per alternative) and
    the digest of the simulation it summarises (None, and no rows, when none was stored)."""
    items = _prevailing(load_counterfactuals(session, run_id), lambda item: item.config_digest)
    return (items[0].config_digest if items else None), summarise_counterfactuals(items)


def counterfactual_listing(database_url: str, run_id: str) -> dict[str, Any]:
    """The counterfactual summary of stored run `run_id`: one row per alternative."""
    with session_scope(database_url) as session:
        run = _require_run(session, run_id)
        config, rows = regret_rows(session, run.id)
    return {"run_id": str(run.id), "strategy": run.strategy, "config_digest": config, "alternatives": rows}


# -- the learning report --------------------------------------------------------------------------------


def _setup(run: RunOverview) -> dict[str, Any]:
    """What besides the strategy shapes a run: two runs compare only if this is equal."""
    spec = run.spec or {}
    return {
        "backtest": dict(run.backtest_config),
        "risk": spec.get("risk_limits"),
        "sizing": spec.get("sizing"),
        "engine": run.engine_version,
        "symbols": list(run.symbols),
        "data": run.data_digest,
    }


def _pairing_key(run: RunOverview) -> str:
    if run.strategy.startswith(GATED_PREFIX):
        base = run.strategy[len(GATED_PREFIX) :]
        parameters = dict(run.strategy_config.get("base_parameters") or {})
    else:
        base, parameters = run.strategy, dict(run.strategy_config)
    return digest({"strategy": base, "parameters": parameters, **_setup(run)})


def _newest_by(runs: Iterable[RunOverview], key: Callable[[RunOverview], Any]) -> dict[Any, RunOverview]:
    newest: dict[Any, RunOverview] = {}
    for run in runs:
        held = newest.get(key(run))
        if held is None or (run.created_at, run.id.int) > (held.created_at, held.id.int):
            newest[key(run)] = run
    return newest


def _curve(session: Session, run: RunOverview) -> RunCurve:
    stored = load_run(session, run.id)
    days, equity = daily_curve(stored.timestamps, stored.equity)
    _, regret = regret_rows(session, run.id)
    return RunCurve(
        run_id=str(run.id), strategy=run.strategy, strategy_id=run.strategy_id, days=days, equity=equity, regret=regret
    )


def _attempt(notes: list[str], what: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """`compute()`, or None with a note naming what could not be computed and why."""
    try:
        with np.errstate(all="ignore"):
            return compute()
    except (NeuralTradeError, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as error:
        # arch and numpy report a degenerate sample (too short, no variation) with ValueError.
        notes.append(f"{what}: not computed ({error})")
        return None


def _judged_entries(session: Session, run_id: uuid.UUID) -> list[tuple[Any, bool]]:
    """The episodes of run `run_id` with their verdicts' success (the prevailing judge's)."""
    episodes = load_episodes(session, run_id=run_id)
    verdicts = _prevailing(
        load_verdicts(session, episode_ids=[episode.id for episode in episodes]) if episodes else [],
        lambda item: item.judge_digest,
    )
    success = {verdict.episode_id: verdict.success for verdict in verdicts}
    return [(episode, success[episode.id]) for episode in episodes if episode.id in success]


def _evaluate(
    session: Session,
    base: RunOverview,
    base_curve: RunCurve,
    gated: RunOverview,
    trial_sharpes: Sequence[float],
    reps: int,
) -> VariantEvaluation:
    # Imported here: arch and scipy cost a second, which the listings and the metrics need not pay.
    from neuraltrade.research.evaluation import deflated_sharpe_ratio, sharpe_difference_lower_bound
    from neuraltrade.research.meta_labels import brier_score, meta_label_confusion

    notes: list[str] = []
    curve = _curve(session, gated)
    base_returns, gated_returns = daily_returns(base_curve.equity), daily_returns(curve.equity)
    difference = _attempt(
        notes, "Sharpe difference", lambda: sharpe_difference_lower_bound(gated_returns, base_returns, reps=reps)
    )
    deflated = _attempt(notes, "Deflated Sharpe Ratio", lambda: deflated_sharpe_ratio(gated_returns, trial_sharpes))
    judged = _judged_entries(session, base.id)
    stored = load_run(session, gated.id)
    kept = {(trade.symbol, trade.entry_time, 1 if trade.size > 0 else -1) for trade in stored.trades}
    vetoed = [(episode.symbol, episode.entry_time, episode.side) not in kept for episode, _ in judged]
    if len(judged) < int(base.statistics.get("trades") or 0):
        notes.append(f"{len(judged):,} of the ungated run's {base.statistics.get('trades')} trades are judged")
    confusion = (
        _attempt(notes, "confusion matrix", lambda: meta_label_confusion([ok for _, ok in judged], vetoed))
        if judged
        else None
    )
    probability = {
        (signal.symbol, signal.timestamp): signal.features["gate_probability"]
        for signal in load_signals(session, gated.id)
        if "gate_probability" in signal.features
    }
    scored = [
        (probability[(episode.symbol, episode.decision_time)], ok)
        for episode, ok in judged
        if (episode.symbol, episode.decision_time) in probability
    ]
    brier = (
        _attempt(notes, "Brier score", lambda: brier_score([p for p, _ in scored], [ok for _, ok in scored]))
        if scored
        else None
    )
    if brier is None and judged:
        notes.append("Brier score: no judged entry has a gate probability recorded")
    return VariantEvaluation(
        run=curve, difference=difference, deflated=deflated, confusion=confusion, brier=brier, notes=notes
    )


def _per_day_sharpe(returns: np.ndarray) -> float | None:
    if len(returns) < 2:
        return None
    deviation = float(np.std(returns, ddof=1))
    return 0.0 if deviation == 0 else float(np.mean(returns)) / deviation


def learning_report_data(
    database_url: str, *, reps: int = 2000, spa_reps: int = 1000, database_label: str | None = None
) -> LearningReportData:
    """Read every stored run and learning record and compute the learning report's statistics.

    Pairs are a base run and the ``gated:<base>`` runs of the same base parameters on the same bars, backtest
    configuration, risk limits and sizing; of each, the newest run (by gated strategy id for the variants).
    `reps` and `spa_reps` are the bootstrap's and the SPA test's resamples; `database_label` is how the page
    names the database (default: `database_url`, its password hidden).
    """
    with session_scope(database_url) as session:
        overviews = list_runs(session, limit=2**62)
        trials = load_trials(session)
        sharpes = []
        for overview in overviews:
            stored = load_run(session, overview.id)
            sharpe = _per_day_sharpe(daily_returns(daily_curve(stored.timestamps, stored.equity)[1]))
            if sharpe is not None:
                sharpes.append(sharpe)
        for trial in trials:
            sharpe = _per_day_sharpe(np.asarray(trial.returns, dtype=np.float64))
            if sharpe is not None:
                sharpes.append(sharpe)
        groups: dict[str, list[RunOverview]] = defaultdict(list)
        for overview in overviews:
            groups[_pairing_key(overview)].append(overview)
        comparisons = []
        for key in sorted(groups, key=lambda item: _group_order(groups[item])):
            members = groups[key]
            bases = [run for run in members if not run.strategy.startswith(GATED_PREFIX)]
            gated_runs = (run for run in members if run.strategy.startswith(GATED_PREFIX))
            gated = _newest_by(gated_runs, lambda run: run.strategy_id)
            if not bases or not gated:
                continue
            base = max(bases, key=lambda run: (run.created_at, run.id.int))
            comparisons.append(_compare(session, base, list(gated.values()), sharpes, reps, spa_reps))
        forests = [
            PatternForest(
                strategy=distillation.strategy,
                as_of=distillation.as_of,
                base_rate=distillation.base_rate,
                episodes=len(distillation.episode_ids),
                patterns=[pattern_row(pattern) for pattern in sorted(patterns, key=lambda item: item.rank)],
            )
            for distillation, patterns in _latest(session, None)
        ]
    return LearningReportData(
        database=database_label or display_url(database_url),
        generated_at=datetime.now(UTC),
        comparisons=comparisons,
        patterns=forests,
        runs=len(overviews),
        registry_trials=len(trials),
    )


def _group_order(runs: Sequence[RunOverview]) -> tuple[str, tuple[str, ...]]:
    names = sorted(run.strategy.removeprefix(GATED_PREFIX) for run in runs)
    return names[0], tuple(runs[0].symbols)


def _compare(
    session: Session,
    base: RunOverview,
    variants: Sequence[RunOverview],
    trial_sharpes: Sequence[float],
    reps: int,
    spa_reps: int,
) -> Comparison:
    from neuraltrade.research.evaluation import spa_test

    notes: list[str] = []
    base_curve = _curve(session, base)
    ordered = sorted(variants, key=lambda run: run.strategy_id)
    evaluations = [_evaluate(session, base, base_curve, run, trial_sharpes, reps) for run in ordered]
    base_returns = daily_returns(base_curve.equity)
    matrix = np.column_stack([daily_returns(evaluation.run.equity) for evaluation in evaluations])
    spa = None
    if np.allclose(matrix, base_returns[:, None]):
        notes.append("Hansen's SPA: every gated variant's returns equal the ungated run's (nothing was vetoed)")
    else:
        spa = _attempt(notes, "Hansen's SPA", lambda: spa_test(base_returns, matrix, reps=spa_reps))
    return Comparison(
        base_strategy=base.strategy,
        symbols=tuple(base.symbols),
        data_digest=base.data_digest,
        base=base_curve,
        variants=evaluations,
        spa=spa,
        notes=notes,
    )


# -- gauges ---------------------------------------------------------------------------------------------


def _gate_details(details: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The gate's counts of a run's details: one per symbol of a multi-symbol run."""
    if isinstance(details.get("gate"), Mapping):
        return [details["gate"]]
    by_symbol = details.get("by_symbol")
    if not isinstance(by_symbol, Mapping):
        return []
    return [entry["gate"] for entry in by_symbol.values() if isinstance(entry, Mapping) and "gate" in entry]


def learning_gauges(session: Session) -> dict[str, Any]:
    """The learning figures of the metrics: verdict coverage; gate retrievals, hits and vetoes summed over the
    newest run of each gated strategy id and symbols; patterns and their median decayed support per strategy."""
    from models.learning_store import learning_counts

    counts = learning_counts(session)
    rows = session.execute(
        select(BacktestRunRecord.id, BacktestRunRecord.strategy_id, BacktestRunRecord.symbols)
        .add_columns(BacktestRunRecord.details, BacktestRunRecord.created_at)
        .where(BacktestRunRecord.strategy.like(f"{GATED_PREFIX}%"))
    ).all()
    newest: dict[tuple[str, tuple[str, ...]], Any] = {}
    for row in rows:
        key = (row.strategy_id, tuple(row.symbols))
        if key not in newest or (row.created_at, row.id.int) > (newest[key].created_at, newest[key].id.int):
            newest[key] = row
    gate = Counter[str]()
    for row in newest.values():
        for entry in _gate_details(row.details or {}):
            for name in ("retrievals", "retrievals_with_hits", "vetoes", "entries"):
                value = entry.get(name)
                if isinstance(value, (int, float)):
                    gate[name] += int(value)
    patterns = {
        distillation.strategy: [float(pattern.decayed_trials) for pattern in found]
        for distillation, found in _latest(session, None)
    }
    closed = counts.get("closed_trades", 0)
    return {
        "verdict_coverage": counts.get("judged_trades", 0) / closed if closed else math.nan,
        "closed_trades": closed,
        "gated_runs": len(newest),
        "retrievals": gate["retrievals"],
        "retrievals_with_hits": gate["retrievals_with_hits"],
        "retrieval_hit_share": gate["retrievals_with_hits"] / gate["retrievals"] if gate["retrievals"] else math.nan,
        "vetoes": gate["vetoes"],
        "patterns": {strategy: len(supports) for strategy, supports in patterns.items()},
        "pattern_support_median": {
            strategy: statistics.median(supports) if supports else math.nan for strategy, supports in patterns.items()
        },
    }
