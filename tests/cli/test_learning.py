"""`neuraltrade patterns`, `reflections`, `counterfactual` and `learning-report`, over a database that learnt.

One database for the module: real NVDA bars, two nights of the base strategy and its gated version, each
followed by the learning flow (`distill_reflexions`), run in process. The commands read it as a user would.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from models import repositories
from models.backtest_runs import list_runs, load_run
from models.engine import dispose_engines, session_scope
from models.learning_store import load_counterfactuals, load_critiques, load_episodes, load_verdicts
from neuraltrade.learning.counterfactual import summarise_counterfactuals
from neuraltrade.market.ingest import read_bars
from neuraltrade_cli import app
from neuraltrade_cli.pipeline import print_learning

runner = CliRunner()
SAMPLE = Path(__file__).parents[2] / "neuraltrade" / "sample_data" / "NVDA.csv"
BARS = 1_200
STRATEGIES = ["sma_cross", "gated:sma_cross"]


def learnt_database(folder: Path, bars: int = BARS) -> tuple[str, dict[str, Any]]:
    """A migrated SQLite database with `bars` NVDA bars and two nights of backtests and learning; return its
    URL and the second night's runs by strategy (with that night's learning summary under "learning")."""
    from flows.distill_reflexions import distill_reflexions
    from flows.run_backtests import run_backtests
    from models.migrations import upgrade_database

    url = f"sqlite:///{folder}/learnt.db"
    upgrade_database(url)
    frame = read_bars(SAMPLE).frame.drop(columns=["line"], errors="ignore").iloc[:bars]
    with session_scope(url, write=True) as session:
        repositories.upsert_bars(session, frame, source="test", now=datetime(2026, 1, 1, tzinfo=UTC))
    runs: dict[str, Any] = {}
    for _ in range(2):
        backtests = run_backtests.fn(database_url=url, strategies=STRATEGIES, symbols=["NVDA"])
        learning = distill_reflexions.fn(database_url=url)
        runs = {run["strategy"]: run for run in backtests["runs"]}
        runs.setdefault("learning", learning)
    return url, runs


@pytest.fixture(scope="module")
def learnt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    yield learnt_database(tmp_path_factory.mktemp("learnt"))
    dispose_engines()


def invoke(*arguments: str) -> Any:
    return runner.invoke(app, list(arguments))


def one_error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_patterns_json_is_the_latest_distillation_of_each_strategy_by_rank(learnt: tuple[str, Any]) -> None:
    url, runs = learnt
    result = invoke("patterns", "--db", url, "--json")
    assert result.exit_code == 0, result.output
    listing = {entry["strategy"]: entry for entry in json.loads(result.stdout)["strategies"]}
    # Each strategy id that has episodes is distilled: the gated strategy's own trades too.
    assert set(listing) == {runs["sma_cross"]["strategy_id"], runs["gated:sma_cross"]["strategy_id"]}
    entry = listing[runs["sma_cross"]["strategy_id"]]
    assert entry["episodes"] > 10 and 0.0 <= entry["base_rate"] <= 1.0
    ranks = [row["rank"] for row in entry["patterns"]]
    assert ranks == sorted(ranks) and entry["patterns"]
    for row in entry["patterns"]:
        assert 0 <= row["wins"] <= row["trials"] and row["decayed_wins"] <= row["decayed_trials"] + 1e-9
        assert row["interval_low"] <= row["probability"] <= row["interval_high"]
        assert row["side"] in ("long", "short") and not (row["better_than_base"] and row["worse_than_base"])
    # The listing is the newest distillation: no other of the strategy has a later as_of.
    from models.learning_store import load_distillations

    with session_scope(url) as session:
        distillations = load_distillations(session, entry["strategy"])
    assert entry["as_of"] == max(distillation.as_of for distillation, _ in distillations).isoformat()


def test_patterns_prints_a_table_per_strategy_and_filters_by_strategy_id(learnt: tuple[str, Any]) -> None:
    url, runs = learnt
    strategy_id = runs["sma_cross"]["strategy_id"]
    result = invoke("patterns", "--db", url, "--strategy", strategy_id)
    assert result.exit_code == 0, result.output
    assert strategy_id in result.output and "95% interval" in result.output and "wins/trials" in result.output
    unknown = one_error_line(invoke("patterns", "--db", url, "--strategy", "no_such-123"))
    assert "'no_such-123'" in unknown


def test_reflections_json_holds_every_episode_of_the_run_with_its_verdict_and_critique(
    learnt: tuple[str, Any],
) -> None:
    url, runs = learnt
    run_id = runs["sma_cross"]["run_id"]
    result = invoke("reflections", run_id, "--db", url, "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    with session_scope(url) as session:
        episodes = load_episodes(session, run_id=uuid.UUID(run_id))
        verdicts = {verdict.id: verdict for verdict in load_verdicts(session)}
        critiques = {critique.episode_id: critique for critique in load_critiques(session, run_id=uuid.UUID(run_id))}
    assert listing["run_id"] == run_id and listing["trades"] == runs["sma_cross"]["trades"]
    assert {row["episode_id"] for row in listing["episodes"]} == {str(episode.id) for episode in episodes}
    assert len(episodes) > 10
    for row in listing["episodes"]:
        critique = critiques[uuid.UUID(row["episode_id"])]
        verdict = verdicts[critique.verdict_id]
        assert row["verdict"]["success"] == verdict.success and row["verdict"]["barrier"] == verdict.barrier
        assert row["lessons"] == list(critique.lessons) and row["text"] == critique.text
    times = [row["decision_time"] for row in listing["episodes"]]
    assert times == sorted(times)


def test_reflections_prints_verdicts_lessons_and_critiques(learnt: tuple[str, Any]) -> None:
    url, runs = learnt
    result = invoke("reflections", runs["sma_cross"]["run_id"], "--db", url)
    assert result.exit_code == 0, result.output
    assert "success (" in result.output or "failure (" in result.output
    assert "sma_cross on NVDA" in result.output and "lessons" in result.output


@pytest.mark.parametrize("command", ["reflections", "counterfactual"])
def test_an_unknown_or_malformed_run_id_is_one_line_naming_it(learnt: tuple[str, Any], command: str) -> None:
    url, _ = learnt
    missing = str(uuid.UUID(int=7))
    assert f"'{missing}'" in one_error_line(invoke(command, missing, "--db", url))
    assert "'not-a-run'" in one_error_line(invoke(command, "not-a-run", "--db", url))


def test_counterfactual_json_is_the_summary_of_the_runs_stored_alternatives(learnt: tuple[str, Any]) -> None:
    url, runs = learnt
    run_id = runs["sma_cross"]["run_id"]
    result = invoke("counterfactual", run_id, "--db", url, "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    with session_scope(url) as session:
        stored = load_counterfactuals(session, uuid.UUID(run_id))
    assert listing["alternatives"] == json.loads(json.dumps(summarise_counterfactuals(stored)))
    alternatives = {row["alternative"] for row in listing["alternatives"]}
    assert {"no_trade", "opposite_side", "half_size", "double_size", "exit_earlier", "exit_later"} <= alternatives
    # Doing nothing instead loses exactly what each trade made: its regret is minus the trades' total P&L.
    [no_trade] = [row for row in listing["alternatives"] if row["alternative"] == "no_trade"]
    with session_scope(url) as session:
        trades = load_run(session, uuid.UUID(run_id)).trades
    assert no_trade["trades"] == len(trades)
    assert no_trade["total_regret"] == pytest.approx(-sum(trade.pnl for trade in trades), rel=1e-9, abs=1e-6)


def test_counterfactual_prints_one_line_per_alternative(learnt: tuple[str, Any]) -> None:
    url, runs = learnt
    run_id = runs["sma_cross"]["run_id"]
    result = invoke("counterfactual", run_id, "--db", url)
    assert result.exit_code == 0, result.output
    rows = json.loads(invoke("counterfactual", run_id, "--db", url, "--json").stdout)["alternatives"]
    for row in rows:
        assert len(re.findall(rf"^\W*{row['alternative']}\b", result.output, re.M)) == 1


def test_the_learning_report_compares_the_gated_run_with_its_base_and_plots_them(
    learnt: tuple[str, Any], tmp_path: Path
) -> None:
    url, runs = learnt
    page = tmp_path / "learning.html"
    result = invoke("learning-report", "--db", url, "--output", str(page), "--reps", "200")
    assert result.exit_code == 0, result.output
    assert "1 comparisons" in result.output
    html = unescape(page.read_text())
    assert "sma_cross on NVDA" in html
    assert runs["sma_cross"]["run_id"] in html and runs["gated:sma_cross"]["run_id"] in html
    with session_scope(url) as session:
        stored = len(list_runs(session, limit=100))
    assert f"every stored backtest run ({stored}) and every trial of the registry (0)" in html
    assert html.count("<polyline") == 2  # the ungated and the gated equity
    assert "Hansen's SPA over 1 gated variant(s)" in html
    # The gate only takes entries away: every ungated entry it kept is a gated trade, the rest were vetoed.
    matrix = re.search(r'<table class="confusion">(.*?)</table>', html, re.S)
    assert matrix is not None
    winners_kept, winners_vetoed, losers_kept, losers_vetoed = map(int, re.findall(r"<td>(\d+)</td>", matrix[1]))
    base_trades, gated_trades = runs["sma_cross"]["trades"], runs["gated:sma_cross"]["trades"]
    assert runs["learning"]["pending"] == 0 and gated_trades < base_trades
    assert winners_kept + losers_kept == gated_trades
    assert winners_vetoed + losers_vetoed == base_trades - gated_trades
    assert html.count('class="interval"') >= 1  # the forest plot of the latest patterns
    assert "<script" not in html


def test_the_run_report_of_a_simulated_run_has_a_regret_panel(learnt: tuple[str, Any], tmp_path: Path) -> None:
    url, runs = learnt
    page = tmp_path / "run.html"
    result = invoke("report", runs["sma_cross"]["run_id"], "--db", url, "--output", str(page))
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert '<section class="table regret">' in html and 'data-alternative="no_trade"' in html


def test_the_commands_read_a_missing_database_as_one_line(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/missing.db"
    line = one_error_line(invoke("patterns", "--db", missing))
    assert "missing.db" in line
    assert not (tmp_path / "missing.db").exists()


def test_the_nightly_prints_what_the_learning_stage_did(learnt: tuple[str, Any], capsys: pytest.CaptureFixture) -> None:
    _, runs = learnt
    summary = runs["learning"]
    print_learning(summary)
    printed = " ".join(capsys.readouterr().out.split())
    patterns = sum(item["patterns"] for item in summary["strategies"])
    assert f"{summary['episodes']:,} episodes judged from {summary['runs_reflected']:,} runs" in printed
    assert f"{patterns:,} patterns" in printed and f"{summary['counterfactuals']:,} counterfactuals" in printed


def test_the_learnt_database_verifies_with_every_pattern_recounted_from_its_verdicts(
    learnt: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    import shutil

    from flows.embed_observations import embed_observations
    from tasks.provenance import seal_log, verify_with

    # The bars were stored without their observations (the market states signals link to): embed a copy.
    shutil.copy(learnt[0].removeprefix("sqlite:///"), tmp_path / "copy.db")
    url = f"sqlite:///{tmp_path}/copy.db"
    embed_observations.fn(database_url=url)
    seal_log.fn(url, str(tmp_path))

    report = verify_with(url, directory=str(tmp_path))

    assert report.ok, report.summary()
    assert report.patterns > 0 and report.retrievals > 0 and report.links > 0
