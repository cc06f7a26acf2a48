"""Specification of which task failures are retried (`tasks.retry`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.states import Completed, Failed
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import IntegrityError, OperationalError

from tasks.retry import is_transient, is_transient_error


@pytest.fixture
def impatient_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a real file that gives up at once when another connection holds the write lock."""
    engine = create_engine(f"sqlite:///{tmp_path}/locked.db", connect_args={"timeout": 0})
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE items (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("INSERT INTO items VALUES (1)")
    yield engine
    engine.dispose()


def locked_error(engine: Engine, path: str) -> OperationalError:
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError) as raised, engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO items VALUES (2)")
        return raised.value
    finally:
        holder.close()


def test_a_locked_database_is_transient(impatient_engine: Engine) -> None:
    error = locked_error(impatient_engine, str(impatient_engine.url.database))

    assert "database is locked" in str(error)
    assert is_transient_error(error)


def test_a_broken_constraint_is_not_transient(impatient_engine: Engine) -> None:
    with pytest.raises(IntegrityError) as raised, impatient_engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO items VALUES (1)")

    assert not is_transient_error(raised.value)


def test_an_operational_error_of_another_kind_is_not_transient(impatient_engine: Engine) -> None:
    with pytest.raises(OperationalError) as raised, impatient_engine.begin() as connection:
        connection.exec_driver_sql("SELECT * FROM no_such_table")

    assert not is_transient_error(raised.value)


@pytest.mark.parametrize(
    "error",
    [ValueError("bad value"), KeyError("x"), RuntimeError("database is locked")],
    ids=["value-error", "key-error", "lock-message-outside-the-database"],
)
def test_errors_outside_the_database_are_not_transient(error: Exception) -> None:
    assert not is_transient_error(error)


@pytest.mark.parametrize("error", [ConnectionError("reset"), TimeoutError("slow")], ids=["connection", "timeout"])
def test_network_failures_are_transient(error: Exception) -> None:
    assert is_transient_error(error)


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://neuraltrade@127.0.0.1:1/night", "postgresql+psycopg://neuraltrade@/night?host={folder}"],
    ids=["refused-port", "socket-of-a-server-that-is-down"],
)
def test_a_postgresql_server_that_is_down_or_restarting_is_transient(url: str, tmp_path: Path) -> None:
    """What psycopg says when the server is down, restarting after a crash, or not yet listening: the
    task is retried with backoff instead of failing the night."""
    engine = create_engine(url.format(folder=tmp_path))
    with pytest.raises(OperationalError) as raised:
        engine.connect()
    engine.dispose()

    assert is_transient_error(raised.value), str(raised.value.orig)


def test_prefect_retries_a_task_run_that_failed_on_a_locked_database(impatient_engine: Engine) -> None:
    error = locked_error(impatient_engine, str(impatient_engine.url.database))

    assert is_transient(None, None, Failed(data=error))
    assert not is_transient(None, None, Failed(data=ValueError("bad value")))
    assert not is_transient(None, None, Completed(data=1))
