"""Specification of engines and sessions (`models.engine`)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from models.engine import (
    BUSY_TIMEOUT_MILLISECONDS,
    DATABASE_ENVIRONMENT_VARIABLE,
    DEFAULT_DATABASE_URL,
    PAGE_SIZE_BYTES,
    get_engine,
    is_sqlite,
    resolve_database_url,
    session_scope,
)
from neuraltrade.errors import StorageError


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


def test_sqlite_urls_are_told_apart_from_others() -> None:
    assert is_sqlite("sqlite:///x.db")
    assert is_sqlite("sqlite://")
    assert not is_sqlite("postgresql+psycopg://user@host/db")
