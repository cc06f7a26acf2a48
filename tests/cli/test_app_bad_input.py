"""Bad command lines (issue 14, point 7): any arguments to any command end with exit status 0, or with a
non-zero status and exactly one line on stderr (``error: ...``), never a traceback; a malformed command line
is status 2. The database the commands are pointed at keeps every bar and run it held.

The commands run in process (`typer.testing.CliRunner`) against one SQLite database per module, holding
120 real NVDA bars and a stored backtest run.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from models.engine import dispose_engines
from models.migrations import upgrade_database
from neuraltrade_cli import app
from tests.bad_input import hostile_texts
from tests.conftest import DAILY_DATA

runner = CliRunner()
#: Each command's options that take a value (None: an argument), and its flags.
COMMANDS: dict[str, tuple[tuple[str | None, ...], tuple[str, ...]]] = {
    "status": ((), ()),
    "runs": (("--strategy", "--limit"), ()),
    "report": ((None, "--output"), ()),
    "patterns": (("--strategy",), ("--json",)),
    "reflections": ((None,), ("--json",)),
    "counterfactual": ((None,), ("--json",)),
    "memory stats": ((), ("--json",)),
    "verify": ((None, "--keys", "--checkpoint", "--checkpoint-dir"), ("--json",)),
    "keys list": ((), ("--json",)),
    "embed": (("--symbol",), ()),
    "ingest": ((None, "--symbol", "--timezone", "--date-format"), ("--adjusted",)),
    "backtest": (("--data", "--strategy", "--param", "--cash", "--commission", "--margin", "--symbol"), ("--json",)),
    "sweep": (("--data", "--grid", "--random", "--seed", "--metric", "--top"), ("--json",)),
    "learning-report": (("--output", "--reps"), ()),
}
#: What a value may be besides hostile text: numbers of every size, paths to everything the module holds.
PLAIN_VALUES = (
    "-1",
    "0",
    "1",
    "99999999999999999999999",
    "nan",
    "inf",
    "1e309",
    "--",
    "-",
    "%",
    "%Y%Y",
    "Mars/Olympus",
    "sma_cross",
    "gated:nope",
    "fast=x",
    "fast=1..99999999999999999999",
    "fast=1e400",
    "=",
    "/nonexistent/x.csv",
)


@dataclass(frozen=True)
class Stored:
    url: str
    folder: Path
    run_id: str

    def rows(self) -> dict[str, set[tuple[object, ...]]]:
        """Every bar and every backtest run stored."""
        connection = sqlite3.connect(self.folder / "t.db")
        try:
            return {table: set(connection.execute(f"SELECT * FROM {table}")) for table in ("bars", "backtest_runs")}
        finally:
            connection.close()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    folder = tmp_path_factory.mktemp("cli-bad-input")
    url = f"sqlite:///{folder}/t.db"
    upgrade_database(url)
    sample = folder / "NVDA.csv"
    sample.write_text("".join((DAILY_DATA / "NVDA.csv").read_text().splitlines(keepends=True)[:121]))
    assert runner.invoke(app, ["ingest", str(sample), "--db", url]).exit_code == 0
    backtest = runner.invoke(app, ["backtest", "--data", str(sample), "--db", url])
    assert backtest.exit_code == 0, backtest.output
    [run_id] = re.findall(r"stored as run ([0-9a-f-]{36})", backtest.output)
    yield Stored(url=url, folder=folder, run_id=run_id)
    dispose_engines()


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's commands run in a folder of their own: a default database (data/neuraltrade.db) or
    report file they make is made there."""
    folder = tmp_path_factory.mktemp("elsewhere")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        yield folder


def _assert_clean_ending(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__} escaped: {result.exception!r}"
    )
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        lines = [line for line in result.stderr.split("\n") if line.strip()]
        assert len(lines) == 1, f"status {result.exit_code} with {len(lines)} lines on stderr: {result.stderr!r}"
        assert lines[0].startswith("error: ")


@st.composite
def command_lines(draw: st.DrawFn, stored: Stored) -> list[str]:
    command = draw(st.sampled_from(sorted(COMMANDS)))
    options, flags = COMMANDS[command]
    paths = [stored.run_id, str(stored.folder / "t.db")]
    if command != "ingest":  # ingesting the stored bars again with other options corrects them, on purpose
        paths += [str(stored.folder), str(stored.folder / "NVDA.csv")]
    values = st.one_of(hostile_texts, st.sampled_from(PLAIN_VALUES), st.sampled_from(paths))
    # A report written where it was asked replaces that file, the database included: as asked.
    outputs = st.one_of(hostile_texts, st.sampled_from(PLAIN_VALUES), st.just(str(stored.folder)))
    arguments = command.split()
    for option in draw(st.lists(st.sampled_from(options), unique=True)) if options else []:
        value = draw(outputs if option == "--output" else values)
        arguments += [value] if option is None else [option, value]
    arguments += draw(st.lists(st.sampled_from(flags), unique=True)) if flags else []
    database = draw(st.sampled_from(["stored", "default", "garbage"]))
    if database == "stored":
        arguments += ["--db", stored.url]
    elif database == "garbage":
        arguments += ["--db", draw(values | st.sampled_from(["0://:", "sqlite://h:port/x", "mysql://u@h/db"]))]
    return arguments


@settings(max_examples=45, deadline=None)
@given(data=st.data())
def test_any_arguments_to_any_command_end_in_success_or_one_error_line_and_lose_nothing_stored(
    stored: Stored, elsewhere: Path, data: st.DataObject
) -> None:
    arguments = data.draw(command_lines(stored))
    before = stored.rows()

    result = runner.invoke(app, arguments)

    _assert_clean_ending(result)
    after = stored.rows()
    assert all(before[table] <= after[table] for table in before)
    assert runner.invoke(app, ["status", "--db", stored.url]).exit_code == 0


def test_a_file_name_holding_nul_is_one_error_line_naming_it(stored: Stored, elsewhere: Path) -> None:
    # Python refuses NUL in a file name with a ValueError, which escaped `report` as a traceback.
    result = runner.invoke(app, ["report", stored.run_id, "--output", "x\x00y.html", "--db", stored.url])

    _assert_clean_ending(result)
    assert result.exit_code == 2
    assert "'x\\x00y.html'" in result.stderr


@settings(max_examples=40, deadline=None)
@given(
    arguments=st.lists(hostile_texts | st.sampled_from(["--db", "-v", "--help", "memory", "keys", "runs"]), max_size=4)
)
@example(arguments=["runs", "--limit", "99999999999999999999999"])
@example(arguments=["runs", "--limit", "abc"])
@example(arguments=["nosuch"])
@example(arguments=["ingest", "x\x00y"])
@example(arguments=["backtest"])
def test_a_malformed_command_line_is_one_error_line_with_status_2_naming_the_fault(
    elsewhere: Path, arguments: list[str]
) -> None:
    result = runner.invoke(app, arguments)

    if result.exit_code == 2 and not result.stderr:
        assert "Usage:" in result.stdout  # a group given no command shows its help, as asked
        return
    _assert_clean_ending(result)
    if result.exit_code == 2:
        assert "--help`)" in result.stderr  # says where the usage is
