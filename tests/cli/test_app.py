"""The `neuraltrade` command: thin commands, one-line errors, never a traceback."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.engine import dispose_engines
from models.migrations import head_revision, upgrade_database
from neuraltrade_cli.app import app

runner = CliRunner()


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_a_missing_file_is_one_line_naming_it(database_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"

    result = runner.invoke(app, ["ingest", str(missing), "--db", database_url])

    assert result.exit_code == 1
    assert _lines(result.output) == [f"error: no such file or folder: {missing}"]
    assert "Traceback" not in result.output


def test_a_malformed_database_url_is_one_line_naming_it() -> None:
    result = runner.invoke(app, ["status", "--db", "not a url"])

    assert result.exit_code == 1
    assert len(_lines(result.output)) == 1
    assert "'not a url'" in result.output


def test_status_of_an_empty_database_says_to_initialise_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--db", f"sqlite:///{tmp_path}/empty.db"])

    assert result.exit_code == 1
    assert "neuraltrade init" in result.output


def test_init_creates_the_schema_that_status_then_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"

    created = runner.invoke(app, ["init", "--db", url])
    shown = runner.invoke(app, ["status", "--db", url])

    assert created.exit_code == 0, created.output
    assert f"schema revision {head_revision()}" in created.output
    assert shown.exit_code == 0, shown.output
    for table in ("bars", "observations", "memory_items", "quarantined_rows", "run_summaries"):
        assert table in shown.output


def test_ingesting_a_file_of_unknown_layout_is_one_line_naming_the_file(
    prefect_harness: None, database_url: str, tmp_path: Path
) -> None:
    broken = tmp_path / "BROKEN.csv"
    broken.write_text("when,price\n2024-01-02,10\n")

    result = runner.invoke(app, ["ingest", str(broken), "--db", database_url])

    assert result.exit_code == 1
    errors = [line for line in _lines(result.output) if line.startswith("error:")]
    assert len(errors) == 1
    assert "BROKEN.csv" in errors[0]
    assert "matches no known layout" in errors[0]
    assert "Traceback" not in result.output


def test_nightly_reports_every_file_and_the_tables(
    prefect_harness: None, database_url: str, sample_csv: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEURALTRADE_METRICS_FILE", str(tmp_path / "metrics.prom"))

    result = runner.invoke(app, ["nightly", str(sample_csv), "--db", database_url])

    assert result.exit_code == 0, result.output
    assert "NVDA.csv" in result.output
    assert "stored 89 new vectors" in result.output
    assert "ingest_bars" in result.output and "embed_observations" in result.output
    assert "Backtests" in result.output and "sma_cross" in result.output and "run_backtests" in result.output


def test_ingesting_a_partly_bad_file_stores_the_rest_and_names_the_failed_checks(
    prefect_harness: None, database_url: str, tmp_path: Path
) -> None:
    partly_bad = tmp_path / "ABC.csv"
    partly_bad.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,10,11,9,10.5,10.5,100\n"
        "2024-01-03,10,9,11,10.5,10.5,100\n"
        "2024-01-04,10,11,9,,10.5,100\n"
    )

    result = runner.invoke(app, ["ingest", str(partly_bad), "--db", database_url])

    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in _lines(result.output) if "ABC.csv" in line]
    assert lines == [
        "✓ ABC.csv (daily, ABC): 3 rows read, 1 stored (1 new or changed), 2 quarantined "
        "(failing close_le_high x1, low_le_close x1, low_le_open x1, not_null:close x1, open_le_high x1)"
    ]


def test_ingesting_a_folder_gives_every_file_its_outcome_line_and_fails_in_one_line(
    database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "bars"
    (folder / "more").mkdir(parents=True)
    (folder / "GOOD.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,100\n")
    (folder / "more" / "EMPTY.csv").write_text("Date,Open,High,Low,Close,Volume\n")
    (folder / "DAYFIRST.csv").write_text("Date;Open;High;Low;Close;Volume\n13/01/2024;10;11;9;10.5;100\n")
    (folder / "notes.md").write_text("not a bar file")

    result = runner.invoke(app, ["ingest", str(folder), "--db", database_url])

    assert result.exit_code == 1
    outcomes = {line.split()[1]: line for line in _lines(result.stdout) if line[:2] in ("✓ ", "✗ ")}
    outcomes.pop("ingesting", None)  # the finished progress bar
    assert set(outcomes) == {"GOOD.csv", "EMPTY.csv", "DAYFIRST.csv"}
    assert outcomes["GOOD.csv"].startswith("✓ GOOD.csv (daily, GOOD): 1 rows read, 1 stored")
    assert outcomes["EMPTY.csv"].endswith("holds a header but no data row")
    assert "give the format with --date-format, e.g. %d/%m/%Y" in outcomes["DAYFIRST.csv"]
    [error] = _lines(result.stderr)
    assert error.startswith("error: 2 of 3 files failed: ")


def test_day_first_dates_are_read_with_a_date_format(database_url: str, tmp_path: Path) -> None:
    dayfirst = tmp_path / "EU.csv"
    dayfirst.write_text('Date;Open;High;Low;Close;Volume\n13/01/2024;"1,234.5";1300;1200;1250;100\n')

    result = runner.invoke(app, ["ingest", str(dayfirst), "--date-format", "%d/%m/%Y", "--db", database_url])

    assert result.exit_code == 0, result.output
    assert "✓ EU.csv (daily, EU): 1 rows read, 1 stored" in result.stdout


def test_control_characters_of_a_file_are_shown_escaped_never_sent_to_the_terminal(
    database_url: str, tmp_path: Path
) -> None:
    hostile = tmp_path / "ESC.csv"
    hostile.write_text("\x1b[2J\x1b[31mwhen,[bold]price\n1,2\n")

    result = runner.invoke(app, ["ingest", str(hostile), "--db", database_url])

    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert "\\x1b[2j\\x1b[31mwhen" in result.stderr.lower()
    assert "[bold]price" in result.stderr  # shown as written, not taken as markup


def test_a_failing_run_prints_one_line_and_no_traceback_in_a_real_process(
    prefect_harness: None, database_url: str, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    broken = tmp_path / "BROKEN.csv"
    broken.write_text("when,price\n2024-01-02,10\n")
    environment = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "100"}

    finished = subprocess.run(
        [sys.executable, "-m", "neuraltrade_cli", "ingest", str(broken), "--db", database_url],
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
    )

    assert finished.returncode == 1
    assert "Traceback" not in finished.stdout + finished.stderr
    assert _lines(finished.stderr) == [
        f"error: {broken}: header when, price matches no known layout; "
        + (
            "expected Date, Open, High, Low, Close, Volume (daily), with Time (intraday), or timestamp, symbol, "
            "open, high, low, close, volume (long)"
        )
    ]


def test_memory_stats_of_an_empty_database_says_to_initialise_it(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()

    result = runner.invoke(app, ["memory", "stats", "--db", f"sqlite:///{tmp_path}/empty.db"])

    assert result.exit_code == 1
    assert _lines(result.output) == [
        "error: the database has no schema yet; run `neuraltrade init` or `neuraltrade nightly` first"
    ]


def test_memory_stats_shows_each_collection_and_says_what_was_never_measured(database_url: str) -> None:
    import json

    import numpy as np

    from models.vector_store import VectorDB

    vectors = np.random.default_rng(3).normal(size=(40, 8)).astype(np.float32)
    VectorDB(8, name="notes", database_url=database_url, quantization="int8").insert_many(
        [f"n{i}" for i in range(40)], vectors, [{"symbol": ("AAA", "BBB")[i % 2]} for i in range(40)]
    )

    shown = runner.invoke(app, ["memory", "stats", "--db", database_url])
    as_json = runner.invoke(app, ["memory", "stats", "--db", database_url, "--json"])

    assert shown.exit_code == 0, shown.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in shown.output.splitlines() if "│" in line}
    assert (rows["items"], rows["vectors"], rows["quantization"], rows["partitions"]) == ("40", "40", "int8", "2")
    assert rows["recall@k (last audit)"] == "never measured"
    assert "L1 cache hit rate: n/a" in shown.output
    [entry] = json.loads(as_json.output)["collections"]
    assert (entry["collection"], entry["dimension"], entry["last_recall"]) == ("notes", 8, None)


def test_memory_stats_says_whether_a_graph_searches_whole_vectors_or_their_span(database_url: str) -> None:
    import json

    import numpy as np

    from models.vector_store import VectorDB

    generator = np.random.default_rng(4)
    low_rank = (generator.normal(size=(1_500, 20)) @ generator.normal(size=(20, 64))).astype(np.float32)
    for name, vectors in (("span", low_rank), ("whole", generator.normal(size=(1_500, 64)).astype(np.float32))):
        with VectorDB(64, name=name, database_url=database_url, index_type="hnsw", partition_key=None) as db:
            db.insert_many([f"{name}{i}" for i in range(1_500)], vectors)
    VectorDB(64, name="plain", database_url=database_url)

    shown = runner.invoke(app, ["memory", "stats", "--db", database_url])
    as_json = runner.invoke(app, ["memory", "stats", "--db", database_url, "--json"])

    assert shown.exit_code == 0, shown.output
    [row] = [line.split("│")[2:-1] for line in shown.output.splitlines() if "graph searches" in line]
    assert [cell.strip() for cell in row] == ["-", "a 20-d span of 64", "whole vectors"]
    ranks = {entry["collection"]: entry["index_subspace_rank"] for entry in json.loads(as_json.output)["collections"]}
    assert ranks == {"plain": None, "span": 20, "whole": None}


def test_memory_maintain_refuses_a_threshold_out_of_range_in_one_line(database_url: str) -> None:
    result = runner.invoke(app, ["memory", "maintain", "--db", database_url, "--recall-threshold", "1.5"])

    assert result.exit_code == 1
    assert _lines(result.output) == ["error: recall_threshold must be in [0, 1], was 1.5"]


def test_status_of_a_missing_database_creates_no_file_or_folder(tmp_path: Path) -> None:
    folder = tmp_path / "nonexistent" / "dir"

    result = runner.invoke(app, ["status", "--db", f"sqlite:///{folder}/x.db"])

    assert result.exit_code == 1
    assert _lines(result.output) == [
        f"error: no database at {folder}/x.db (sqlite:///{folder}/x.db); `neuraltrade init` creates one, "
        "`neuraltrade nightly` fills it"
    ]
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # A driver that is not installed (psycopg is: the PostgreSQL tests use it).
        ("postgresql+pg8000://trader:secret@localhost/market", "pip install 'neuraltrade[postgres]'"),
        # The installed driver, and no server listening.
        ("postgresql+psycopg://trader:secret@127.0.0.1:9/market", "Connection refused"),
        ("mysql://trader:secret@localhost/market", "mysql is not supported"),
        ("oracle://trader:secret@localhost/market", "oracle is not supported"),
    ],
)
def test_an_unsupported_or_driverless_database_says_what_to_do_in_one_line(url: str, expected: str) -> None:
    result = runner.invoke(app, ["init", "--db", url])

    assert result.exit_code == 1
    [line] = _lines(result.output)
    assert expected in line
    assert "secret" not in line  # the password is never shown


def _on_a_read_only_mount(folder: Path, command: list[str]) -> list[str]:
    """`command` run in a private mount namespace where `folder` is mounted read-only."""
    place = shlex.quote(str(folder))
    mount = f'mount --bind {place} {place} && mount -o remount,ro,bind {place} && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", mount, "sh", *command]


#: A real read-only mount needs root (CI runs as root) and util-linux's unshare.
needs_read_only_mounts = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="a read-only mount needs root and unshare"
)


@pytest.mark.slow
@needs_read_only_mounts
@pytest.mark.parametrize("command", [["status"], ["memory", "stats"], ["runs"]])
def test_read_only_commands_read_a_database_on_a_read_only_mount(command: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "mounted"
    folder.mkdir()
    url = f"sqlite:///{folder}/night.db"
    upgrade_database(url)
    dispose_engines()
    before = sorted(path.name for path in folder.iterdir())

    finished = subprocess.run(
        _on_a_read_only_mount(folder, [sys.executable, "-m", "neuraltrade_cli", *command, "--db", url]),
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )

    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr
    assert sorted(path.name for path in folder.iterdir()) == before == ["night.db"]


@pytest.mark.slow
@needs_read_only_mounts
def test_report_reads_a_stored_run_from_a_database_on_a_read_only_mount(sample_csv: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mounted"
    folder.mkdir()
    url = f"sqlite:///{folder}/night.db"
    stored = runner.invoke(app, ["backtest", "--data", str(sample_csv), "--json", "--db", url])
    assert stored.exit_code == 0, stored.output
    run_id = json.loads(stored.stdout)["run_id"]
    dispose_engines()
    before = sorted(path.name for path in folder.iterdir())
    report = tmp_path / "r.html"  # written outside the read-only mount

    finished = subprocess.run(
        _on_a_read_only_mount(
            folder, [sys.executable, "-m", "neuraltrade_cli", "report", run_id, "-o", str(report), "--db", url]
        ),
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )

    assert finished.returncode == 0, finished.stderr
    assert run_id in report.read_text()
    assert sorted(path.name for path in folder.iterdir()) == before
