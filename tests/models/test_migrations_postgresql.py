"""The schema migrations on a real PostgreSQL (issue 14, point 1): every revision up and down.

The server is the session's (`tests.postgresql`); each test gets a fresh database. SQLite's own checks of
the same migrations are in test_migrations.py.
"""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import models.tables  # noqa: F401  (registers every table on the metadata)
from alembic import command
from models.base import Base
from models.engine import get_engine
from models.migrations import alembic_config, current_revision, downgrade_database, head_revision, upgrade_database

ALEMBIC_TABLE = "alembic_version"


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def tables(url: str) -> set[str]:
    with get_engine(url).connect() as connection:
        return set(inspect(connection).get_table_names())


def test_upgrading_an_empty_database_creates_every_table_of_the_metadata_without_drift(postgresql_url: str) -> None:
    assert current_revision(postgresql_url) is None

    upgrade_database(postgresql_url)

    assert current_revision(postgresql_url) == head_revision()
    assert tables(postgresql_url) == {*Base.metadata.tables, ALEMBIC_TABLE}
    # `alembic check` compares the migrated schema with the models and raises on any difference.
    command.check(alembic_config(postgresql_url))


def test_every_revision_goes_down_and_up_again(postgresql_url: str) -> None:
    upgrade_database(postgresql_url)
    every = revisions()
    assert len(every) >= 8 and every[-1] == head_revision()
    for revision in reversed(["base", *every[:-1]]):
        downgrade_database(postgresql_url, revision)
        assert current_revision(postgresql_url) == (None if revision == "base" else revision)
    assert tables(postgresql_url) == {ALEMBIC_TABLE}

    upgrade_database(postgresql_url)

    assert tables(postgresql_url) == {*Base.metadata.tables, ALEMBIC_TABLE}
    command.check(alembic_config(postgresql_url))


def test_revision_0007_refuses_to_drop_stored_vectors_it_has_nowhere_to_put(postgresql_url: str) -> None:
    upgrade_database(postgresql_url, "0006")
    with get_engine(postgresql_url).begin() as connection:
        # Not a state this code ever wrote (no vector backend has stored anything on PostgreSQL), but one
        # row is enough to show that nothing is dropped silently.
        connection.exec_driver_sql("ALTER TABLE memory_vectors DROP CONSTRAINT fk_memory_vectors_id_memory_items")
        connection.exec_driver_sql("INSERT INTO memory_vectors (id, vector) VALUES (7, '\\x00')")

    with pytest.raises(RuntimeError, match="memory_vectors holds 1 vectors"):
        upgrade_database(postgresql_url)

    assert current_revision(postgresql_url) == "0006"
    with get_engine(postgresql_url).connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM memory_vectors").scalar_one() == 1
