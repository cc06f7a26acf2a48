"""Is distillation accurate? Planted regimes, interval coverage, false discoveries on a null market, and cost.

Run: ``.venv/bin/python bench/learning_distillation.py [--seeds 100] [--episodes 600]``. Prints a table and
writes every figure to ``bench/results/learning_distillation.json``.

The synthetic market (per seed): a long-only base strategy's episodes, each entered in one of three regimes,
regions of the four state features (`neuraltrade.learning.regime.STATE_FEATURES`: trend, volatility,
momentum, range position) drawn as Gaussian blobs around

- "up, calm"        (trend +1.5, volatility −0.3, momentum +1.0, range position 0.8): wins 65% (planted),
- "down, volatile"  (trend −1.5, volatility +0.3, momentum −1.0, range position 0.2): wins 45%,
- "flat, volatile"  (trend  0.0, volatility +0.6, momentum  0.0, range position 0.5): wins 45%,

with spreads (0.5, 0.1, 0.5, 0.1), each regime equally likely; outcomes known uniformly over the two years
before ``as_of``. The null market is the same with every regime winning 50%. The regimes are well
separated (about five spreads apart, an easy case); every figure is repeated with the spreads doubled, where
the regimes overlap, to show how the figures degrade.

Figures (targets from issue 11):

- adjusted Rand index between the patterns (each episode labelled by the pattern holding it, −1 if pruned)
  and the true regimes: mean, and the share of seeds >= 0.8 (target: >= 0.8);
- coverage: the share of seeds whose planted pattern (the one holding most planted-regime episodes) has a
  95% interval covering the planted 65% (target >= 93%), beside the coverage of its own estimand (the
  decay-weighted mean true rate of its members) and of every pattern's estimand;
- null market: the share of patterns flagged better than base after Benjamini-Hochberg (target <= 5%), and
  the share of seeds with any such flag;
- cost: time and peak traced memory (tracemalloc) to distill 10,000 episodes; retrieval p50/p99 over a
  memory of 10,000 episodes of 512-d vectors (the default embedder's dimension).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from neuraltrade.learning.patterns import DistillationConfig, Outcome, Pattern, distill
from neuraltrade.learning.retrieval import EpisodeMemory, RetrievalConfig, retrieve

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_DAYS = 730
CENTRES = np.array([[1.5, -0.3, 1.0, 0.8], [-1.5, 0.3, -1.0, 0.2], [0.0, 0.6, 0.0, 0.5]])
SPREADS = np.array([0.5, 0.1, 0.5, 0.1])
PLANTED_RATES = np.array([0.65, 0.45, 0.45])
NULL_RATES = np.array([0.5, 0.5, 0.5])
PLANTED_REGIME = 0
STRATEGY = "synthetic"
RESULTS = Path(__file__).resolve().parent / "results" / "learning_distillation.json"


def synthetic_outcomes(
    rng: np.random.Generator, count: int, rates: np.ndarray, spread_scale: float = 1.0
) -> tuple[list[Outcome], np.ndarray, np.ndarray]:
    """`count` long outcomes over the planted regimes; also each one's true regime and true win probability."""
    regimes = rng.integers(0, len(CENTRES), count)
    features = CENTRES[regimes] + rng.standard_normal((count, CENTRES.shape[1])) * SPREADS * spread_scale
    probabilities = rates[regimes]
    wins = rng.random(count) < probabilities
    ages = rng.uniform(1.0, SPAN_DAYS, count)
    outcomes = [
        Outcome(
            episode_id=uuid.UUID(bytes=rng.bytes(16), version=4),
            strategy=STRATEGY,
            side=1,
            features=features[index],
            success=bool(wins[index]),
            known_at=AS_OF - timedelta(days=float(ages[index])),
        )
        for index in range(count)
    ]
    return outcomes, regimes, probabilities


def _weights(outcomes: list[Outcome], config: DistillationConfig) -> np.ndarray:
    ages = np.array([(AS_OF - outcome.known_at).total_seconds() / 86_400 for outcome in outcomes])
    return 0.5 ** (ages / config.half_life_days)


def _labels(outcomes: list[Outcome], patterns: tuple[Pattern, ...]) -> np.ndarray:
    where = {member: index for index, pattern in enumerate(patterns) for member in pattern.members}
    return np.array([where.get(outcome.episode_id, -1) for outcome in outcomes])


def distillation_accuracy(
    seeds: int = 100,
    episodes: int = 600,
    config: DistillationConfig | None = None,
    first_seed: int = 0,
    spread_scale: float = 1.0,
) -> dict[str, Any]:
    """Adjusted Rand index, interval coverage and null false discoveries over `seeds` synthetic markets."""
    config = config or DistillationConfig()
    aris, covers_planted, covers_estimand, planted_flagged, pattern_counts = [], [], [], [], []
    all_covered = all_patterns = null_flagged = null_patterns = null_seeds_flagged = 0
    for seed in range(first_seed, first_seed + seeds):
        rng = np.random.default_rng(seed)
        outcomes, regimes, probabilities = synthetic_outcomes(rng, episodes, PLANTED_RATES, spread_scale)
        _, patterns = distill(outcomes, strategy=STRATEGY, as_of=AS_OF, config=config)
        labels = _labels(outcomes, patterns)
        aris.append(float(adjusted_rand_score(regimes, labels)))
        pattern_counts.append(len(patterns))
        weights = _weights(outcomes, config)
        estimands = []
        for index, pattern in enumerate(patterns):
            held = labels == index
            estimand = float((weights[held] * probabilities[held]).sum() / weights[held].sum())
            estimands.append(estimand)
            all_covered += pattern.interval_low <= estimand <= pattern.interval_high
            all_patterns += 1
        planted_counts = [
            int(((labels == index) & (regimes == PLANTED_REGIME)).sum()) for index in range(len(patterns))
        ]
        if patterns and max(planted_counts) > 0:
            best = int(np.argmax(planted_counts))
            pattern = patterns[best]
            covers_planted.append(pattern.interval_low <= PLANTED_RATES[PLANTED_REGIME] <= pattern.interval_high)
            covers_estimand.append(pattern.interval_low <= estimands[best] <= pattern.interval_high)
            planted_flagged.append(pattern.better_than_base)
        else:
            covers_planted.append(False)
            covers_estimand.append(False)
            planted_flagged.append(False)

        null_rng = np.random.default_rng(1_000_000 + seed)
        null_outcomes, _, _ = synthetic_outcomes(null_rng, episodes, NULL_RATES, spread_scale)
        _, null = distill(null_outcomes, strategy=STRATEGY, as_of=AS_OF, config=config)
        flagged = sum(pattern.better_than_base for pattern in null)
        null_flagged += flagged
        null_patterns += len(null)
        null_seeds_flagged += flagged > 0
    ari = np.asarray(aris)
    return {
        "seeds": seeds,
        "episodes_per_seed": episodes,
        "spread_scale": spread_scale,
        "config": config.__dict__,
        "config_digest": config.digest,
        "ari_mean": float(ari.mean()),
        "ari_median": float(np.median(ari)),
        "ari_share_at_least_0_8": float((ari >= 0.8).mean()),
        "patterns_per_seed_mean": float(np.mean(pattern_counts)),
        "coverage_planted_rate": float(np.mean(covers_planted)),
        "coverage_planted_pattern_estimand": float(np.mean(covers_estimand)),
        "coverage_all_patterns_estimand": all_covered / all_patterns if all_patterns else float("nan"),
        "planted_pattern_flagged_better_share": float(np.mean(planted_flagged)),
        "null_patterns": null_patterns,
        "null_share_flagged_better": null_flagged / null_patterns if null_patterns else 0.0,
        "null_seeds_with_any_flag": null_seeds_flagged / seeds,
    }


def distillation_cost(count: int = 10_000, seed: int = 7) -> dict[str, float]:
    """Wall time and peak traced memory of one distillation of `count` planted-market episodes."""
    outcomes, _, _ = synthetic_outcomes(np.random.default_rng(seed), count, PLANTED_RATES)
    config = DistillationConfig()
    distill(outcomes[:500], strategy=STRATEGY, as_of=AS_OF, config=config)  # warm imports and caches
    started = time.perf_counter()
    _, patterns = distill(outcomes, strategy=STRATEGY, as_of=AS_OF, config=config)
    seconds = time.perf_counter() - started
    tracemalloc.start()
    distill(outcomes, strategy=STRATEGY, as_of=AS_OF, config=config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"episodes": count, "seconds": seconds, "peak_traced_mib": peak / 2**20, "patterns": len(patterns)}


def retrieval_cost(count: int = 10_000, dimension: int = 512, queries: int = 1_000, seed: int = 11) -> dict[str, float]:
    """p50 and p99 latency of `retrieve` (default config) over a memory of `count` episodes."""
    rng = np.random.default_rng(seed)
    start = AS_OF - timedelta(days=SPAN_DAYS)
    known = [start + timedelta(days=float(day)) for day in rng.uniform(0, SPAN_DAYS, count)]
    memory = EpisodeMemory.build(
        ids=[uuid.UUID(bytes=rng.bytes(16), version=4) for _ in range(count)],
        vectors=rng.standard_normal((count, dimension)).astype(np.float32),
        known_at=known,
        success=rng.random(count) < 0.5,
        score=rng.standard_normal(count),
        side=np.where(rng.random(count) < 0.5, 1, -1),
        reliability=rng.random(count),
    )
    config = RetrievalConfig()
    probes = rng.standard_normal((queries, dimension)).astype(np.float32)
    moments = [start + timedelta(days=float(day)) for day in rng.uniform(30, SPAN_DAYS, queries)]
    samples = []
    # One BLAS thread: a single query's matrix-vector product gains nothing from more, and on a shared
    # machine extra threads only add waiting to the tail.
    with threadpool_limits(1):
        for index in range(20):
            retrieve(memory, probes[index], decision_time=moments[index], side=1, config=config)
        for index in range(queries):
            began = time.perf_counter_ns()
            retrieve(memory, probes[index], decision_time=moments[index], side=1, config=config)
            samples.append(time.perf_counter_ns() - began)
    micros = np.asarray(samples, dtype=np.float64) / 1_000
    return {
        "episodes": count,
        "dimension": dimension,
        "queries": queries,
        "p50_ms": float(np.percentile(micros, 50)) / 1_000,
        "p99_ms": float(np.percentile(micros, 99)) / 1_000,
    }


def _table(figures: dict[str, Any]) -> str:
    plain, hard = figures["accuracy"], figures["accuracy_overlapping"]
    cost, lookup = figures["distillation_cost"], figures["retrieval_cost"]
    accuracy_rows = [
        ("adjusted Rand index, mean", "ari_mean", "{:.3f}", ">= 0.8"),
        ("adjusted Rand index, share of seeds >= 0.8", "ari_share_at_least_0_8", "{:.1%}", ""),
        ("patterns per seed, mean", "patterns_per_seed_mean", "{:.2f}", "3 regimes"),
        ("95% interval covers planted 65%", "coverage_planted_rate", "{:.1%}", ">= 93%"),
        ("... covers its members' true rate", "coverage_planted_pattern_estimand", "{:.1%}", ""),
        ("every pattern covers its members' rate", "coverage_all_patterns_estimand", "{:.1%}", ""),
        ("planted pattern flagged better (power)", "planted_pattern_flagged_better_share", "{:.1%}", ""),
        ("null: patterns flagged better after BH", "null_share_flagged_better", "{:.1%}", "<= 5%"),
        ("null: seeds with any flag", "null_seeds_with_any_flag", "{:.1%}", ""),
    ]
    rows = [
        (name, form.format(plain[key]), form.format(hard[key]), target) for name, key, form, target in accuracy_rows
    ]
    rows += [
        (f"distill {cost['episodes']:,} episodes, seconds", f"{cost['seconds']:.2f}", "", ""),
        (f"distill {cost['episodes']:,} episodes, peak traced MiB", f"{cost['peak_traced_mib']:.1f}", "", ""),
        (f"retrieve over {lookup['episodes']:,} x {lookup['dimension']}-d, p50 ms", f"{lookup['p50_ms']:.3f}", "", ""),
        (f"retrieve over {lookup['episodes']:,} x {lookup['dimension']}-d, p99 ms", f"{lookup['p99_ms']:.3f}", "", ""),
    ]
    width = max(len(row[0]) for row in rows)
    header = f"| {'figure':<{width}} | separated | overlapping (spread x2) | target    |"
    rule = f"|{'-' * (width + 2)}|-----------|-------------------------|-----------|"
    lines = [header, rule]
    lines += [f"| {name:<{width}} | {one:>9} | {two:>23} | {target:<9} |" for name, one, two, target in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--out", type=Path, default=RESULTS)
    arguments = parser.parse_args()
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "accuracy": distillation_accuracy(seeds=arguments.seeds, episodes=arguments.episodes),
        "accuracy_overlapping": distillation_accuracy(
            seeds=arguments.seeds, episodes=arguments.episodes, spread_scale=2.0
        ),
        "distillation_cost": distillation_cost(),
        "retrieval_cost": retrieval_cost(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min": os.getloadavg(),
    }
    figures["wall_seconds"] = time.perf_counter() - started
    print(_table(figures))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
