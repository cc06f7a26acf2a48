"""Engines and sessions: one shared engine per database URL, set up as its kind of database needs.

The embedded default is one SQLite file (`models.dialects.sqlite`: sqlean, sqlite-vec, WAL, a busy
timeout, foreign keys and 16 KiB pages on every connection). Any other URL of a supported kind
(``postgresql+psycopg://...``) is passed to SQLAlchemy as its dialect's components say.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from models.dialects import DIALECTS, all_dialects, dialect_for
from models.kill_points import kill_point
from neuraltrade.errors import StorageError

DATABASE_ENVIRONMENT_VARIABLE = "NEURALTRADE_DB"
DEFAULT_DATABASE_URL = "sqlite:///data/neuraltrade.db"
#: The kinds of database the models run on (PostgreSQL through the `postgres` extra).
SUPPORTED_BACKENDS = tuple(DIALECTS)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def resolve_database_url(database_url: str | None = None) -> str:
    """Return `database_url`, else ``$NEURALTRADE_DB``, else the default file under ``./data/``.

    Raises
    ------
    StorageError
        If the URL is malformed or names a database kind neuraltrade does not run on.
    """
    url = database_url or os.environ.get(DATABASE_ENVIRONMENT_VARIABLE) or DEFAULT_DATABASE_URL
    # A URL nobody typed on the command line is named with where it came from.
    source = f" (from ${DATABASE_ENVIRONMENT_VARIABLE})" if not database_url and url != DEFAULT_DATABASE_URL else ""
    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError) as error:  # ValueError: a port that is no number, as in x://h:port/
        raise StorageError(f"database URL {url!r}{source} is not a SQLAlchemy URL: {error}") from error
    if backend not in SUPPORTED_BACKENDS:
        raise StorageError(
            f"database URL {display_url(url)!r}{source}: {backend} is not supported; use a SQLite file "
            "(sqlite:///path/to/file.db) or PostgreSQL (postgresql+psycopg://user@host/name, "
            "pip install 'neuraltrade[postgres]')"
        )
    return url


def display_url(database_url: str) -> str:
    """Return `database_url` as it may be shown: its password hidden."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return database_url


def server_database_folder(database_url: str) -> str:
    """Return a folder name of its own for a server database's local files (HNSW index files,
    checkpoints): its name and a digest of its URL without the password, so that databases of one
    name on two servers do not share a folder."""
    shown = display_url(database_url)
    digest = hashlib.sha256(shown.encode("utf-8")).hexdigest()[:16]
    try:
        name = make_url(database_url).database or "database"
    except (ArgumentError, ValueError):
        name = "database"
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{digest}"


def database_file(database_url: str) -> Path | None:
    """Return the file of a SQLite `database_url` (also of a ``file:`` URI, as `read_only_url` writes
    it), or None for an in-memory or non-SQLite database."""
    return dialect_for(database_url).database_file(database_url)


def read_only_url(database_url: str | None = None) -> str:
    """Return a URL that reads the database of `database_url` without creating or changing any file.

    A SQLite file is opened through a read-only URI (`models.dialects.sqlite`); other databases are
    returned unchanged.

    Raises
    ------
    DatabaseMissing
        If the SQLite file does not exist.
    """
    url = resolve_database_url(database_url)
    return dialect_for(url).read_only_url(url)


def interrupt_statements() -> int:
    """Abort the statement each open connection of this process is running; return how many.

    Safe from any thread: a worker thread in a long write gets an "interrupted" error, its transaction
    rolls back and its write lock is free. A connection between statements is not affected.
    """
    return sum(components.interrupt_statements() for components in all_dialects())


def create_database_engine(database_url: str, *, busy_timeout_seconds: float | None = None) -> Engine:
    """Return a new engine for `database_url`, set up as its kind of database needs.

    `busy_timeout_seconds` replaces SQLite's default wait for a locked database.

    Raises
    ------
    StorageError
        If the URL is malformed, its driver is not installed, or the folder of a SQLite file cannot be
        created.
    """
    url = make_url(resolve_database_url(database_url))
    return dialect_for(url).create_engine(url, busy_timeout_seconds=busy_timeout_seconds)


def get_engine(database_url: str | None = None) -> Engine:
    """Return this process's shared engine for `database_url` (created on first use)."""
    url = resolve_database_url(database_url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_database_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every shared engine (tests and forked workers call this)."""
    with _engines_lock:
        for url, engine in _engines.items():
            dialect_for(url).release(engine)
            engine.dispose()
        _engines.clear()


# A process that leaves without closing its connections leaves its SQLite write-ahead log behind, as large
# as its largest transaction (145 MB after embedding 45,000 bars): closing the last connection checkpoints
# it into the database file and removes it, so a finished command leaves one file.
atexit.register(dispose_engines)


@contextmanager
def session_scope(database_url: str | None = None, *, write: bool = False) -> Iterator[Session]:
    """Yield a session that commits when the block succeeds and rolls back when it raises.

    A `write` session on SQLite begins with the write lock held (``BEGIN IMMEDIATE``).
    """
    engine = get_engine(database_url)
    bind = engine.execution_options(immediate=True) if write else engine
    factory = sessionmaker(bind=bind, expire_on_commit=False)
    session = factory()
    try:
        yield session
        if write:
            session.flush()
            kill_point("before_commit")
        session.commit()
        if write:
            kill_point("commit")
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
