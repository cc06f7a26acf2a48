"""`neuraltrade backtest` (a JSON contract checked against backtesting.py's own figures) and `neuraltrade report`."""

from __future__ import annotations

import inspect
import json
import math
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from models.engine import display_url
from neuraltrade.backtest.config import DEFAULT_COMMISSION
from neuraltrade.strategies.registry import STRATEGY_NAMES
from neuraltrade_cli import app
from neuraltrade_cli.trading import CONTRACT_KEYS, print_backtests
from tests.browser import render_dom, require_chromium

runner = CliRunner()
GOLDEN = Path(__file__).parent.parent / "domain" / "data" / "statistics_golden.json"
SAMPLE = Path(__file__).parent.parent.parent / "neuraltrade" / "sample_data" / "NVDA.csv"
TRADE_KEYS = {
    "symbol",
    "entry_bar",
    "exit_bar",
    "entry_time",
    "exit_time",
    "size",
    "entry_price",
    "exit_price",
    "pnl",
    "return_pct",
    "commission",
    "exit_reason",
    # Each trade's lineage: the decision that opened it, its entry and exit orders and fills.
    "signal_id",
    "entry_order_id",
    "exit_order_id",
    "entry_fill_id",
    "exit_fill_id",
}
IDENTITY_KEYS = {
    "strategy",
    "strategy_id",
    "parameters",
    "symbols",
    "bars",
    "cash",
    "commission",
    "run_id",
    "config_digest",
    "data_digest",
    "engine_version",
    "stored_in",
}
STORED = re.compile(r"stored as run ([0-9a-f-]{36}) in (\S+);")


@pytest.fixture(scope="module", autouse=True)
def default_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Where a backtest without --db stores its run: a file of this module's, never the clone's data/."""
    from models.engine import dispose_engines

    url = f"sqlite:///{tmp_path_factory.mktemp('default-db')}/neuraltrade.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURALTRADE_DB", url)
        yield url
    dispose_engines()


def _golden_cases() -> list[dict]:
    cases = json.loads(GOLDEN.read_text())["cases"]
    return [case for case in cases if case["name"].startswith("nvda_") and case["parameters"]]


@pytest.fixture(scope="module")
def nvda_1000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 1,000 bars of NVDA, the data backtesting.py's golden figures were computed on."""
    target = tmp_path_factory.mktemp("bars") / "NVDA.csv"
    target.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:1001]))
    return target


@pytest.mark.parametrize("case", _golden_cases(), ids=lambda case: f"{case['name']}-{case['finalize_trades']}")
def test_backtest_json_equals_backtesting_py_on_the_same_bars(nvda_1000: Path, case: dict) -> None:
    arguments = ["backtest", "--data", str(nvda_1000), "--strategy", "sma_cross", "--cash", "10000"]
    arguments += ["--commission", "0.002", "--json"]
    arguments += [f"--param=fast={case['parameters']['fast']}", f"--param=slow={case['parameters']['slow']}"]
    if case["finalize_trades"]:
        arguments.append("--close-at-end")

    result = runner.invoke(app, arguments)

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document)[: len(CONTRACT_KEYS)] == list(CONTRACT_KEYS)
    assert set(document) >= IDENTITY_KEYS and all(set(trade) == TRADE_KEYS for trade in document["closed_trades"])
    expected = case["expected"]
    for key in CONTRACT_KEYS:
        if expected[key] is None:
            assert document[key] is None, key
        else:
            assert document[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key
    assert len(document["closed_trades"]) == len(case["trades"]) == document["trades"]
    for ours, theirs in zip(document["closed_trades"], case["trades"], strict=True):
        for key in ("entry_bar", "exit_bar", "entry_time", "exit_time", "size"):
            assert ours[key] == theirs[key], key
        assert ours["entry_price"] == pytest.approx(theirs["entry_price"], rel=1e-12)
        assert ours["exit_price"] == pytest.approx(theirs["exit_price"], rel=1e-12)
    assert round(document["equity_final"], 2) == round(expected["equity_final"], 2)


def test_backtest_prints_a_readable_table_without_json(nvda_1000: Path) -> None:
    result = runner.invoke(app, ["backtest", "--data", str(nvda_1000), "--param", "fast=5", "--param", "slow=40"])

    assert result.exit_code == 0, result.output
    assert "equity_final" in result.stdout and "closed trades" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--strategy", "sma_crossing"], f"no strategy 'sma_crossing'; the strategies are {', '.join(STRATEGY_NAMES)}"),
        (["--param", "fast"], "--param 'fast' is not name=value"),
        (["--param", "speed=3"], "speed"),
        (["--param", "fast=30", "--param", "slow=10"], "fast"),
        (["--commission", "0.5"], "commission"),
    ],
)
def test_bad_input_is_one_line_naming_the_value(nvda_1000: Path, arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["backtest", "--data", str(nvda_1000), *arguments])

    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def _contents(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, so that a test sees any change, not only a change of counts."""
    from sqlalchemy import select

    from models.base import Base
    from models.engine import session_scope

    with session_scope(database_url) as session:
        return {
            table.name: sorted(map(tuple, session.execute(select(table)).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }


def test_a_backtest_stores_its_run_and_report_draws_the_id_it_printed(
    nvda_1000: Path, database_url: str, tmp_path: Path
) -> None:
    from models import run_summaries
    from models.backtest_runs import load_run
    from models.engine import session_scope

    arguments = ["backtest", "--data", str(nvda_1000), "--param", "fast=5", "--param", "slow=40", "--db", database_url]
    result = runner.invoke(app, arguments)

    assert result.exit_code == 0, result.output
    found = STORED.search(result.stdout)
    assert found is not None, result.stdout
    run_id, where = found.groups()
    shown = display_url(database_url)  # a password is never printed
    assert where == shown and f"neuraltrade report {run_id} --db {shown}" in result.stdout
    with session_scope(database_url) as session:
        run = load_run(session, uuid.UUID(run_id))
        counts = run_summaries.table_counts(session)
    assert run.strategy == "sma_cross" and run.bars == 1000 and len(run.trades) == run.statistics["trades"] > 0
    # Stored as the nightly stores its runs: with its signals and its orders and their events.
    assert counts["signals"] > 0 and counts["orders"] >= counts["signals"] and counts["order_events"] > 0
    page = tmp_path / "run.html"
    report = runner.invoke(app, ["report", run_id, "--db", database_url, "--output", str(page)])
    assert report.exit_code == 0, report.output
    html = page.read_text()
    assert run_id in html and "Backtest report: sma_cross on NVDA" in html
    assert "<dt>Parameters</dt><dd>fast=5, slow=40, average=rolling</dd>" in html


def test_backtest_json_is_one_object_naming_the_stored_run_and_the_commission(nvda_1000: Path, tmp_path: Path) -> None:
    from models.backtest_runs import load_run
    from models.engine import session_scope

    fresh = f"sqlite:///{tmp_path}/fresh.db"  # no schema yet: the backtest migrates it first
    result = runner.invoke(app, ["backtest", "--data", str(nvda_1000), "--db", fresh, "--json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # the whole of stdout is the one object
    assert document["commission"] == DEFAULT_COMMISSION and document["stored_in"] == fresh
    with session_scope(fresh) as session:
        run = load_run(session, uuid.UUID(document["run_id"]))
    assert run.config_digest == document["config_digest"] and run.backtest_config["commission"] == DEFAULT_COMMISSION
    assert run.statistics["equity_final"] == document["equity_final"] and len(run.trades) == document["trades"]


def test_the_same_backtest_again_changes_no_row_and_says_it_was_stored(nvda_1000: Path, database_url: str) -> None:
    arguments = ["backtest", "--data", str(nvda_1000), "--db", database_url]
    first = runner.invoke(app, arguments)
    before = _contents(database_url)

    again = runner.invoke(app, arguments)

    assert again.exit_code == 0, again.output
    assert _contents(database_url) == before
    assert "already stored" in again.stdout
    assert STORED.search(first.stdout) is not None and STORED.search(again.stdout) is not None
    assert STORED.search(again.stdout).group(1) == STORED.search(first.stdout).group(1)  # type: ignore[union-attr]


def test_no_store_touches_no_database_and_prints_the_id_the_run_would_have(nvda_1000: Path, tmp_path: Path) -> None:
    unused = tmp_path / "unused.db"
    arguments = ["backtest", "--data", str(nvda_1000), "--json"]
    skipped = runner.invoke(app, [*arguments, "--no-store", "--db", f"sqlite:///{unused}"])
    stored = runner.invoke(app, [*arguments, "--db", f"sqlite:///{tmp_path}/used.db"])

    assert skipped.exit_code == 0, skipped.output
    document = json.loads(skipped.stdout)
    assert document["stored_in"] is None and not unused.exists()
    assert document["run_id"] == json.loads(stored.stdout)["run_id"]
    text = runner.invoke(app, ["backtest", "--data", str(nvda_1000), "--no-store"])
    assert f"not stored (--no-store); stored, it would be run {document['run_id']}" in text.stdout


def test_the_command_and_the_nightly_task_on_the_same_bars_and_settings_store_one_run_under_one_id(
    nvda_1000: Path, database_url: str
) -> None:
    from models import run_summaries
    from models.backtest_runs import load_run
    from models.engine import session_scope
    from neuraltrade.backtest import BacktestConfig
    from tasks.backtest import StrategySpec, backtest_symbol
    from tasks.ingest import ingest_file

    ingest_file.fn(database_url, str(nvda_1000))  # the nightly's own path into the database
    # 10000 and 10000.0 are one cash: one specification, one id.
    config = BacktestConfig(cash=10_000, commission=DEFAULT_COMMISSION)
    task = backtest_symbol.fn(database_url, "NVDA", StrategySpec(name="sma_cross", params={"fast": 5}), config)

    arguments = ["backtest", "--data", str(nvda_1000), "--param", "fast=5", "--cash", "10000.0", "--json"]
    command = runner.invoke(app, [*arguments, "--db", database_url])

    assert command.exit_code == 0, command.output
    document = json.loads(command.stdout)
    with session_scope(database_url) as session:
        stored = load_run(session, uuid.UUID(task["run_id"]))
        assert run_summaries.table_counts(session)["backtest_runs"] == 1
    assert document["run_id"] == task["run_id"] == str(stored.id)
    assert (document["config_digest"], document["data_digest"]) == (stored.config_digest, stored.data_digest)
    assert document["engine_version"] == stored.engine_version and document["trades"] == task["trades"]


def test_the_command_line_and_the_nightly_default_to_one_commission_and_show_it(nvda_1000: Path) -> None:
    from flows.run_backtests import run_backtests

    assert inspect.signature(run_backtests.fn).parameters["commission"].default == DEFAULT_COMMISSION
    result = runner.invoke(app, ["backtest", "--data", str(nvda_1000), "--no-store"])
    assert result.exit_code == 0, result.output
    assert "commission 0.10%" in result.stdout
    grid = ["--grid", "fast=5", "--grid", "slow=20", "--train-bars", "400", "--test-bars", "300"]
    walked = runner.invoke(app, ["walk-forward", "--data", str(nvda_1000), *grid])
    assert walked.exit_code == 0, walked.output
    assert "commission 0.10%" in walked.stdout


@pytest.mark.parametrize("command", ["backtest", "sweep", "walk-forward"])
def test_the_strategy_option_lists_every_strategy_and_an_unknown_one_is_refused_listing_them(
    nvda_1000: Path, command: str
) -> None:
    shown = runner.invoke(app, [command, "--help"])
    assert shown.exit_code == 0, shown.output
    assert all(name in shown.stdout for name in STRATEGY_NAMES), shown.stdout

    arguments = [command, "--data", str(nvda_1000), "--strategy", "sma_crossing", "--no-store"]
    if command != "backtest":
        arguments = [command, "--data", str(nvda_1000), "--strategy", "sma_crossing", "--grid", "fast=5,10"]
        arguments += ["--train-bars", "400", "--test-bars", "200"] if command == "walk-forward" else []
    refused = runner.invoke(app, arguments)
    assert refused.exit_code == 1
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"the strategies are {', '.join(STRATEGY_NAMES)}" in lines[0], refused.output


def test_a_sweep_over_a_parameter_the_strategy_does_not_take_is_refused_naming_its_parameters(nvda_1000: Path) -> None:
    result = runner.invoke(app, ["sweep", "--data", str(nvda_1000), "--grid", "speed=1,2"])
    assert result.exit_code == 1
    assert "strategy 'sma_cross' has no parameter 'speed'; its parameters are fast, slow, average" in result.output


def test_the_nights_table_shows_buy_and_hold_and_exposure_beside_the_return(capsys: pytest.CaptureFixture[str]) -> None:
    run = {"strategy": "sma_cross", "symbol": "NVDA", "trades": 208, "return_pct": 14.3456, "sharpe": 0.0612}
    run |= {"buy_hold_return_pct": 1052.6123, "exposure_pct": 98.94, "max_drawdown_pct": 42.8, "rejections": 0}
    sizing = {"kind": "volatility_target", "annual_volatility": 0.12, "lookback": 20, "max_leverage": 1.0}
    print_backtests({"runs": [run], "skipped": [], "commission": 0.001, "sizing": sizing})

    lines = capsys.readouterr().out.splitlines()
    setup = "every run: commission 0.10% per fill; sized by volatility target (annual_volatility=0.12, lookback=20, "
    assert any(line.startswith(setup + "max_leverage=1)") for line in lines), lines
    header = next(line for line in lines if line.startswith("strategy"))
    assert re.search(r"return %\s+buy & hold %\s+exposure %", header)
    row = next(line for line in lines if line.startswith("sma_cross"))
    assert re.search(r"\b208\s+14\.35\s+1,052\.61\s+98\.94\s+0\.061\s+42\.80\b", row), row


def test_a_missing_data_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "none.csv"
    result = runner.invoke(app, ["backtest", "--data", str(missing)])
    assert result.exit_code == 1 and str(missing) in result.output


def test_report_writes_a_self_contained_page_whose_charts_render(database_url: str, tmp_path: Path) -> None:
    from models import repositories
    from models.engine import session_scope
    from neuraltrade.backtest import BacktestConfig
    from neuraltrade.market.ingest import read_bars
    from tasks.backtest import StrategySpec, backtest_symbol

    chromium = require_chromium()
    del chromium
    frame = read_bars(SAMPLE).frame.drop(columns=["line"], errors="ignore").iloc[:600]
    with session_scope(database_url, write=True) as session:
        repositories.upsert_bars(session, frame, source="test", now=datetime(2026, 1, 1, tzinfo=UTC))
    summary = backtest_symbol.fn(database_url, "NVDA", StrategySpec(name="sma_cross"), BacktestConfig())
    page = tmp_path / "report.html"

    result = runner.invoke(app, ["report", summary["run_id"], "--db", database_url, "--output", str(page)])

    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "http://" not in html and "https://" not in html
    dom = render_dom(page)
    assert 'data-rendered="equity,drawdown,price:NVDA"' in dom
    assert summary["trades"] > 0 and not math.isnan(summary["return_pct"])
    listed = runner.invoke(app, ["runs", "--db", database_url])
    assert listed.exit_code == 0 and summary["run_id"] in listed.stdout


def test_report_of_an_unknown_run_is_one_line(database_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "not-a-run", "--db", database_url, "--output", str(tmp_path / "x.html")])
    assert result.exit_code == 1 and "no backtest run 'not-a-run'" in result.output


def test_sweep_ranks_every_combination_and_names_the_skipped(nvda_1000: Path) -> None:
    arguments = ["sweep", "--data", str(nvda_1000), "--grid", "fast=5,10,30", "--grid", "slow=20..21"]
    result = runner.invoke(app, [*arguments, "--workers", "1", "--json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["commission"] == DEFAULT_COMMISSION
    assert [(row["fast"], row["slow"]) for row in document["rows"]] == [(5, 20), (5, 21), (10, 20), (10, 21)]
    assert [skipped["params"] for skipped in document["skipped"]] == [
        {"fast": 30, "slow": 20},
        {"fast": 30, "slow": 21},
    ]
    assert all("fast" in skipped["reason"] for skipped in document["skipped"])
    # Each row is the backtest of its own parameters: the same as a single backtest of them.
    one = json.loads(
        runner.invoke(
            app, ["backtest", "--data", str(nvda_1000), "--param=fast=10", "--param=slow=21", "--json"]
        ).stdout
    )
    assert document["rows"][3]["equity_final"] == one["equity_final"] and document["rows"][3]["sharpe"] == one["sharpe"]


def test_walk_forward_reports_out_of_sample_folds_and_records_them_as_a_trial(
    nvda_1000: Path, database_url: str, tmp_path: Path
) -> None:
    from models.engine import session_scope
    from models.learning_store import load_trials

    arguments = ["walk-forward", "--data", str(nvda_1000), "--grid", "fast=5,10", "--grid", "slow=20,40"]
    arguments += ["--train-bars", "400", "--test-bars", "200", "--json"]
    result = runner.invoke(app, [*arguments, "--db", database_url])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len(document["folds"]) == 3
    assert document["folds"][0]["test_start"] > "2000-08"  # after the first 400 bars
    assert document["out_of_sample"]["trades"] == sum(fold["statistics"]["trades"] for fold in document["folds"])
    # The out-of-sample days are in the trial registry, so the deflated Sharpe counts this search.
    with session_scope(database_url) as session:
        [trial] = load_trials(session, family="walk_forward")
    assert str(trial.id) == document["trial_id"] and trial.parameters["grid"] == {"fast": [5, 10], "slow": [20, 40]}
    assert trial.days == 600 and len(trial.timestamps) == 600
    final = document["folds"][-1]["statistics"]["equity_final"]
    assert np.prod(1.0 + np.asarray(trial.returns)) * 10_000 == pytest.approx(final, rel=1e-9)
    # The same search again is the same trial; without a database nothing is recorded and no file is made.
    assert json.loads(runner.invoke(app, [*arguments, "--db", database_url]).stdout)["trial_id"] == str(trial.id)
    missing = tmp_path / "none" / "missing.db"
    unrecorded = json.loads(runner.invoke(app, [*arguments, "--db", f"sqlite:///{missing}"]).stdout)
    assert unrecorded["trial_id"] is None and not missing.exists()


def test_a_malformed_grid_is_one_line(nvda_1000: Path) -> None:
    result = runner.invoke(app, ["sweep", "--data", str(nvda_1000), "--grid", "fast"])
    assert result.exit_code == 1 and "--grid 'fast' is not name=v1,v2" in result.output


def test_memory_vote_without_a_market_memory_says_how_to_make_one(nvda_1000: Path, database_url: str) -> None:
    result = runner.invoke(
        app, ["backtest", "--data", str(nvda_1000), "--strategy", "memory_vote", "--db", database_url]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "neuraltrade nightly --db" in lines[0], result.output


def test_rows_that_cannot_be_read_are_left_out_with_a_warning(nvda_1000: Path, tmp_path: Path) -> None:
    lines = nvda_1000.read_text().splitlines(keepends=True)
    broken = tmp_path / "NVDA.csv"
    broken.write_text("".join([*lines[:500], "1999-13-45,x,y,z,w,v,u\n", *lines[500:]]))

    result = runner.invoke(app, ["backtest", "--data", str(broken), "--json"])

    assert result.exit_code == 0, result.output
    assert "1 rows could not be read or failed a check and were left out (first: line 501" in result.stderr
    assert json.loads(result.stdout)["bars"] == 1000
