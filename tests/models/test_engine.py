"""Specification of engines and sessions (`models.engine`)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from models.dialects.sqlite import BUSY_TIMEOUT_MILLISECONDS, PAGE_SIZE_BYTES
from models.engine import (
    DATABASE_ENVIRONMENT_VARIABLE,
    DEFAULT_DATABASE_URL,
    database_file,
    dispose_engines,
    get_engine,
    read_only_url,
    resolve_database_url,
    session_scope,
)
from neuraltrade.errors import DatabaseMissing, StorageError


def pragma(url: str, name: str) -> object:
    with get_engine(url).connect() as connection:
        return connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()


def test_every_connection_uses_wal_journaling(database_url: str) -> None:
    assert pragma(database_url, "journal_mode") == "wal"


def test_every_connection_enforces_foreign_keys(database_url: str) -> None:
    assert pragma(database_url, "foreign_keys") == 1


def test_every_connection_waits_for_a_busy_database(database_url: str) -> None:
    assert pragma(database_url, "busy_timeout") == BUSY_TIMEOUT_MILLISECONDS == 30_000


def test_a_new_file_gets_sixteen_kibibyte_pages(database_url: str) -> None:
    assert pragma(database_url, "page_size") == PAGE_SIZE_BYTES == 16_384


def test_sqlite_vec_is_loaded_on_every_connection(database_url: str) -> None:
    engine = get_engine(database_url)
    with engine.connect() as first, engine.connect() as second:
        versions = {connection.execute(text("SELECT vec_version()")).scalar_one() for connection in (first, second)}
    assert len(versions) == 1
    assert next(iter(versions)).startswith("v")


def test_the_engine_of_a_url_is_shared(database_url: str) -> None:
    assert get_engine(database_url) is get_engine(database_url)


def test_a_failing_session_block_rolls_back(database_url: str) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), session_scope(database_url, write=True) as session:
        session.execute(text("DELETE FROM alembic_version"))
        raise Boom

    with session_scope(database_url) as session:
        assert session.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_an_explicit_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_ENVIRONMENT_VARIABLE, "sqlite:///from-environment.db")

    assert resolve_database_url("sqlite:///explicit.db") == "sqlite:///explicit.db"


def test_the_environment_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_ENVIRONMENT_VARIABLE, "sqlite:///from-environment.db")

    assert resolve_database_url() == "sqlite:///from-environment.db"
    assert resolve_database_url(None) == "sqlite:///from-environment.db"


def test_without_url_or_environment_the_default_file_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_ENVIRONMENT_VARIABLE, raising=False)

    assert resolve_database_url() == DEFAULT_DATABASE_URL == "sqlite:///data/neuraltrade.db"


def test_an_empty_environment_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_ENVIRONMENT_VARIABLE, "")

    assert resolve_database_url() == DEFAULT_DATABASE_URL


@pytest.mark.parametrize("malformed", ["not a url", "sqlite//missing-colon.db", "://nothing"])
def test_a_malformed_url_is_a_storage_error_naming_it(malformed: str) -> None:
    with pytest.raises(StorageError, match="is not a SQLAlchemy URL") as raised:
        resolve_database_url(malformed)

    assert repr(malformed) in str(raised.value)


def test_a_malformed_environment_url_is_a_storage_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_ENVIRONMENT_VARIABLE, "definitely not a url")

    with pytest.raises(StorageError, match="'definitely not a url'"):
        resolve_database_url()


def test_only_a_sqlite_url_names_a_database_file(tmp_path: Path) -> None:
    assert database_file(f"sqlite:///{tmp_path}/x.db") == (tmp_path / "x.db").resolve()
    assert database_file("sqlite://") is None
    assert database_file("postgresql+psycopg://user@host/db") is None


def test_a_read_only_url_reads_the_file_and_creates_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "a night #1.db"  # characters a URI must escape
    url = f"sqlite:///{path}"
    with get_engine(url).begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (a INTEGER)")
        connection.exec_driver_sql("INSERT INTO t VALUES (7)")
    dispose_engines()
    before = sorted(tmp_path.iterdir())

    reader = read_only_url(url)
    with get_engine(reader).connect() as connection:
        assert connection.exec_driver_sql("SELECT a FROM t").scalar_one() == 7
    dispose_engines()

    assert database_file(reader) == database_file(url) == path.resolve()
    assert sorted(tmp_path.iterdir()) == before == [path]


def test_a_read_only_url_refuses_writes(database_url: str) -> None:
    with pytest.raises(OperationalError, match="readonly"), get_engine(read_only_url(database_url)).begin() as c:
        c.exec_driver_sql("DELETE FROM alembic_version")


def test_a_read_only_url_of_a_missing_file_names_it_and_creates_no_folder(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissing, match=r"no database at .*missing/x\.db"):
        read_only_url(f"sqlite:///{tmp_path}/missing/x.db")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://trader:secret@localhost/market", "mysql is not supported"),
        ("mssql+pyodbc://trader:secret@localhost/market", "mssql is not supported"),
    ],
)
def test_an_unsupported_database_is_refused_without_its_password(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as refused:
        resolve_database_url(url)
    assert "secret" not in str(refused.value)


def test_a_database_whose_driver_is_missing_says_what_to_install() -> None:
    with pytest.raises(StorageError, match=r"pip install 'neuraltrade\[postgres\]'") as refused:
        get_engine("postgresql+psycopg2://trader:secret@localhost/market")
    assert "secret" not in str(refused.value)


def test_a_process_that_exits_without_closing_leaves_no_write_ahead_log(tmp_path: Path) -> None:
    # The command line never disposes its engines itself; the write-ahead log must not outlive it.
    database = tmp_path / "exit.db"
    script = (
        "from sqlalchemy import text\n"
        "from models.engine import session_scope\n"
        f"with session_scope('sqlite:///{database}', write=True) as session:\n"
        "    session.execute(text('CREATE TABLE t (x BLOB)'))\n"
        "    session.execute(text('INSERT INTO t VALUES (zeroblob(1000000))'))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])

    assert not database.with_name("exit.db-wal").exists()
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("SELECT length(x) FROM t").fetchall() == [(1_000_000,)]
    finally:
        connection.close()
