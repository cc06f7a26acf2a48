"""Specification of opening a `VectorDB`: the default database, its schema on first open (also by two
processes at once), item ids of several types, and errors that are all `NeuralTradeError`."""

from __future__ import annotations

import multiprocessing
import pickle
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from models.engine import DEFAULT_DATABASE_URL, display_url, dispose_engines, get_engine
from models.migrations import (
    as_database_error,
    current_revision,
    downgrade_database,
    ensure_schema,
    head_revision,
    upgrade_database,
)
from models.vector_store import VectorDB
from neuraltrade.errors import (
    ConfigError,
    DatabaseLocked,
    DatabaseUnavailable,
    IndexFileError,
    InvalidItemId,
    NeuralTradeError,
    StorageError,
)
from neuraltrade.memory.collection import Query
from tasks.retry import is_transient_error
from tests.models.vector_support import DIMENSION, random_vectors
from tests.postgresql import sqlite_only

#: Seconds a worker process may take to start and do its part on a loaded two-core machine.
PATIENCE = 120
#: Fresh databases the two processes open together, one after the other: each is one race.
RACES = 3
AAPL = {"symbol": "AAPL"}


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's stores run on SQLite and on PostgreSQL."""
    return storage_url


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


def fresh_url(folder: Path, name: str = "fresh.db") -> str:
    return f"sqlite:///{folder}/{name}"


def table_names(url: str) -> set[str]:
    with get_engine(url).connect() as connection:
        return set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())


# -- the database and its schema ----------------------------------------------------------------------


def test_a_new_database_named_by_the_environment_gets_the_newest_schema_on_first_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_url(tmp_path)
    monkeypatch.setenv("NEURALTRADE_DB", url)

    with VectorDB(dimension=DIMENSION, index_type="hnsw", quantization="scalar") as db:
        db.insert("first", random_vectors(1)[0], AAPL)
        assert db.database_url == url
        assert db.count() == 1

    assert current_revision(url) == head_revision()


def test_without_an_environment_the_database_is_the_default_file_under_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEURALTRADE_DB", raising=False)
    monkeypatch.chdir(tmp_path)

    with VectorDB(DIMENSION) as db:
        db.insert("first", random_vectors(1)[0], AAPL)
        assert db.database_url == DEFAULT_DATABASE_URL

    assert (tmp_path / "data" / "neuraltrade.db").is_file()


def test_an_empty_database_file_gets_the_newest_schema(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    url = fresh_url(tmp_path, "empty.db")

    VectorDB(DIMENSION, database_url=url).insert("first", random_vectors(1)[0], AAPL)

    assert current_revision(url) == head_revision()


def test_a_database_at_the_newest_revision_is_only_read(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    db.insert("kept", random_vectors(1)[0], AAPL)

    assert ensure_schema(database_url) is False
    assert VectorDB(DIMENSION, database_url=database_url).get("kept") is not None


def test_a_database_at_an_older_revision_is_migrated_to_the_newest_on_open(tmp_path: Path) -> None:
    url = fresh_url(tmp_path)
    upgrade_database(url, "0002")

    VectorDB(DIMENSION, database_url=url).insert("first", random_vectors(1)[0], AAPL)

    assert current_revision(url) == head_revision()


def test_a_database_at_a_revision_this_code_does_not_know_is_refused_naming_it(database_url: str) -> None:
    with get_engine(database_url).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))

    with pytest.raises(StorageError, match="revision '9999_future', which this neuraltrade does not know"):
        VectorDB(DIMENSION, database_url=database_url)


def test_open_of_a_collection_on_a_new_database_is_collection_not_found_not_a_missing_table(tmp_path: Path) -> None:
    with pytest.raises(NeuralTradeError, match="no vector collection is called 'memory'"):
        VectorDB.open("memory", database_url=fresh_url(tmp_path))


def open_insert_and_report(url: str, worker: int, barrier: Any, reports: Any) -> None:
    """Run in a spawned process: wait for the other worker, then open `url`, insert an item and close."""
    try:
        barrier.wait(timeout=PATIENCE)
        with VectorDB(DIMENSION, index_type="hnsw", quantization="scalar", database_url=url) as db:
            db.insert(worker, random_vectors(1, seed=worker)[0], AAPL)
        reports.put((worker, "ok"))
    except BaseException as error:  # every failure is reported: the parent asserts on the reports
        reports.put((worker, f"{type(error).__name__}: {error}"))


def test_two_processes_opening_one_new_database_at_once_both_succeed_and_leave_one_newest_schema(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("spawn")
    for race in range(RACES):
        url = fresh_url(tmp_path, f"race-{race}.db")
        barrier = context.Barrier(2)
        reports = context.Queue()
        workers = [
            context.Process(target=open_insert_and_report, args=(url, worker, barrier, reports)) for worker in (1, 2)
        ]
        for process in workers:
            process.start()
        try:
            outcomes = dict(reports.get(timeout=PATIENCE) for _ in workers)
        finally:
            for process in workers:
                process.join(timeout=PATIENCE)

        assert outcomes == {1: "ok", 2: "ok"}, f"race {race}: {outcomes}"
        assert current_revision(url) == head_revision()
        db = VectorDB(DIMENSION, quantization="scalar", database_url=url)
        assert db.count() == 2
        assert {db.get(1) is not None, db.get("2") is not None} == {True}
        with get_engine(url).connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM collections").scalar_one() == 1
            assert connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar_one() == 1


# -- item ids -----------------------------------------------------------------------------------------


def test_int_and_uuid_ids_name_items_stored_and_returned_as_str(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    vectors = random_vectors(4)
    state = uuid.uuid5(uuid.NAMESPACE_URL, "state-3")

    db.insert(42, vectors[0], AAPL)
    db.insert_many([7, "seven", state], vectors[1:], [AAPL] * 3)
    db.upsert(np.int64(42), vectors[0], {"symbol": "AAPL", "replaced": True})

    for same in (42, "42", np.int64(42)):
        item = db.get(same)
        assert item is not None and item.id == "42" and item.metadata["replaced"] is True
    item = db.get(state)
    assert item is not None and item.id == str(state)
    assert db.get(str(state)) is not None
    results = db.search(Query(vectors[3], k=4))
    assert {result.id for result in results} == {"42", "7", "seven", str(state)}
    assert all(type(result.id) is str for result in results)
    assert db.delete(7) == 1 and db.delete([state, "42"]) == 2
    assert db.count() == 1


def test_an_int_and_its_text_in_one_write_are_the_same_id_twice(database_url: str) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)

    with pytest.raises(ConfigError, match="item id '42' appears twice"):
        db.insert_many([42, "42"], random_vectors(2), [AAPL] * 2)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorDB]:
    yield VectorDB(DIMENSION, partition_key=None, database_url=fresh_url(tmp_path_factory.mktemp("ids")))
    dispose_engines()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=st.integers(min_value=-(2**63), max_value=2**63))
def test_an_item_inserted_as_an_int_is_the_same_item_got_by_the_int_or_its_text(
    shared_store: VectorDB, number: int
) -> None:
    vector = np.random.default_rng(abs(number) % 2**32).standard_normal(DIMENSION).astype(np.float32)
    shared_store.upsert(number, vector, {"number": str(number)})

    by_int, by_text = shared_store.get(number), shared_store.get(str(number))

    assert by_int is not None and by_text is not None
    assert by_int.id == by_text.id == str(number)
    assert by_int.metadata == by_text.metadata == {"number": str(number)}
    np.testing.assert_array_equal(by_int.vector, by_text.vector)
    np.testing.assert_array_equal(by_int.vector, vector)


CALLS: dict[str, Callable[[VectorDB, Any], object]] = {
    "insert": lambda db, key: db.insert(key, np.ones(DIMENSION), AAPL),
    "upsert": lambda db, key: db.upsert(key, np.ones(DIMENSION), AAPL),
    "insert_many": lambda db, key: db.insert_many([key], np.ones((1, DIMENSION)), [AAPL]),
    "upsert_many": lambda db, key: db.upsert_many([key], np.ones((1, DIMENSION)), [AAPL]),
    "delete": lambda db, key: db.delete(key),
    "delete_many": lambda db, key: db.delete(["fine", key]),
    "get": lambda db, key: db.get(key),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("key", [4.2, b"AAPL", None, True, ""], ids=["float", "bytes", "none", "bool", "empty"])
def test_every_method_refuses_an_id_that_is_not_a_str_int_or_uuid_naming_it_and_its_type(
    database_url: str, call: str, key: object
) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)

    with pytest.raises(InvalidItemId) as raised:
        CALLS[call](db, key)

    assert repr(key) in str(raised.value)
    assert f"of type {type(key).__name__}" in str(raised.value)
    assert db.count() == 0


# -- errors of the database itself ----------------------------------------------------------------------


def assert_names_the_database(error: BaseException, url: str) -> None:
    message = str(error)
    assert isinstance(error, DatabaseUnavailable)
    assert message.startswith(f"database {display_url(url)}: ")
    assert "\n" not in message


def test_a_missing_folder_of_the_database_is_created(tmp_path: Path) -> None:
    url = fresh_url(tmp_path / "not" / "yet")

    VectorDB(DIMENSION, database_url=url).insert("first", random_vectors(1)[0], AAPL)

    assert (tmp_path / "not" / "yet" / "fresh.db").is_file()


def test_a_folder_that_cannot_be_created_is_database_unavailable_naming_the_url(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    url = fresh_url(tmp_path / "a-file" / "data")

    with pytest.raises(DatabaseUnavailable) as raised:
        VectorDB(DIMENSION, database_url=url)

    assert_names_the_database(raised.value, url)
    assert "cannot create the folder" in str(raised.value)


def test_a_file_that_is_not_a_database_is_database_unavailable_naming_the_url_and_the_cause(tmp_path: Path) -> None:
    (tmp_path / "corrupt.db").write_bytes(b"this is not a SQLite database " * 1_000)
    url = fresh_url(tmp_path, "corrupt.db")

    with pytest.raises(DatabaseUnavailable) as raised:
        VectorDB(DIMENSION, database_url=url)

    assert_names_the_database(raised.value, url)
    assert "not a database" in str(raised.value)


def test_a_schema_removed_under_an_open_store_is_database_unavailable_on_every_read_and_write(
    database_url: str,
) -> None:
    db = VectorDB(DIMENSION, database_url=database_url)
    db.insert("first", random_vectors(1)[0], AAPL)
    downgrade_database(database_url, "base")

    for read_or_write in (
        lambda: db.get("first"),
        lambda: db.count(),
        lambda: db.search(Query(random_vectors(1)[0], k=3)),
        lambda: db.insert("second", random_vectors(1)[0], AAPL),
        lambda: db.delete("first"),
    ):
        with pytest.raises(DatabaseUnavailable, match=r"no such table|does not exist") as raised:
            read_or_write()
        assert_names_the_database(raised.value, database_url)


@sqlite_only
def test_an_index_file_that_cannot_be_written_is_an_index_file_error_and_the_store_still_closes(
    database_url: str,
) -> None:
    db = VectorDB(DIMENSION, index_type="hnsw", database_url=database_url)
    db.insert("first", random_vectors(1)[0], AAPL)
    assert db.index_file is not None
    db.index_file.parent.write_text("a file where the index folder belongs")

    with pytest.raises(IndexFileError, match="cannot be written"):
        db.close()

    assert db.index_size is None


@sqlite_only
def test_a_database_locked_by_another_writer_is_database_locked_which_retries_know_as_transient(
    database_url: str, tmp_path: Path
) -> None:
    import sqlean

    path = str(tmp_path / "t.db")
    holder = sqlean.connect(path, isolation_level=None)
    waiter = sqlean.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlean.OperationalError) as raised:
            waiter.execute("BEGIN IMMEDIATE")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        waiter.close()

    translated = as_database_error(database_url, raised.value)

    assert isinstance(translated, DatabaseLocked)
    assert_names_the_database(translated, database_url)
    assert "database is locked" in str(translated)
    assert is_transient_error(translated)
    assert not is_transient_error(DatabaseUnavailable(database_url, "OperationalError: no such table: collections"))
    copied = pickle.loads(pickle.dumps(translated))
    assert type(copied) is DatabaseLocked and str(copied) == str(translated)


def test_a_postgresql_writer_waits_for_the_write_lock_and_past_its_timeout_is_database_locked(
    postgresql_url: str,
) -> None:
    from sqlalchemy.exc import OperationalError

    from models.engine import create_database_engine

    upgrade_database(postgresql_url)
    holder = create_database_engine(postgresql_url).execution_options(immediate=True)
    waiter = create_database_engine(postgresql_url, busy_timeout_seconds=0.2).execution_options(immediate=True)
    try:
        with holder.begin():
            started = time.perf_counter()
            with pytest.raises(OperationalError) as raised, waiter.begin():
                pass
            waited = time.perf_counter() - started
        with waiter.begin():  # free again once the holder's transaction ended
            pass
    finally:
        holder.engine.dispose()
        waiter.engine.dispose()

    translated = as_database_error(postgresql_url, raised.value)

    assert waited >= 0.2
    assert isinstance(translated, DatabaseLocked)
    assert "lock timeout" in str(translated)
    assert_names_the_database(translated, postgresql_url)
    assert is_transient_error(translated)
