"""Does the learning memory help? The pre-registered protocol of docs/learning.md, at full size.

Run: ``.venv/bin/python bench/learning.py`` (about 8 minutes on 2 cores). Prints the tables and writes
``bench/results/learning.json`` (every figure), ``bench/results/learning.txt`` (the tables of docs/learning.md)
and ``bench/results/learning_trials.json`` (every registered trial: its keys, days, Sharpe ratio and the digest
of its record; ``--full-trials`` writes the records whole, with their out-of-sample daily returns, 20 MB).

Per dataset (the shipped NVDA, ORCL and YHOO daily bars; a synthetic market with planted regimes) and base
strategy (sma_cross, mean_reversion, momentum at their defaults): the base's episodes over every symbol's
whole history, judged and embedded, make its learning memory (with a distillation every 1 January); each
variant (ungated; gated by the memory; the equity-curve filter; the kNN vote) runs over each symbol's whole
history for each combination of its grid, and a rolling walk-forward (train 504 bars, test 252) picks per
fold, on the train bars, the combination whose test-bar returns count. Then the tests of section 1.7, the
decision rule of 1.8 and the controls of 1.9, with the distillation accuracy and cost figures of
``bench/learning_distillation.py``.

``--protocol v2`` runs protocol v2 instead (section 5 of docs/learning.md, registered after v1's results): the
same studies, then each gated walk-forward series and each control set against random vetoes of as many of
the base's entries per fold (`neuraltrade.research.frequency_matched`: 99 draws for the gate, 39 per control),
writing ``bench/results/learning_v2.json``, ``learning_v2.txt`` and ``learning_v2_trials.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.market.history import PriceHistory
from neuraltrade.market.ingest import read_bars
from neuraltrade.market.synthetic import MarketConfig, generate_market, generate_regimes
from neuraltrade.research.baselines import (
    EQUITY_FILTER_GRID,
    GATE_GRID,
    KNN_VOTE_GRID,
    EquityCurveFilter,
    EquityCurveFilterConfig,
    KnnVote,
    KnnVoteConfig,
    entry_bars,
)
from neuraltrade.research.evaluation import (
    deflated_sharpe_ratio,
    minimum_detectable_sharpe_difference,
    performance_summary,
    sharpe_difference_lower_bound,
    spa_test,
)
from neuraltrade.research.frequency_matched import (
    control_verdict,
    frequency_matched_decision,
    frequency_matched_test,
    permutation_p_value,
    random_veto_returns,
    selected_vetoes,
    veto_shares,
)
from neuraltrade.research.memory_study import (
    CONTROL_GATE,
    BaseEvidence,
    base_evidence,
    daily_returns,
    distillations_at,
    fold_of_bars,
    honest_memory,
    leaking_memory,
    shuffled_memory,
    single_run,
    walk_forward_returns,
)
from neuraltrade.research.meta_labels import brier_score, meta_label_confusion
from neuraltrade.research.trials import Trial, TrialRegistry
from neuraltrade.research.walk_forward import FoldWindow, fold_windows
from neuraltrade.sample_data import sample_paths
from neuraltrade.strategies.base import Strategy
from neuraltrade.strategies.gated import GatedConfig, gated_class
from neuraltrade.strategies.mean_reversion import MeanReversion
from neuraltrade.strategies.momentum import Momentum
from neuraltrade.strategies.sma_cross import SmaCross

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = BacktestConfig(cash=10_000.0, commission=0.001, fractional=True)
#: Controls run many times over; the gate's own tests hold it causal, so they skip the check.
CONTROL_CONFIG = replace(CONFIG, verify_causality=False)
TRAIN_BARS, TEST_BARS = 504, 252
SEED = 20261202
SHUFFLE_SEEDS = range(20)
SYNTHETIC = MarketConfig(symbols=6, bars_per_symbol=2520, seed=SEED)
STRATEGIES = ("sma_cross", "mean_reversion", "momentum")
FAMILY, CONTROL_FAMILY = "memory_gate_walk_forward", "memory_gate_controls"
VARIANTS = ("gated", "equity_filter", "knn_vote")
GRIDS: dict[str, tuple[Mapping[str, Any], ...]] = {
    "ungated": ({},),
    "gated": GATE_GRID,
    "equity_filter": EQUITY_FILTER_GRID,
    "knn_vote": KNN_VOTE_GRID,
}
SELECTION = {"selection": "walk_forward_train_sharpe"}
#: The control series: the registered controls (1.9), then the exploratory honest memory at the control gate.
CONTROLS = ("leaking", "leaking_default_gate", *(f"shuffled_{seed}" for seed in SHUFFLE_SEEDS), "honest_control_gate")
#: Protocol v2 (docs/learning.md, section 5): the series set against frequency-matched random vetoes, the
#: number of draws of each, and the family of the draws in the trial registry.
V2_CONTROLS = CONTROLS[:-1]
V2_SERIES = ("gated", *V2_CONTROLS)
GATE_DRAWS, CONTROL_DRAWS = 99, 39
V2_FAMILY = "memory_gate_v2_random_veto"


def base_strategy(name: str) -> Strategy:
    return {"sma_cross": SmaCross, "mean_reversion": MeanReversion, "momentum": Momentum}[name]()


def histories(dataset: str) -> list[PriceHistory]:
    if dataset == "shipped":
        return [PriceHistory.from_frame(read_bars(path).frame) for path in sample_paths()]
    frame = generate_market(SYNTHETIC)
    return [PriceHistory.from_frame(frame, symbol) for symbol in SYNTHETIC.names]


def new_years(bars: Sequence[PriceHistory]) -> list[datetime]:
    """Every 1 January (UTC) strictly inside the data: the distillations' as_of."""
    first = min(int(history.timestamps[0]) for history in bars)
    last = max(int(history.timestamps[-1]) for history in bars)
    start, stop = datetime.fromtimestamp(first / 1e6, UTC).year + 1, datetime.fromtimestamp(last / 1e6, UTC).year
    return [datetime(year, 1, 1, tzinfo=UTC) for year in range(start, stop + 1)]


def variant_strategy(
    variant: str, combination: Mapping[str, Any], name: str, evidence: BaseEvidence, memory: Any
) -> Strategy:
    base = base_strategy(name)
    if variant == "gated":
        return gated_class(name)(GatedConfig(base=name, **combination), base, memory)
    if variant == "equity_filter":
        return EquityCurveFilter(EquityCurveFilterConfig(base=name, **combination), base, evidence.all_trades())
    if variant == "knn_vote":
        return KnnVote(KnnVoteConfig(base=name, **combination), base)
    return base


def entry_bars_in(windows: Sequence[FoldWindow], chosen: Sequence[int], entries: Sequence[np.ndarray]) -> int:
    """Trades entered inside each fold's test window by the combination chosen for that fold."""
    return sum(
        int(np.sum((entries[row] >= window.test_start) & (entries[row] < window.test_stop)))
        for window, row in zip(windows, chosen, strict=True)
    )


def study(task: tuple[str, str, str]) -> dict[str, Any]:
    """Everything one (dataset, base strategy) contributes, per symbol: out-of-sample returns of every variant
    and combination, the walk-forward selection, the controls, and the gate's verdict on each base entry; with
    protocol v2 also the frequency-matched random-veto draws of the gated selection and of each control, pooled
    over the symbols (`matched_draws`)."""
    dataset, name, protocol = task
    with threadpool_limits(1):
        started = time.perf_counter()
        bars = histories(dataset)
        evidence = base_evidence(base_strategy(name), bars, CONFIG)
        memory = honest_memory(evidence, distillations_at(evidence, new_years(bars)))
        windows = {h.symbol: fold_windows(len(h), train_bars=TRAIN_BARS, test_bars=TEST_BARS) for h in bars}
        folds = {h.symbol: fold_of_bars(len(h), windows[h.symbol]) for h in bars}
        # "Within each fold": an episode's group is its symbol and the fold of its decision bar on that symbol.
        keys = sorted(
            {
                (item.episode.symbol, int(folds[item.episode.symbol][item.episode.decision_bar]))
                for item in evidence.judged
            }
        )
        groups = [
            keys.index((item.episode.symbol, int(folds[item.episode.symbol][item.episode.decision_bar])))
            for item in evidence.judged
        ]
        leak = leaking_memory(evidence)
        # The controls' memories carry no distillations; the honest one they are set against neither.
        bare = honest_memory(evidence)
        shuffled = [shuffled_memory(evidence, groups, seed) for seed in SHUFFLE_SEEDS]
        regimes = generate_regimes(SYNTHETIC) if dataset == "synthetic" else None
        symbols: dict[str, Any] = {}
        draws: dict[str, dict[str, Any]] = {}
        for index, history in enumerate(bars):
            folds_of = windows[history.symbol]
            oos = np.concatenate([np.arange(w.test_start, w.test_stop) for w in folds_of])
            result: dict[str, Any] = {"timestamps": history.timestamps[oos].tolist(), "variants": {}}
            gated_frames = []
            for variant, grid in GRIDS.items():
                rows, entries = [], []
                for combination in grid:
                    if variant == "ungated":
                        run = evidence.runs[history.symbol]
                    else:
                        strategy = variant_strategy(variant, combination, name, evidence, memory)
                        run = single_run(strategy, history, CONFIG)
                    rows.append(daily_returns(run))
                    entries.append(np.array([trade.entry_bar for trade in run.trades], dtype=np.int64))
                    if variant == "gated":
                        gated_frames.append(run.frames[history.symbol])
                matrix = np.vstack(rows)
                _, selected, chosen = walk_forward_returns(matrix, folds_of)
                result["variants"][variant] = {
                    "combinations": matrix[:, oos].tolist(),
                    "selected": selected.tolist(),
                    "chosen": chosen,
                    "trades": entry_bars_in(folds_of, chosen, entries),
                }
            chosen = result["variants"]["gated"]["chosen"]
            result["gate_entries"] = gate_entries(evidence, history, folds_of, chosen, gated_frames, regimes, index)
            result["base_entries"] = base_entries(evidence, history, regimes, index)
            runs = control_runs(name, history, bare, leak, shuffled)
            result["controls"] = {
                key: [daily_returns(run)[oos].tolist() for run in value]
                if isinstance(value, list)
                else daily_returns(value)[oos].tolist()
                for key, value in runs.items()
            }
            symbols[history.symbol] = result
            if protocol == "v2":
                vetoes = {
                    "gated": selected_vetoes(gated_frames, chosen, folds[history.symbol]),
                    **{
                        control: _control(runs, control).frames[history.symbol].features["gate_vetoed"]
                        for control in V2_CONTROLS
                    },
                }
                trades = {"gated": result["variants"]["gated"]["trades"]} | {
                    control: entry_bars_in(folds_of, [0] * len(folds_of), [_trade_entries(_control(runs, control))])
                    for control in V2_CONTROLS
                }
                draws[history.symbol] = matched_draws(
                    name, history, evidence, folds[history.symbol], folds_of, vetoes, trades, index, oos
                )
        return {
            "dataset": dataset,
            "strategy": name,
            "symbols": symbols,
            "v2": pooled_draws(symbols, draws) if protocol == "v2" else None,
            "episodes": len(evidence.judged),
            "seconds": time.perf_counter() - started,
        }


def _trade_entries(run: Any) -> np.ndarray:
    return np.array([trade.entry_bar for trade in run.trades], dtype=np.int64)


def matched_draws(
    name: str,
    history: PriceHistory,
    evidence: BaseEvidence,
    labels: np.ndarray,
    windows: Sequence[FoldWindow],
    vetoes: Mapping[str, np.ndarray],
    trades: Mapping[str, int],
    index: int,
    oos: np.ndarray,
) -> dict[str, Any]:
    """Protocol v2 (5.2) on one symbol: for each treated series (the gated selection, each control), its veto
    share of the base's entries per fold, and the out-of-sample returns, trades and vetoes of its random-veto
    draws at those shares."""
    base_frame = evidence.runs[history.symbol].frames[history.symbol]
    entries = entry_bars(base_frame)
    in_test = np.isin(entries, oos)
    out: dict[str, Any] = {}
    for series, flags in vetoes.items():
        shares = veto_shares(base_frame, flags, labels)
        count = GATE_DRAWS if series == "gated" else CONTROL_DRAWS
        seeds = [(SEED, V2_SERIES.index(series), index, draw) for draw in range(count)]
        returns, draw_entries = random_veto_returns(base_strategy(name), history, CONTROL_CONFIG, labels, shares, seeds)
        out[series] = {
            "shares": list(shares),
            "seeds": [list(seed) for seed in seeds],
            "returns": returns[:, oos],
            "entries": int(in_test.sum()),
            "vetoes": int(np.sum(np.asarray(flags)[entries[in_test]] > 0)),
            "trades": trades[series],
            "draw_trades": [entry_bars_in(windows, [0] * len(windows), [bars]) for bars in draw_entries],
        }
    return out


def pooled_draws(symbols: Mapping[str, Any], draws: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One strategy's random-veto draws pooled over its symbols (1.6), draw r with draw r, per treated series."""
    out = {}
    for series in V2_SERIES:
        stamps, returns = pooled(
            {symbol: (symbols[symbol]["timestamps"], data[series]["returns"]) for symbol, data in draws.items()}
        )
        out[series] = {
            "timestamps": stamps,
            "returns": returns,
            "entries": sum(data[series]["entries"] for data in draws.values()),
            "vetoes": sum(data[series]["vetoes"] for data in draws.values()),
            "trades": sum(data[series]["trades"] for data in draws.values()),
            "draw_trades": np.sum([data[series]["draw_trades"] for data in draws.values()], axis=0).tolist(),
            "shares": {symbol: data[series]["shares"] for symbol, data in draws.items()},
        }
    return out


def gate_entries(
    evidence: BaseEvidence,
    history: PriceHistory,
    windows: Sequence[FoldWindow],
    chosen: Sequence[int],
    frames: Sequence[Any],
    regimes: np.ndarray | None,
    index: int,
) -> list[dict[str, Any]]:
    """Each base episode of `history` decided in a test window: its success, the chosen gate's probability and
    veto, and (synthetic) the planted regime at its decision."""
    rows = []
    for item in evidence.judged:
        episode = item.episode
        if episode.symbol != history.symbol:
            continue
        bar = episode.decision_bar
        fold = next((number for number, w in enumerate(windows) if w.test_start <= bar < w.test_stop), None)
        if fold is None:
            continue
        features = frames[chosen[fold]].features
        rows.append(
            {
                "success": bool(item.verdict.success),
                "vetoed": bool(features["gate_vetoed"][bar] > 0),
                "probability": float(features["gate_probability"][bar]),
                "regime": None if regimes is None else int(regimes[index, bar]),
            }
        )
    return rows


def base_entries(
    evidence: BaseEvidence, history: PriceHistory, regimes: np.ndarray | None, index: int
) -> list[list[int]]:
    """Every judged base episode of `history`: [success, planted regime or -1] (the manipulation check)."""
    return [
        [int(item.verdict.success), -1 if regimes is None else int(regimes[index, item.episode.decision_bar])]
        for item in evidence.judged
        if item.episode.symbol == history.symbol
    ]


def control_runs(name: str, history: PriceHistory, memory: Any, leak: Any, shuffled: Sequence[Any]) -> dict[str, Any]:
    """Runs of the gate on the leaking memory (control and default settings), on the shuffled memories (control
    settings) and, exploratory, on the honest memory at the control settings (episodes only, no distillations,
    as the control memories)."""
    base = base_strategy(name)

    def run(memory: Any, gate: Mapping[str, Any]) -> Any:
        strategy = gated_class(name)(GatedConfig(base=name, **gate), base, memory)
        return single_run(strategy, history, CONTROL_CONFIG)

    return {
        "leaking": run(leak, CONTROL_GATE),
        "leaking_default_gate": run(leak, {}),
        "shuffled": [run(item, CONTROL_GATE) for item in shuffled],
        "honest_control_gate": run(memory, CONTROL_GATE),
    }


# --- pooling and registering ------------------------------------------------------------------------------


def pooled(per_symbol: Mapping[str, tuple[Sequence[int], Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Equal-weight mean of the symbols' returns on each date (over the symbols out of sample that day); the
    returns may be several series (rows, days last), pooled row by row."""
    stamps = np.unique(np.concatenate([np.asarray(t, dtype=np.int64) for t, _ in per_symbol.values()]))
    shape = np.shape(next(iter(per_symbol.values()))[1])[:-1]
    total, count = np.zeros((*shape, len(stamps))), np.zeros(len(stamps))
    for times, values in per_symbol.values():
        rows = np.searchsorted(stamps, np.asarray(times, dtype=np.int64))
        total[..., rows] += np.asarray(values)
        count[rows] += 1
    return stamps, total / count


class Study:
    """The registry and the pooled series of every (dataset, strategy or "pooled", variant, parameters)."""

    def __init__(self, results: Sequence[Mapping[str, Any]]) -> None:
        self.results = {(r["dataset"], r["strategy"]): r for r in results}
        self.registry = TrialRegistry()
        self.series: dict[tuple[str, str, str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.symbols = {d: tuple(self.results[(d, STRATEGIES[0])]["symbols"]) for d in ("shipped", "synthetic")}

    def _register(
        self,
        family: str,
        dataset: str,
        strategy: str,
        variant: str,
        key: str,
        parameters: Mapping[str, Any],
        series: tuple[np.ndarray, np.ndarray],
    ) -> None:
        trial = Trial.create(
            family=family,
            variant=variant,
            strategy=strategy,
            parameters=parameters,
            symbols=self.symbols[dataset],
            timestamps=series[0].tolist(),
            returns=series[1].tolist(),
        )
        self.registry.add(trial)
        self.series[(dataset, strategy, variant, key)] = series

    def build(self) -> None:
        for dataset in ("shipped", "synthetic"):
            for variant, grid in GRIDS.items():
                keys = [str(i) for i in range(len(grid))] + ([] if variant == "ungated" else ["selected"])
                for key in keys:
                    by_strategy = {}
                    for name in STRATEGIES:
                        symbols = self.results[(dataset, name)]["symbols"]
                        per_symbol = {
                            symbol: (data["timestamps"], self._values(data["variants"][variant], key))
                            for symbol, data in symbols.items()
                        }
                        by_strategy[name] = pooled(per_symbol)
                        parameters = SELECTION | {"grid": list(grid)} if key == "selected" else dict(grid[int(key)])
                        self._register(FAMILY, dataset, name, variant, key, parameters, by_strategy[name])
                    stamps = by_strategy[STRATEGIES[0]][0]
                    together = np.mean([by_strategy[name][1] for name in STRATEGIES], axis=0)
                    parameters = SELECTION | {"grid": list(grid)} if key == "selected" else dict(grid[int(key)])
                    self._register(FAMILY, dataset, "pooled", variant, key, parameters, (stamps, together))
            for control in CONTROLS:
                by_strategy = {}
                for name in STRATEGIES:
                    symbols = self.results[(dataset, name)]["symbols"]
                    by_strategy[name] = pooled(
                        {s: (d["timestamps"], _control(d["controls"], control)) for s, d in symbols.items()}
                    )
                stamps = by_strategy[STRATEGIES[0]][0]
                together = np.mean([by_strategy[name][1] for name in STRATEGIES], axis=0)
                gate = {} if control == "leaking_default_gate" else CONTROL_GATE
                self._register(CONTROL_FAMILY, dataset, "pooled", control, "control", dict(gate), (stamps, together))

    def build_v2(self) -> None:
        """Protocol v2 (5.6): register every random-veto draw, pooled over symbols, per strategy (the gated
        selection's draws) and over strategies (every series' draws), in family `V2_FAMILY`."""
        self.draws: dict[tuple[str, str, str], np.ndarray] = {}
        for dataset in ("shipped", "synthetic"):
            for series in V2_SERIES:
                per_strategy = {name: self.results[(dataset, name)]["v2"][series] for name in STRATEGIES}
                stamps = per_strategy[STRATEGIES[0]]["timestamps"]
                if any(not np.array_equal(data["timestamps"], stamps) for data in per_strategy.values()):
                    raise SystemExit(f"{dataset}: the strategies' out-of-sample days differ")
                levels = {name: per_strategy[name]["returns"] for name in STRATEGIES} if series == "gated" else {}
                levels["pooled"] = np.mean([per_strategy[name]["returns"] for name in STRATEGIES], axis=0)
                for strategy, matrix in levels.items():
                    treated = self.series[(dataset, strategy, *_treated_key(series))]
                    if not np.array_equal(treated[0], stamps):
                        raise SystemExit(f"{dataset}/{strategy}: {series} and its draws are not on the same days")
                    self.draws[(dataset, strategy, series)] = matrix
                    shares = {
                        name: per_strategy[name]["shares"]
                        for name in (STRATEGIES if strategy == "pooled" else (strategy,))
                    }
                    for draw, returns in enumerate(matrix):
                        parameters = {
                            "matched_to": series,
                            "draw": draw,
                            "seed": [SEED, V2_SERIES.index(series), "symbol index", draw],
                            "shares": shares,
                        }
                        key = f"{series}:{draw}"
                        self._register(V2_FAMILY, dataset, strategy, "random_veto", key, parameters, (stamps, returns))

    @staticmethod
    def _values(variant: Mapping[str, Any], key: str) -> list[float]:
        return variant["selected"] if key == "selected" else variant["combinations"][int(key)]


def _treated_key(series: str) -> tuple[str, str]:
    """The (variant, key) of a v2 treated series in `Study.series`."""
    return ("gated", "selected") if series == "gated" else (series, "control")


def _control(controls: Mapping[str, Any], name: str) -> Any:
    if name.startswith("shuffled_"):
        return controls["shuffled"][int(name.removeprefix("shuffled_"))]
    return controls[name]


def bound_job(job: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    with threadpool_limits(1):
        return sharpe_difference_lower_bound(job[0], job[1], reps=2000, seed=SEED)


def spa_job(job: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    with threadpool_limits(1):
        return spa_test(job[0], job[1], reps=1000, seed=SEED)


# --- the tests --------------------------------------------------------------------------------------------


def analyse(study: Study, pool: ProcessPoolExecutor) -> dict[str, Any]:
    """Tests 1-6, the decision rule and the controls, per dataset."""
    figures: dict[str, Any] = {}
    candidates = study.registry.trials(family=FAMILY)
    trial_sharpes = study.registry.sharpe_ratios(candidates)
    jobs: list[tuple[str, str, str, str, tuple[np.ndarray, np.ndarray]]] = []
    spa_jobs = []
    for dataset in ("shipped", "synthetic"):
        series = study.series
        ungated = {name: series[(dataset, name, "ungated", "0")][1] for name in (*STRATEGIES, "pooled")}
        for name in (*STRATEGIES, "pooled"):
            for variant in VARIANTS:
                jobs.append(
                    (
                        dataset,
                        name,
                        variant,
                        "ungated",
                        (series[(dataset, name, variant, "selected")][1], ungated[name]),
                    )
                )
        pooled_gated = series[(dataset, "pooled", "gated", "selected")][1]
        for other in ("equity_filter", "knn_vote"):
            jobs.append(
                (dataset, "pooled", "gated", other, (pooled_gated, series[(dataset, "pooled", other, "selected")][1]))
            )
        for control in CONTROLS:
            jobs.append(
                (
                    dataset,
                    "pooled",
                    control,
                    "ungated",
                    (series[(dataset, "pooled", control, "control")][1], ungated["pooled"]),
                )
            )
        alternatives = [key for key in series if key[0] == dataset and key[1] == "pooled" and key[2] in VARIANTS]
        spa_jobs.append(
            (dataset, alternatives, (ungated["pooled"], np.column_stack([series[key][1] for key in alternatives])))
        )
    bounds = list(pool.map(bound_job, [job[-1] for job in jobs]))
    spas = list(pool.map(spa_job, [job[-1] for job in spa_jobs]))
    for dataset in ("shipped", "synthetic"):
        figures[dataset] = {"comparisons": [], "controls": {}}
    for (dataset, name, variant, against, _), bound in zip(jobs, bounds, strict=True):
        row = {"strategy": name, "variant": variant, "against": against, **bound}
        if variant in VARIANTS:
            figures[dataset]["comparisons"].append(row)
        else:
            figures[dataset]["controls"][variant] = row
    for (dataset, alternatives, _), spa in zip(spa_jobs, spas, strict=True):
        spa["alternatives"] = [f"{key[2]}:{key[3]}" for key in alternatives]
        figures[dataset]["spa"] = spa
    for dataset in ("shipped", "synthetic"):
        data = figures[dataset]
        gated = data["comparisons"][
            [(r["strategy"], r["variant"], r["against"]) for r in data["comparisons"]].index(
                ("pooled", "gated", "ungated")
            )
        ]
        dsr = gated_dsr(study, dataset, trial_sharpes)
        data["dsr"] = dsr
        data["minimum_detectable"] = {
            "bootstrap": minimum_detectable_sharpe_difference(
                gated["days"], standard_error=gated["bootstrap_standard_error"]
            ),
            "iid": minimum_detectable_sharpe_difference(
                gated["days"], correlation=gated["correlation"], sharpe=gated["base_sharpe"]
            ),
        }
        data["decision"] = {
            "lower_bound": gated["lower_bound"],
            "spa_consistent": data["spa"]["consistent"],
            "dsr": dsr["dsr"],
            "memory_helps": bool(gated["lower_bound"] > 0 and data["spa"]["consistent"] < 0.05 and dsr["dsr"] > 0.95),
        }
        shuffled = [data["controls"][f"shuffled_{seed}"]["lower_bound"] for seed in SHUFFLE_SEEDS]
        data["control_verdict"] = {
            "leak_detected": bool(data["controls"]["leaking"]["lower_bound"] > 0),
            "leak_detected_at_default_gate": bool(data["controls"]["leaking_default_gate"]["lower_bound"] > 0),
            "shuffled_not_significant": int(sum(bound <= 0 for bound in shuffled)),
            "shuffled_seeds": len(shuffled),
        }
        data["permutation"] = permutation_check(study, dataset)
        data["performance"] = performance(study, dataset)
        data["meta_labels"] = meta_labels(study, dataset)
        data["regimes"] = regime_check(study, dataset) if dataset == "synthetic" else None
    figures["trials"] = {"candidates": len(candidates), "controls": len(study.registry.trials(family=CONTROL_FAMILY))}
    return figures


def gated_dsr(study: Study, dataset: str, trial_sharpes: Any) -> dict[str, Any]:
    """Test 3: the Deflated Sharpe Ratio of the pooled gated (walk-forward) series over the candidate trials."""
    return deflated_sharpe_ratio(study.series[(dataset, "pooled", "gated", "selected")][1], trial_sharpes)


def permutation_check(study: Study, dataset: str) -> dict[str, Any]:
    """Exploratory (not registered): the honest memory against the 20 shuffled ones, both at the control gate.

    A permutation test of the memory's information with "trading less" held fixed: the share of memories
    (the honest one included) whose pooled out-of-sample Sharpe ratio is at least the honest one's.
    """
    honest = performance_summary(study.series[(dataset, "pooled", "honest_control_gate", "control")][1])["sharpe"]
    shuffled = [
        performance_summary(study.series[(dataset, "pooled", f"shuffled_{seed}", "control")][1])["sharpe"]
        for seed in SHUFFLE_SEEDS
    ]
    ungated = performance_summary(study.series[(dataset, "pooled", "ungated", "0")][1])["sharpe"]
    return {
        "honest_sharpe": honest,
        "shuffled_sharpes": shuffled,
        "ungated_sharpe": ungated,
        "p_value": permutation_p_value(honest, shuffled),
    }


def v2_job(job: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    with threadpool_limits(1):
        return frequency_matched_test(job[0], job[1], reps=2000, seed=SEED)


def analyse_v2(study: Study, pool: ProcessPoolExecutor) -> dict[str, Any]:
    """Protocol v2 (section 5): each treated series against its frequency-matched random-veto draws, the
    decision rule of 5.4 and the controls of 5.5, per dataset."""
    candidates = study.registry.trials(family=FAMILY)
    trial_sharpes = study.registry.sharpe_ratios(candidates)
    jobs = [
        (dataset, strategy, series)
        for dataset in ("shipped", "synthetic")
        for strategy, series in [
            *((name, "gated") for name in (*STRATEGIES, "pooled")),
            *(("pooled", c) for c in V2_CONTROLS),
        ]
    ]
    pairs = [
        (study.series[(dataset, strategy, *_treated_key(series))][1], study.draws[(dataset, strategy, series)])
        for dataset, strategy, series in jobs
    ]
    figures: dict[str, Any] = {dataset: {"gated": {}, "controls": {}} for dataset in ("shipped", "synthetic")}
    for (dataset, strategy, series), test in zip(jobs, pool.map(v2_job, pairs), strict=True):
        test["matching"] = matching(study, dataset, strategy, series)
        figures[dataset]["gated" if series == "gated" else "controls"][strategy if series == "gated" else series] = test
    for dataset in ("shipped", "synthetic"):
        data = figures[dataset]
        primary = data["gated"]["pooled"]
        data["dsr"] = gated_dsr(study, dataset, trial_sharpes)
        data["gated_veto_shares"] = {
            name: study.results[(dataset, name)]["v2"]["gated"]["shares"] for name in STRATEGIES
        }
        data["decision"] = frequency_matched_decision(primary, data["dsr"]["dsr"])
        data["minimum_detectable"] = {
            "bootstrap": minimum_detectable_sharpe_difference(
                primary["bootstrap"]["days"], standard_error=primary["bootstrap"]["bootstrap_standard_error"]
            ),
            "permutation_gap": primary["draw_percentiles"]["95"] - primary["draw_percentiles"]["50"],
        }
        controls = data["controls"]
        data["control_verdict"] = control_verdict(
            controls["leaking"], [controls[f"shuffled_{seed}"] for seed in SHUFFLE_SEEDS]
        ) | {"leak_detected_at_default_gate": bool(controls["leaking_default_gate"]["lower_bound"] > 0)}
    figures["trials"] = {
        "candidates": len(candidates),
        "controls": len(study.registry.trials(family=CONTROL_FAMILY)),
        "random_veto_draws": len(study.registry.trials(family=V2_FAMILY)),
    }
    return figures


def matching(study: Study, dataset: str, strategy: str, series: str) -> dict[str, Any]:
    """How well the draws match the treated series' frequency: base entries out of sample, the treated series'
    vetoes among them and its trades, and the draws' trades (mean, minimum, maximum)."""
    parts = [
        study.results[(dataset, name)]["v2"][series] for name in (STRATEGIES if strategy == "pooled" else (strategy,))
    ]
    draw_trades = np.sum([part["draw_trades"] for part in parts], axis=0)
    return {
        "entries": sum(part["entries"] for part in parts),
        "vetoes": sum(part["vetoes"] for part in parts),
        "trades": sum(part["trades"] for part in parts),
        "draw_trades_mean": float(draw_trades.mean()),
        "draw_trades_min": int(draw_trades.min()),
        "draw_trades_max": int(draw_trades.max()),
    }


def performance(study: Study, dataset: str) -> list[dict[str, Any]]:
    rows = []
    for name in (*STRATEGIES, "pooled"):
        for variant in ("ungated", *VARIANTS):
            key = "0" if variant == "ungated" else "selected"
            trades = sum(
                data["variants"][variant]["trades"]
                for strategy in (STRATEGIES if name == "pooled" else (name,))
                for data in study.results[(dataset, strategy)]["symbols"].values()
            )
            rows.append(
                {
                    "strategy": name,
                    "variant": variant,
                    "trades": trades,
                    **performance_summary(study.series[(dataset, name, variant, key)][1]),
                }
            )
    return rows


def meta_labels(study: Study, dataset: str) -> dict[str, Any]:
    out = {}
    for name in (*STRATEGIES, "pooled"):
        entries = [
            row
            for strategy in (STRATEGIES if name == "pooled" else (name,))
            for data in study.results[(dataset, strategy)]["symbols"].values()
            for row in data["gate_entries"]
        ]
        success = np.array([row["success"] for row in entries], dtype=bool)
        vetoed = np.array([row["vetoed"] for row in entries], dtype=bool)
        probability = np.array([row["probability"] for row in entries])
        known = np.isfinite(probability)
        out[name] = {
            "confusion": meta_label_confusion(success, vetoed),
            "brier": brier_score(probability[known], success[known]) if known.any() else None,
        }
    return out


def regime_check(study: Study, dataset: str) -> dict[str, Any]:
    """The base strategies' judged success rate per planted regime (is there anything state-dependent to learn?)."""
    out = {}
    for name in STRATEGIES:
        rows = np.array(
            [row for data in study.results[(dataset, name)]["symbols"].values() for row in data["base_entries"]]
        )
        out[name] = {
            regime: {
                "episodes": int(np.sum(rows[:, 1] == index)),
                "success_rate": float(rows[rows[:, 1] == index, 0].mean()) if np.any(rows[:, 1] == index) else None,
            }
            for index, regime in enumerate(SYNTHETIC.regime_names)
        }
    return out


# --- output -----------------------------------------------------------------------------------------------


def _number(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def tables(figures: Mapping[str, Any]) -> str:
    """The results as the markdown tables of docs/learning.md."""
    lines: list[str] = []
    for dataset in ("shipped", "synthetic"):
        data = figures[dataset]
        lines += [
            f"### {dataset}",
            "",
            "| strategy | variant | Sharpe | return | max drawdown | trades |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['strategy']} | {r['variant']} | {_number(r['sharpe'])} | {100 * r['total_return']:.1f} % | "
            f"{100 * r['max_drawdown']:.1f} % | {r['trades']} |"
            for r in data["performance"]
        ]
        lines += [
            "",
            "| strategy | variant − against | Sharpe difference | 95 % lower bound | block | days |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['strategy']} | {r['variant']} − {r['against']} | {_number(r['estimate'])} | "
            f"{_number(r['lower_bound'])} | {r['block_length']} | {r['days']} |"
            for r in data["comparisons"]
        ]
        spa, dsr, decision = data["spa"], data["dsr"], data["decision"]
        detectable = data["minimum_detectable"]
        lines += [
            "",
            f"SPA over {spa['variants']} pooled alternatives (ungated benchmark): p consistent {spa['consistent']:.3f} "
            f"(lower {spa['lower']:.3f}, upper {spa['upper']:.3f}), better at 5 %: "
            f"{[spa['alternatives'][i] for i in spa['better']] or 'none'}.",
            f"DSR of the pooled gated series: {dsr['dsr']:.3f} (Sharpe {dsr['sharpe']:.2f} against an expected maximum "
            f"of {dsr['expected_maximum_sharpe']:.2f} over {dsr['trials']} trials; skewness {dsr['skewness']:.2f}, "
            f"kurtosis {dsr['kurtosis']:.1f}).",
            f"Minimum detectable Sharpe difference (one-sided 5 %, power 80 %): "
            f"{detectable['bootstrap']['minimum_detectable_difference']:.2f} a year from the bootstrap standard "
            f"error ({detectable['bootstrap']['standard_error']:.3f}); "
            f"{detectable['iid']['minimum_detectable_difference']:.2f} from the i.i.d. formula.",
            f"**Decision: {'the memory helps' if decision['memory_helps'] else 'no evidence that the memory helps'}** "
            f"(lower bound {decision['lower_bound']:.3f}, SPA {decision['spa_consistent']:.3f}, "
            f"DSR {decision['dsr']:.3f}).",
            "",
            "| meta-labels (gate) | entries | vetoed | winners kept | losers kept | winners vetoed | losers vetoed "
            "| base rate | precision kept [95 %] | lift | Brier | Brier (base rate) | skill |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, entry in data["meta_labels"].items():
            c, b = entry["confusion"], entry["brier"] or {}
            low, high = c["precision_interval"]
            counts = " | ".join(
                str(c[key])
                for key in ("trades", "vetoed", "winners_kept", "losers_kept", "winners_vetoed", "losers_vetoed")
            )
            precision = f"{_number(c['precision'], 3)} [{_number(low, 3)}, {_number(high, 3)}]"
            scores = " | ".join(_number(b.get(key), 4) for key in ("brier", "reference_brier", "skill"))
            rates = f"{_number(c['base_rate'], 3)} | {precision} | {_number(c['lift'], 3)}"
            lines.append(f"| {name} | {counts} | {rates} | {scores} |")
        controls, verdict, permutation = data["controls"], data["control_verdict"], data["permutation"]
        shuffled = [controls[f"shuffled_{seed}"]["lower_bound"] for seed in SHUFFLE_SEEDS]
        lines += [
            "",
            f"Controls: leaking memory (control gate) difference {controls['leaking']['estimate']:.2f}, lower bound "
            f"{controls['leaking']['lower_bound']:.2f} ({'detected' if verdict['leak_detected'] else 'NOT detected'}); "
            f"at the default gate {controls['leaking_default_gate']['estimate']:.2f}, lower bound "
            f"{controls['leaking_default_gate']['lower_bound']:.2f}. Shuffled outcomes: not significant in "
            f"{verdict['shuffled_not_significant']} of {verdict['shuffled_seeds']} seeds (lower bounds "
            f"{min(shuffled):.2f} to {max(shuffled):.2f}).",
            "",
            f"Exploratory (not registered): the honest memory at the control gate, pooled Sharpe "
            f"{permutation['honest_sharpe']:.2f}, against the 20 shuffled memories at the same gate "
            f"({min(permutation['shuffled_sharpes']):.2f} to {max(permutation['shuffled_sharpes']):.2f}; ungated "
            f"{permutation['ungated_sharpe']:.2f}): permutation p = {permutation['p_value']:.3f}.",
            "",
        ]
        if data["regimes"]:
            lines += [
                "| judged success by planted regime | " + " | ".join(SYNTHETIC.regime_names) + " |",
                "| --- |" + " ---: |" * len(SYNTHETIC.regime_names),
            ]
            for name, regimes in data["regimes"].items():
                cells = [f"{_number(cell['success_rate'], 3)} ({cell['episodes']})" for cell in regimes.values()]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def tables_v2(figures: Mapping[str, Any]) -> str:
    """Protocol v2's results as the markdown tables of docs/learning.md, section 5.7."""
    lines: list[str] = []
    header = (
        "| {what} | Sharpe | trades | draws: median [5 %, 95 %] | draws' trades (mean) | difference vs median draw "
        "| 95 % lower bound | minus mean of draws | permutation p |"
    )
    rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"

    def row(label: str, test: Mapping[str, Any]) -> str:
        cut, match = test["draw_percentiles"], test["matching"]
        return (
            f"| {label} | {test['treated_sharpe']:.2f} | {match['trades']} | {cut['50']:.2f} [{cut['5']:.2f}, "
            f"{cut['95']:.2f}] | {match['draw_trades_mean']:.0f} | {test['estimate']:.2f} | {test['lower_bound']:.2f} "
            f"| {test['mean_difference']:.2f} | {test['p_value']:.3f} |"
        )

    for dataset in ("shipped", "synthetic"):
        data = figures[dataset]
        primary, decision, verdict = data["gated"]["pooled"], data["decision"], data["control_verdict"]
        detectable = data["minimum_detectable"]
        lines += [f"### {dataset} (v2)", "", header.format(what="gated (walk-forward) against its draws"), rule]
        lines += [row(name, test) for name, test in data["gated"].items()]
        lines += [
            "",
            f"Pooled: the gate vetoed {primary['matching']['vetoes']} of {primary['matching']['entries']} base "
            f"entries out of sample; its {primary['draws']} draws vetoed as many per fold (trades "
            f"{primary['matching']['draw_trades_min']} to {primary['matching']['draw_trades_max']} against the gate's "
            f"{primary['matching']['trades']}).",
            f"Minimum detectable difference against the median draw (one-sided 5 %, power 80 %): "
            f"{detectable['bootstrap']['minimum_detectable_difference']:.2f} a year (bootstrap standard error "
            f"{detectable['bootstrap']['standard_error']:.3f}); the draws' 95th percentile lies "
            f"{detectable['permutation_gap']:.2f} above their median.",
            f"**Decision (v2): {'the' if decision['memory_helps'] else 'no evidence that the'} memory helps beyond "
            f"trading less** (lower bound {decision['lower_bound']:.3f}, permutation p {decision['p_value']:.3f}, "
            f"DSR {decision['dsr']:.3f}).",
            "",
            header.format(what="control (pooled) against its draws"),
            rule,
        ]
        lines += [row(name, test) for name, test in data["controls"].items()]
        shuffled = [data["controls"][f"shuffled_{seed}"]["lower_bound"] for seed in SHUFFLE_SEEDS]
        lines += [
            "",
            f"Controls (v2): leaking memory {'detected' if verdict['leak_detected'] else 'NOT detected'} (lower bound "
            f"{data['controls']['leaking']['lower_bound']:.2f}; at the default gate "
            f"{data['controls']['leaking_default_gate']['lower_bound']:.2f}); shuffled outcomes not significant in "
            f"{verdict['shuffled_not_significant']} of {verdict['shuffled_seeds']} seeds (lower bounds "
            f"{min(shuffled):.2f} to {max(shuffled):.2f}; permutation p < 0.05 in "
            f"{verdict['shuffled_permutation_below_5_percent']}): controls {'pass' if verdict['passed'] else 'FAIL'}.",
            "",
        ]
    return "\n".join(lines)


def trial_summary(registry: TrialRegistry) -> list[dict[str, Any]]:
    """Every trial without its daily returns: its keys, days, first and last day, Sharpe ratio (annualised), and
    the SHA-256 of its canonical record (what ``--full-trials`` dumps whole, 20 MB that the repository need not
    carry: the bench makes them again, bit for bit)."""
    return [
        {
            "id": str(trial.id),
            "family": trial.family,
            "variant": trial.variant,
            "strategy": trial.strategy,
            "parameters": dict(trial.parameters),
            "symbols": list(trial.symbols),
            "days": trial.days,
            "first_day_us": trial.timestamps[0],
            "last_day_us": trial.timestamps[-1],
            "sharpe": trial.sharpe_ratio(),
            "record_sha256": hashlib.sha256(trial.canonical_bytes()).hexdigest(),
        }
        for trial in registry.trials()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--distillation-seeds", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--protocol",
        choices=("v1", "v2"),
        default="v1",
        help="v1: the registered protocol (sections 1-2 of docs/learning.md); v2: the frequency-matched "
        "comparison registered after it (section 5), writing learning_v2.json, .txt and _trials.json",
    )
    parser.add_argument(
        "--full-trials",
        action="store_true",
        help="dump every trial's canonical record with its daily returns (about 20 MB) instead of the summary",
    )
    arguments = parser.parse_args()
    started = time.perf_counter()
    tasks = [(dataset, name, arguments.protocol) for dataset in ("shipped", "synthetic") for name in STRATEGIES]
    with ProcessPoolExecutor(arguments.workers) as pool:
        # The costliest first, so that the two workers finish together.
        order = sorted(tasks, key=lambda task: STRATEGIES.index(task[1]))
        results = list(pool.map(study, order))
        study_seconds = time.perf_counter() - started
        print(
            f"studies done in {study_seconds:.0f} s: "
            + ", ".join(f"{r['dataset']}/{r['strategy']} {r['seconds']:.0f} s" for r in results),
            flush=True,
        )
        built = Study(results)
        built.build()
        if arguments.protocol == "v2":
            built.build_v2()
            figures = analyse_v2(built, pool)
        else:
            figures = analyse(built, pool)
    if arguments.protocol == "v2":
        write_v2(arguments.out, figures, built, results, started)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import learning_distillation as distillation

    figures["distillation"] = {
        "accuracy": distillation.distillation_accuracy(seeds=arguments.distillation_seeds),
        "accuracy_overlapping": distillation.distillation_accuracy(
            seeds=arguments.distillation_seeds, spread_scale=2.0
        ),
        "distillation_cost": distillation.distillation_cost(),
        "retrieval_cost": distillation.retrieval_cost(),
    }
    figures["setup"] = {
        "command": "python bench/learning.py",
        "backtest": {"cash": CONFIG.cash, "commission": CONFIG.commission, "fractional": CONFIG.fractional},
        "train_bars": TRAIN_BARS,
        "test_bars": TEST_BARS,
        "synthetic": {
            "symbols": SYNTHETIC.symbols,
            "bars_per_symbol": SYNTHETIC.bars_per_symbol,
            "seed": SYNTHETIC.seed,
        },
        "episodes": {f"{r['dataset']}/{r['strategy']}": r["episodes"] for r in results},
        "grids": {variant: list(grid) for variant, grid in GRIDS.items()},
        "control_gate": CONTROL_GATE,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min": os.getloadavg(),
        "study_seconds": study_seconds,
        "wall_seconds": time.perf_counter() - started,
    }
    text = tables(figures)
    accuracy, overlapping = figures["distillation"]["accuracy"], figures["distillation"]["accuracy_overlapping"]
    distilling, retrieving = figures["distillation"]["distillation_cost"], figures["distillation"]["retrieval_cost"]
    text += (
        f"\nDistillation accuracy ({accuracy['seeds']} seeds): adjusted Rand index mean {accuracy['ari_mean']:.3f}, "
        f"share >= 0.8 {accuracy['ari_share_at_least_0_8']:.2f}; planted rate covered "
        f"{accuracy['coverage_planted_rate']:.2f}; null patterns flagged better "
        f"{accuracy['null_share_flagged_better']:.3f}. Overlapping regimes: ARI {overlapping['ari_mean']:.3f}, "
        f"coverage {overlapping['coverage_planted_rate']:.2f}, null flagged "
        f"{overlapping['null_share_flagged_better']:.3f}.\n"
        f"Cost: distillation of {distilling['episodes']:,} episodes {distilling['seconds']:.2f} s, peak "
        f"{distilling['peak_traced_mib']:.0f} MiB traced; retrieval over {retrieving['episodes']:,} episodes p50 "
        f"{retrieving['p50_ms']:.2f} ms, p99 {retrieving['p99_ms']:.2f} ms.\n"
        f"Trials registered: {figures['trials']['candidates']} candidates, {figures['trials']['controls']} controls. "
        f"Wall time {figures['setup']['wall_seconds']:.0f} s.\n"
    )
    print(text)
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "learning.json").write_text(json.dumps(figures, indent=2, sort_keys=True, default=float) + "\n")
    (arguments.out / "learning.txt").write_text(text)
    trials = built.registry.to_plain() if arguments.full_trials else trial_summary(built.registry)
    (arguments.out / "learning_trials.json").write_text(json.dumps(trials, indent=1) + "\n")
    print(f"wrote {arguments.out / 'learning.json'}, learning.txt and learning_trials.json")


def draw_table(built: Study, summary: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The random-veto draws of the registry, one row each (v1's trials are in learning_trials.json): its id,
    dataset, strategy, the series it is matched to, its draw, days, Sharpe ratio and the SHA-256 of its record
    (whose parameters also hold the veto shares per symbol and fold)."""
    datasets = {symbols: dataset for dataset, symbols in built.symbols.items()}
    columns = ("id", "dataset", "strategy", "matched_to", "draw", "days", "sharpe", "record_sha256")
    rows = [
        [
            row["id"],
            datasets[tuple(row["symbols"])],
            row["strategy"],
            row["parameters"]["matched_to"],
            row["parameters"]["draw"],
            row["days"],
            round(row["sharpe"], 6),
            row["record_sha256"],
        ]
        for row in summary
        if row["family"] == V2_FAMILY
    ]
    return {"family": V2_FAMILY, "columns": list(columns), "rows": rows}


def write_v2(
    out: Path, figures: dict[str, Any], built: Study, results: Sequence[Mapping[str, Any]], started: float
) -> None:
    """Protocol v2's outputs: learning_v2.json, learning_v2.txt and learning_v2_trials.json (every trial of the
    run, v1's families remade and the random-veto draws), with the check that v1's trials were remade bit for bit."""
    summary = trial_summary(built.registry)
    earlier_path = out / "learning_trials.json"
    earlier = (
        {row["id"]: row["record_sha256"] for row in json.loads(earlier_path.read_text())}
        if earlier_path.exists()
        else {}
    )
    remade = [row for row in summary if row["id"] in earlier]
    figures["v1_trials_remade"] = {
        "v1_trials": len(earlier),
        "found": len(remade),
        "identical": sum(row["record_sha256"] == earlier[row["id"]] for row in remade),
    }
    figures["setup"] = {
        "command": "python bench/learning.py --protocol v2",
        "draws": {"gated": GATE_DRAWS, "controls": CONTROL_DRAWS},
        "seed": SEED,
        "control_gate": CONTROL_GATE,
        "episodes": {f"{r['dataset']}/{r['strategy']}": r["episodes"] for r in results},
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min": os.getloadavg(),
        "wall_seconds": time.perf_counter() - started,
    }
    check = figures["v1_trials_remade"]
    text = tables_v2(figures) + (
        f"\nTrials registered: {figures['trials']['candidates']} candidates, {figures['trials']['controls']} "
        f"controls (v1's families; {check['identical']} of {check['v1_trials']} v1 records remade bit for bit), "
        f"{figures['trials']['random_veto_draws']} random-veto draws (family {V2_FAMILY}). Wall time "
        f"{figures['setup']['wall_seconds']:.0f} s.\n"
    )
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_v2.json").write_text(json.dumps(figures, indent=2, sort_keys=True, default=float) + "\n")
    (out / "learning_v2.txt").write_text(text)
    (out / "learning_v2_trials.json").write_text(json.dumps(draw_table(built, summary)) + "\n")
    print(f"wrote {out / 'learning_v2.json'}, learning_v2.txt and learning_v2_trials.json")


if __name__ == "__main__":
    main()
