"""Protocol v2 of the memory study (docs/learning.md, section 5): the gate against random vetoes as frequent.

v1 compared gated with ungated returns; where the base loses to costs, any filter that trades less looks good,
and that comparison cannot tell a memory from a coin. v2 holds the trading frequency fixed: a treated series
(the gate's walk-forward selection, or a control memory) is set against draws of `RandomVeto`, which vetoes, in
every fold, the same share of the same base's entries as the treated series did, chosen at random.

- `selected_vetoes`: which bars the walk-forward selection vetoed (the combination chosen for each fold).
- `veto_shares`: the share of the base's entries a series vetoed in each fold.
- `random_veto_returns`: the daily returns of R seeded random-veto draws at those shares.
- `frequency_matched_test`: the permutation p-value of the treated series among the draws, and the one-sided
  lower bound of its Sharpe difference against the median draw (`sharpe_difference_lower_bound`).
- `frequency_matched_decision` and `control_verdict`: the decision rule and the controls' verdict of v2.

Fold labels are those of `neuraltrade.research.memory_study.fold_of_bars`: 0 before the first test window,
1 … n the test windows, n + 1 after the last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.errors import ValidationError
from neuraltrade.market.history import PriceHistory
from neuraltrade.research.baselines import RandomVeto, RandomVetoConfig, entry_bars
from neuraltrade.research.evaluation import sharpe_difference_lower_bound, sharpe_ratio
from neuraltrade.research.memory_study import daily_returns, single_run
from neuraltrade.strategies.base import SignalFrame, Strategy

__all__ = [
    "control_verdict",
    "frequency_matched_decision",
    "frequency_matched_test",
    "median_draw",
    "permutation_p_value",
    "random_veto_returns",
    "selected_vetoes",
    "veto_shares",
]


def selected_vetoes(
    frames: Sequence[SignalFrame], chosen: Sequence[int], folds: np.ndarray, feature: str = "gate_vetoed"
) -> np.ndarray:
    """Per bar, 1 where the walk-forward selection vetoed, else 0.

    `frames` are the runs of the grid's combinations over the whole history (feature `feature` flags their
    vetoes), `chosen` the combination chosen for each test window (`walk_forward_returns`). In test window f
    the vetoes are those of ``chosen[f - 1]``; before the first test window those of ``chosen[0]`` (they set the
    position carried into it); after the last none (no out-of-sample day follows).
    """
    labels = np.asarray(folds, dtype=np.int64)
    if not chosen:
        return np.zeros(len(labels))
    rows = np.vstack([np.asarray(frame.features[feature], dtype=np.float64) for frame in frames])
    if rows.shape[1] != len(labels):
        raise ValidationError(f"frames have {rows.shape[1]} bars and the fold labels {len(labels)}")
    last = len(chosen)
    combination = np.asarray(chosen, dtype=np.int64)[np.clip(labels - 1, 0, last - 1)]
    flags = (rows[combination, np.arange(len(labels))] > 0).astype(np.float64)
    flags[labels > last] = 0.0
    return flags


def veto_shares(base: SignalFrame, vetoed: np.ndarray, folds: np.ndarray) -> tuple[float, ...]:
    """The share of the base's entries (`entry_bars`) that `vetoed` (per bar, > 0 where vetoed) vetoed in each
    fold label 0 … max(folds); 0 for a fold without entries."""
    labels = np.asarray(folds, dtype=np.int64)
    flags = np.asarray(vetoed, dtype=np.float64)
    if flags.shape != labels.shape or labels.shape != base.target.shape:
        raise ValidationError(
            f"{len(base.target)} bars need as many veto flags and fold labels, were given {flags.shape} and "
            f"{labels.shape}"
        )
    entries = entry_bars(base)
    of_entry, hit = labels[entries], flags[entries] > 0
    shares = []
    for fold in range(int(labels.max()) + 1 if len(labels) else 0):
        members = of_entry == fold
        shares.append(float(hit[members].sum() / members.sum()) if members.any() else 0.0)
    return tuple(shares)


def random_veto_returns(
    base: Strategy,
    history: PriceHistory,
    config: BacktestConfig,
    folds: np.ndarray,
    shares: Sequence[float],
    seeds: Sequence[Sequence[int]],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Backtest one `RandomVeto` draw of `base` per seed on `history` alone.

    Returns the draws' daily returns (draws x bars, `daily_returns`) and the entry bar of each draw's trades.
    """
    rows, entries = [], []
    for seed in seeds:
        strategy = RandomVeto(
            RandomVetoConfig(base=base.name, shares=tuple(shares), seed=tuple(int(part) for part in seed)),
            base,
            folds,
        )
        run = single_run(strategy, history, config)
        rows.append(daily_returns(run))
        entries.append(np.array([trade.entry_bar for trade in run.trades], dtype=np.int64))
    return (np.vstack(rows) if rows else np.zeros((0, len(history)))), entries


def permutation_p_value(treated_sharpe: float, draw_sharpes: Sequence[float]) -> float:
    """``(1 + #{draws at least as good}) / (1 + draws)``: the rank p-value of the treated series among draws
    that know nothing (exact when the treated series is itself such a draw)."""
    values = np.asarray(draw_sharpes, dtype=np.float64)
    return float((1 + np.sum(values >= treated_sharpe)) / (1 + len(values)))


def median_draw(draw_sharpes: Sequence[float]) -> int:
    """The index of the draw whose Sharpe ratio is the median of an odd number of draws (ties: the first)."""
    values = np.asarray(draw_sharpes, dtype=np.float64)
    if values.ndim != 1 or len(values) % 2 == 0:
        raise ValidationError(f"the median draw needs an odd number of draws, was given {values.shape}")
    return int(np.argsort(values, kind="stable")[len(values) // 2])


def frequency_matched_test(
    treated: Any, draws: Any, *, reps: int = 2000, seed: int = 20261202, confidence: float = 0.95
) -> dict[str, Any]:
    """The treated series' daily returns against R random-veto draws (draws x days) on the same days.

    Returns
    -------
    dict
        ``p_value`` (`permutation_p_value`), ``lower_bound`` and ``estimate`` of Sharpe(treated) − Sharpe(median
        draw) (annualised, `sharpe_difference_lower_bound`: the full result under ``bootstrap``), ``median_draw``,
        ``treated_sharpe``, ``draw_sharpes``, their ``mean_difference`` (treated minus the draws' mean Sharpe
        ratio), ``draw_percentiles`` (5, 50, 95) and ``draws``.
    """
    series = np.asarray(treated, dtype=np.float64)
    matrix = np.atleast_2d(np.asarray(draws, dtype=np.float64))
    if matrix.shape[1] != len(series):
        raise ValidationError(f"draws have {matrix.shape[1]} days and the treated series {len(series)}")
    sharpes = [sharpe_ratio(row) for row in matrix]
    mine = sharpe_ratio(series)
    middle = median_draw(sharpes)
    bound = sharpe_difference_lower_bound(series, matrix[middle], reps=reps, seed=seed, confidence=confidence)
    low, median, high = np.percentile(sharpes, [5, 50, 95])
    return {
        "draws": len(sharpes),
        "treated_sharpe": mine,
        "draw_sharpes": sharpes,
        "median_draw": middle,
        "estimate": bound["estimate"],
        "lower_bound": bound["lower_bound"],
        "p_value": permutation_p_value(mine, sharpes),
        "mean_difference": mine - float(np.mean(sharpes)),
        "draw_percentiles": {"5": float(low), "50": float(median), "95": float(high)},
        "bootstrap": bound,
    }


def frequency_matched_decision(test: Mapping[str, Any], dsr: float, *, level: float = 0.05) -> dict[str, Any]:
    """v2's rule: the memory helps beyond trading less iff the lower bound against the median draw is > 0, the
    permutation p-value < `level` and the Deflated Sharpe Ratio > 1 − `level`."""
    return {
        "lower_bound": test["lower_bound"],
        "p_value": test["p_value"],
        "dsr": dsr,
        "memory_helps": bool(test["lower_bound"] > 0 and test["p_value"] < level and dsr > 1.0 - level),
    }


def control_verdict(
    leaking: Mapping[str, Any], shuffled: Sequence[Mapping[str, Any]], *, required: int = 19
) -> dict[str, Any]:
    """v2's controls: the leaking memory's lower bound must be > 0, and at least `required` shuffled memories'
    lower bounds ≤ 0."""
    quiet = sum(test["lower_bound"] <= 0 for test in shuffled)
    return {
        "leak_detected": bool(leaking["lower_bound"] > 0),
        "shuffled_not_significant": int(quiet),
        "shuffled_seeds": len(shuffled),
        "shuffled_permutation_below_5_percent": int(sum(test["p_value"] < 0.05 for test in shuffled)),
        "passed": bool(leaking["lower_bound"] > 0 and quiet >= required),
    }
