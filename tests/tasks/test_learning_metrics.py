"""The learning loop's Prometheus gauges, read back from the textfile the metrics export writes.

A real database: NVDA bars, two nights of a base strategy and its gated version with the learning flow after
each (`tests.cli.test_learning.learnt_database`). Each gauge is checked against the stored records, counted here
another way.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.backtest_runs import list_runs, load_run
from models.engine import dispose_engines, session_scope
from models.learning_store import load_distillations, load_episodes, load_verdicts
from neuraltrade.canonical import stable_id
from tasks.metrics import export_metrics
from tests.cli.test_learning import learnt_database

#: Fewer bars than the command-line tests: the gauges need runs and records, not statistical power.
BARS = 900


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the textfile by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any], dict[Any, float]]]:
    folder = tmp_path_factory.mktemp("learning-metrics")
    url, runs = learnt_database(folder, bars=BARS)
    path = folder / "metrics.prom"
    with session_scope(url) as session:
        export_metrics(session, path)
    yield url, runs, samples(path)
    dispose_engines()


def test_verdict_coverage_is_the_share_of_closed_trades_whose_episode_was_judged(exported: Any) -> None:
    url, _, values = exported
    closed = judged = 0
    with session_scope(url) as session:
        for overview in list_runs(session, limit=100):
            trades = load_run(session, overview.id).trades
            episodes = {episode.trade_id: episode.id for episode in load_episodes(session, run_id=overview.id)}
            verdicts = {verdict.episode_id for verdict in load_verdicts(session, episode_ids=list(episodes.values()))}
            closed += len(trades)
            judged += sum(
                episodes.get(stable_id("backtest_trade", overview.id, sequence)) in verdicts
                for sequence in range(len(trades))
            )
    assert closed > 20 and 0 < judged <= closed
    assert values[("neuraltrade_learning_verdict_coverage", ())] == pytest.approx(judged / closed)


def test_retrieval_hits_and_vetoes_sum_the_newest_gated_runs_gate_details(exported: Any) -> None:
    url, runs, values = exported
    with session_scope(url) as session:
        gated = [overview for overview in list_runs(session, limit=100) if overview.strategy.startswith("gated:")]
    # Two nights: the second gated run is the newest; the first (empty memory) never retrieved anything.
    assert len(gated) == 2
    newest = max(gated, key=lambda overview: overview.created_at)
    assert str(newest.id) == runs["gated:sma_cross"]["run_id"]
    gate = newest.details["gate"]
    assert gate["retrievals"] > 0
    assert values[("neuraltrade_learning_retrievals_with_hits", ())] == pytest.approx(
        gate["retrievals_with_hits"] / gate["retrievals"]
    )
    assert values[("neuraltrade_learning_vetoes", ())] == gate["vetoes"]


def test_pattern_count_and_median_support_are_those_of_each_strategys_newest_distillation(exported: Any) -> None:
    url, runs, values = exported
    strategy = runs["sma_cross"]["strategy_id"]
    with session_scope(url) as session:
        distillations = load_distillations(session, strategy)
    assert distillations
    newest = max(distillations, key=lambda item: (item[0].as_of, len(item[0].episode_ids), item[0].id.int))
    patterns = newest[1]
    labels = (("strategy", strategy),)
    assert values[("neuraltrade_learning_patterns", labels)] == len(patterns)
    support = values[("neuraltrade_learning_pattern_support_median", labels)]
    if patterns:
        assert support == pytest.approx(statistics.median(pattern.decayed_trials for pattern in patterns))
    else:
        assert math.isnan(support)


def test_a_database_that_learnt_nothing_exports_nan_and_zero(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "empty.prom"
    with session_scope(database_url) as session:
        export_metrics(session, path)
    values = samples(path)
    assert math.isnan(values[("neuraltrade_learning_verdict_coverage", ())])
    assert math.isnan(values[("neuraltrade_learning_retrievals_with_hits", ())])
    assert values[("neuraltrade_learning_vetoes", ())] == 0
    assert not [key for key in values if key[0] == "neuraltrade_learning_patterns"]
