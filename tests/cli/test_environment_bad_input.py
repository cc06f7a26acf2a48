"""Bad values of every environment variable the code reads (issue 14, point 7): each value is taken for
what it means, falls back as documented, or is refused where it is read with one line naming the variable
or the value; never a traceback. (The signing key and the database password never show: test_secrets.py.)

A variable the code starts reading fails `test_every_variable_the_code_reads_is_specified_here` until it
is added below.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from models.collections import INDEX_FOLDER_VARIABLE, index_path
from models.dialects.postgresql import PG_BIN_VARIABLE, PostgresqlComponents
from models.engine import DATABASE_ENVIRONMENT_VARIABLE, dispose_engines, session_scope
from models.migrations import upgrade_database
from neuraltrade.errors import ConfigError, NeuralTradeError, SigningKeyInvalid, SigningKeyMissing, StorageError
from neuraltrade.provenance.keys import KEY_ENVIRONMENT_VARIABLE, load_signing_key
from neuraltrade_cli import app
from tasks.metrics import METRICS_ENVIRONMENT_VARIABLE, PUSHGATEWAY_VARIABLE, export_metrics, metrics_path
from tasks.provenance import CHECKPOINT_DIRECTORY_VARIABLE
from tasks.tracing import EXPORTER_VARIABLE, configure_tracing
from tests.bad_input import assert_refusal, hostile_texts

PROJECT = Path(__file__).resolve().parents[2]
#: The variables whose every value is valid, and why.
ANY_VALUE = {
    "NEURALTRADE_ANNOUNCE_RUNS": "set to any value, `neuraltrade serve` runs announce themselves (flows/__init__.py)",
    "NEURALTRADE_KILL_POINT": "a test hook ending the process at a named point; unset in use (models/kill_points.py)",
}
#: What a shell can put in a variable: no NUL, but empty, blank, numbers of every size, URLs half written,
#: paths of users who do not exist, and whatever else.
environment_values = st.one_of(
    hostile_texts.filter(lambda value: "\x00" not in value),
    st.sampled_from(
        ["", " ", "\t", "-1", "0", "99999999999999999999", "1e309", "nan", "http://[::1", "tcp://", "://", "²", "٣"]
    ),
    st.sampled_from(["~nosuchuser/x", "a" * 300, "/proc/1/nowhere", "data/../../x", "$HOME"]),
)
runner = CliRunner()


def _one_line(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    text = result.stderr
    lines = [line for line in text.split("\n") if line.strip()]
    assert len(lines) == 1, f"not one line: {text!r}"
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('environment')}/t.db"
    upgrade_database(url)
    yield url
    dispose_engines()


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of its own, two levels down, to run in: a relative path names nothing of the project's."""
    folder = tmp_path_factory.mktemp("elsewhere") / "a" / "b"
    folder.mkdir(parents=True)
    return folder


def test_every_variable_the_code_reads_is_specified_here() -> None:
    read = set()
    for package in ("neuraltrade", "models", "tasks", "flows", "deployments", "neuraltrade_cli"):
        for path in (PROJECT / package).rglob("*.py"):
            read |= set(re.findall(r"NEURALTRADE_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8")))
    specified = set(ANY_VALUE) | {
        DATABASE_ENVIRONMENT_VARIABLE,
        "NEURALTRADE_TASK_RUNNER",
        "NEURALTRADE_DASK_ADDRESS",
        "NEURALTRADE_DASK_WORKERS",
        EXPORTER_VARIABLE,
        KEY_ENVIRONMENT_VARIABLE,
        METRICS_ENVIRONMENT_VARIABLE,
        PUSHGATEWAY_VARIABLE,
        INDEX_FOLDER_VARIABLE,
        CHECKPOINT_DIRECTORY_VARIABLE,
        PG_BIN_VARIABLE,
    }
    assert read == specified


@settings(max_examples=40, deadline=None)
@given(value=environment_values)
@example(value="")
@example(value="mysql://user@host/db")
@example(value="0://:")  # a port that is no number: SQLAlchemy's ValueError escaped as a traceback
def test_a_bad_database_url_in_the_environment_is_one_line_naming_the_variable(elsewhere: Path, value: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(elsewhere)  # the default, data/neuraltrade.db, is then missing
        result = runner.invoke(app, ["status"], env={DATABASE_ENVIRONMENT_VARIABLE: value})

    assert result.exit_code == 1
    line = _one_line(result)
    if "URL" in line:
        assert f"${DATABASE_ENVIRONMENT_VARIABLE}" in line
    assert not (elsewhere / "data").exists()


@settings(max_examples=60, deadline=None)
@given(
    runner_name=environment_values | st.sampled_from(["threads", "dask", " DASK "]),
    workers=environment_values,
)
@example(runner_name="dask", workers="0")
def test_a_task_runner_variable_is_a_runner_or_a_config_error_naming_the_variable(
    runner_name: str, workers: str
) -> None:
    from flows import task_runner

    environment = {"NEURALTRADE_TASK_RUNNER": runner_name, "NEURALTRADE_DASK_WORKERS": workers}
    try:
        made = task_runner(environment)
    except NeuralTradeError as error:
        assert isinstance(error, ConfigError)
        message = assert_refusal(error, embedded=[runner_name, workers, runner_name.strip().lower(), workers.strip()])
        assert "NEURALTRADE_TASK_RUNNER" in message or "NEURALTRADE_DASK_WORKERS" in message
    else:
        assert type(made).__name__ in ("ThreadPoolTaskRunner", "DaskTaskRunner")


def test_a_worker_count_of_a_superscript_digit_is_a_config_error_naming_the_variable() -> None:
    from flows import task_runner

    with pytest.raises(ConfigError, match="NEURALTRADE_DASK_WORKERS='²'"):
        task_runner({"NEURALTRADE_TASK_RUNNER": "dask", "NEURALTRADE_DASK_WORKERS": "²"})


def test_a_bad_task_runner_met_when_a_command_imports_its_flow_is_one_line_not_a_traceback(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Flows read the variable when first imported, inside the command: the flow module is imported again.
    monkeypatch.delitem(sys.modules, "flows.embed_observations", raising=False)
    monkeypatch.setenv("NEURALTRADE_TASK_RUNNER", "celery; rm -rf /")

    result = runner.invoke(app, ["embed", "--db", database])

    assert result.exit_code == 1
    assert _one_line(result) == (
        "error: NEURALTRADE_TASK_RUNNER='celery; rm -rf /' is not a task runner: use threads or dask"
    )


@settings(max_examples=40, deadline=None)
@given(value=environment_values)
def test_a_trace_exporter_is_known_or_a_config_error_naming_the_variable(value: str) -> None:
    if value.strip().lower() in ("console", "otlp"):
        return  # a real exporter: it would be set for the whole session
    try:
        name = configure_tracing({EXPORTER_VARIABLE: value})
    except NeuralTradeError as error:
        assert isinstance(error, ConfigError)
        assert_refusal(error, naming=[EXPORTER_VARIABLE], embedded=[value.strip().lower()])
    else:
        assert name == "none" and value.strip().lower() in ("", "none")


@settings(max_examples=40, deadline=None)
@given(value=environment_values)
@example(value="~nosuchuser/signing.key")
@example(value="x" * 5_000)
def test_a_bad_signing_key_path_is_missing_or_invalid_in_one_line_naming_it(elsewhere: Path, value: str) -> None:
    (elsewhere / "folder").mkdir(mode=0o700, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(elsewhere)
        patch.setenv(KEY_ENVIRONMENT_VARIABLE, value)
        # The fallback of an empty value, the operator's own key file, is looked for here instead.
        patch.setenv("XDG_CONFIG_HOME", str(elsewhere / "config"))
        with pytest.raises(NeuralTradeError) as raised:
            load_signing_key()
    assert isinstance(raised.value, SigningKeyMissing | SigningKeyInvalid)
    shown = str(Path(value)) if value else str(elsewhere / "config" / "neuraltrade" / "signing.key")
    assert_refusal(raised.value, embedded=[value, shown])


def test_a_signing_key_path_that_is_a_folder_or_under_a_file_is_refused_naming_it(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (tmp_path / "file").write_text("x")
    for value, error_type in ((private, SigningKeyInvalid), (tmp_path / "file" / "key", SigningKeyMissing)):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(KEY_ENVIRONMENT_VARIABLE, str(value))
            with pytest.raises(error_type) as raised:
                load_signing_key()
        assert_refusal(raised.value, naming=[str(value)])


@settings(max_examples=15, deadline=None)
@given(
    path=environment_values.filter(lambda value: not value.startswith(("/", "~")) and ".." not in value),
    gateway=environment_values,
)
@example(path="", gateway="http://127.0.0.1:1")
def test_a_metrics_file_is_written_or_refused_naming_the_variable_and_a_push_never_fails_the_run(
    database: str, elsewhere: Path, path: str, gateway: str
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(elsewhere)
        patch.setenv(METRICS_ENVIRONMENT_VARIABLE, path)
        patch.setenv(PUSHGATEWAY_VARIABLE, gateway)
        target = metrics_path(database)
        with session_scope(database) as session:
            try:
                written = export_metrics(session, target)
            except NeuralTradeError as error:
                assert isinstance(error, ConfigError)
                assert_refusal(error, naming=[f"${METRICS_ENVIRONMENT_VARIABLE}"], embedded=[path, str(target)])
                return
    assert written == target
    assert "neuraltrade_table_rows" in (target if target.is_absolute() else elsewhere / target).read_text()


def test_a_metrics_file_under_a_file_or_at_a_folder_is_refused_naming_the_variable(
    database: str, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    for value in (tmp_path / "file" / "metrics.prom", tmp_path):
        with pytest.MonkeyPatch.context() as patch, session_scope(database) as session:
            patch.setenv(METRICS_ENVIRONMENT_VARIABLE, str(value))
            with pytest.raises(ConfigError) as raised:
                export_metrics(session, metrics_path(database))
        assert_refusal(raised.value, naming=[str(value), f"${METRICS_ENVIRONMENT_VARIABLE}"])


SERVER_URL = "postgresql+psycopg://trader@/market?host=/nonexistent"


@settings(max_examples=40, deadline=None)
@given(value=environment_values.filter(lambda value: not value.startswith("~")))
def test_an_index_folder_is_a_path_under_it_or_none(value: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(INDEX_FOLDER_VARIABLE, value)
        path = index_path(SERVER_URL, "market_state")
    if value:
        assert path is not None and path.name == "market_state.hnsw" and path.parent.parent == Path(value)
    else:
        assert path is None  # documented: the index then lives in memory only


def test_an_index_folder_of_a_user_who_does_not_exist_is_refused_naming_the_variable() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(INDEX_FOLDER_VARIABLE, "~nosuchuser/indexes")
        with pytest.raises(ConfigError, match=INDEX_FOLDER_VARIABLE):
            index_path(SERVER_URL, "market_state")


@settings(max_examples=20, deadline=None)
@given(value=environment_values)
def test_a_bad_checkpoint_folder_is_one_line_naming_where_the_key_list_was_looked_for(
    database: str, value: str
) -> None:
    result = runner.invoke(app, ["verify", "--db", database], env={CHECKPOINT_DIRECTORY_VARIABLE: value})

    assert result.exit_code == 1
    line = _one_line(result)
    assert "keys.json" in line or "public key list" in line


@settings(max_examples=30, deadline=None)
@given(value=environment_values.filter(bool))
def test_a_bad_postgresql_tools_folder_is_a_storage_error_naming_the_variable(value: str) -> None:
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setenv(PG_BIN_VARIABLE, value)
        with pytest.raises(StorageError) as raised:
            PostgresqlComponents().dump(SERVER_URL, Path(folder) / "database.pgdump")
    assert_refusal(raised.value, naming=[PG_BIN_VARIABLE], embedded=[value, str(Path(value))])


def test_a_postgresql_tool_that_cannot_be_run_is_a_storage_error_naming_the_variable(tmp_path: Path) -> None:
    (tmp_path / "pg_dump").write_text("not a program")  # not executable
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PG_BIN_VARIABLE, str(tmp_path))
        with pytest.raises(StorageError) as raised:
            PostgresqlComponents().dump(SERVER_URL, tmp_path / "database.pgdump")
    assert_refusal(raised.value, naming=[PG_BIN_VARIABLE, str(tmp_path / "pg_dump"), "Permission denied"])
