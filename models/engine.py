"""Engines and sessions: the extension-loading SQLite driver with sqlite-vec, or any SQLAlchemy URL.

The embedded default is one SQLite file opened through ``sqlean`` (the stdlib ``sqlite3`` here cannot
load extensions), with sqlite-vec loaded, WAL, a busy timeout, foreign keys and 16 KiB pages on every
connection. Any other URL (``postgresql+psycopg://...``) is passed to SQLAlchemy unchanged.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from neuraltrade.errors import DatabaseMissing, StorageError

DATABASE_ENVIRONMENT_VARIABLE = "NEURALTRADE_DB"
DEFAULT_DATABASE_URL = "sqlite:///data/neuraltrade.db"
#: The kinds of database the models run on (PostgreSQL through the `postgres` extra).
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
BUSY_TIMEOUT_MILLISECONDS = 30_000
PAGE_SIZE_BYTES = 16_384
#: Page-cache ceiling in KiB (negative: KiB, per SQLite). sqlite-vec writes 2 MiB chunk blobs; with the
#: default 2 MiB cache, inserts spread over several partitions thrash it (measured: 8,157 vs 44,448
#: inserts/s of 512-d vectors over 10 symbols, see docs/benchmarks.md).
CACHE_SIZE_KIB = 262_144
#: Size the WAL file is cut back to after a checkpoint. Without it SQLite keeps the file at its largest:
#: embedding 50,000 vectors with two threads left an 837 MiB WAL beside a 262 MiB database.
JOURNAL_SIZE_LIMIT_BYTES = 64 * 2**20

#: Pause between attempts to switch a new file to WAL while another process holds it.
WAL_RETRY_SECONDS = 0.02

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
#: Every open SQLite driver connection of this process, by id (they take no weak references), so that an
#: interrupted command can abort the statements its worker threads are running (`interrupt_statements`).
_open_connections: dict[int, Any] = {}


def resolve_database_url(database_url: str | None = None) -> str:
    """Return `database_url`, else ``$NEURALTRADE_DB``, else the default file under ``./data/``.

    Raises
    ------
    StorageError
        If the URL is malformed or names a database kind neuraltrade does not run on.
    """
    url = database_url or os.environ.get(DATABASE_ENVIRONMENT_VARIABLE) or DEFAULT_DATABASE_URL
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as error:
        raise StorageError(f"database URL {url!r} is not a SQLAlchemy URL: {error}") from error
    if backend not in SUPPORTED_BACKENDS:
        raise StorageError(
            f"database URL {display_url(url)!r}: {backend} is not supported; use a SQLite file "
            "(sqlite:///path/to/file.db) or PostgreSQL (postgresql+psycopg://user@host/name, "
            "pip install 'neuraltrade[postgres]')"
        )
    return url


def display_url(database_url: str) -> str:
    """Return `database_url` as it may be shown: its password hidden."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return database_url


def database_file(database_url: str) -> Path | None:
    """Return the file of a SQLite `database_url` (also of a ``file:`` URI, as `read_only_url` writes
    it), or None for an in-memory or non-SQLite database."""
    parsed = make_url(database_url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        location = unquote(database.removeprefix("file:").split("?", 1)[0])
        return None if not location or location == ":memory:" else Path(location).resolve()
    return Path(database).expanduser().resolve()


def read_only_url(database_url: str | None = None) -> str:
    """Return a URL that reads the database of `database_url` without creating or changing any file.

    A SQLite file is opened through a read-only URI. When its write-ahead log is absent (the database
    was closed cleanly) or the file cannot be written (a read-only mount), it is also opened as
    *immutable*: SQLite then creates no ``-wal``/``-shm`` file beside it, which a read-only reader of a
    WAL database otherwise would. Other databases are returned unchanged.

    Raises
    ------
    DatabaseMissing
        If the SQLite file does not exist.
    """
    url = resolve_database_url(database_url)
    parsed = make_url(url)
    path = database_file(url)
    if path is None or (parsed.database or "").startswith("file:"):
        return url
    if not path.is_file():
        raise DatabaseMissing(display_url(url), str(path))
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    immutable = not writable or not Path(f"{path}-wal").exists()
    options = "mode=ro" + ("&immutable=1" if immutable else "")
    return str(parsed.set(database=f"file:{quote(str(path))}?{options}", query={"uri": "true"}))


def is_sqlite(database_url: str) -> bool:
    """Return whether `database_url` names a SQLite database."""
    return make_url(database_url).get_backend_name() == "sqlite"


def _configure_sqlite_connection(
    dbapi_connection: Any,
    _record: Any,
    *,
    busy_timeout_milliseconds: int = BUSY_TIMEOUT_MILLISECONDS,
    read_only: bool = False,
) -> None:
    _load_sqlite_vec(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_milliseconds}")
    cursor.execute(f"PRAGMA cache_size = -{CACHE_SIZE_KIB}")
    if not read_only:
        # Journal, page and size settings are writes: a read-only connection takes the file as it is.
        # page_size only takes effect on a new, empty file, before WAL is switched on.
        cursor.execute(f"PRAGMA page_size = {PAGE_SIZE_BYTES}")
        _switch_to_wal(cursor, busy_timeout_milliseconds / 1000)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
        cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()
    # Let SQLAlchemy, not the driver, decide when transactions begin (enables SAVEPOINT and
    # makes BEGIN explicit).
    dbapi_connection.isolation_level = None


def _switch_to_wal(cursor: Any, patience_seconds: float) -> None:
    # Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is locked" at
    # once, without its busy handler, while another process does the same on the same new file (two
    # processes opening one new database). Retry until the busy timeout, as any other statement would.
    deadline = time.monotonic() + patience_seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_SECONDS)


def _remember_connection(dbapi_connection: Any, _record: Any) -> None:
    _open_connections[id(dbapi_connection)] = dbapi_connection


def _forget_connection(dbapi_connection: Any, _record: Any = None) -> None:
    _open_connections.pop(id(dbapi_connection), None)


def interrupt_statements() -> int:
    """Abort the statement each open SQLite connection of this process is running; return how many.

    Safe from any thread (SQLite's ``interrupt``): a worker thread in a long write gets an
    "interrupted" error, its transaction rolls back and its write lock is free. A connection between
    statements is not affected.
    """
    connections = list(_open_connections.values())
    for connection in connections:
        try:
            connection.interrupt()
        except Exception:  # a connection closed meanwhile
            _forget_connection(connection)
    return len(connections)


def _load_sqlite_vec(dbapi_connection: Any) -> None:
    import sqlite_vec

    dbapi_connection.enable_load_extension(True)
    sqlite_vec.load(dbapi_connection)
    dbapi_connection.enable_load_extension(False)


def _begin_sqlite_transaction(connection: Any) -> None:
    # A writer takes the write lock when it begins, so two writers queue on the busy timeout instead
    # of failing when a read transaction cannot be upgraded.
    immediate = connection.get_execution_options().get("immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_database_engine(database_url: str, *, busy_timeout_seconds: float | None = None) -> Engine:
    """Return a new engine for `database_url`; SQLite files get sqlean, sqlite-vec and pragmas.

    `busy_timeout_seconds` replaces SQLite's default wait for a locked database
    (`BUSY_TIMEOUT_MILLISECONDS`).

    Raises
    ------
    StorageError
        If the URL is malformed, its driver is not installed, or the folder of a SQLite file cannot be
        created.
    """
    url = make_url(resolve_database_url(database_url))
    if url.get_backend_name() != "sqlite":
        try:
            return create_engine(url, pool_pre_ping=True)
        except (ImportError, NoSuchModuleError) as error:
            raise StorageError(
                f"database URL {display_url(str(url))!r} needs a driver that is not installed ({error}); "
                "for PostgreSQL: pip install 'neuraltrade[postgres]' and write postgresql+psycopg://..."
            ) from error
    import sqlean

    database = url.database or ""
    read_only = database.startswith("file:") and "mode=ro" in database
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create the folder of database {database!r}: {error}") from error
    milliseconds = BUSY_TIMEOUT_MILLISECONDS if busy_timeout_seconds is None else round(busy_timeout_seconds * 1000)
    engine = create_engine(url, module=sqlean, connect_args={"timeout": milliseconds / 1000})
    configure = functools.partial(
        _configure_sqlite_connection, busy_timeout_milliseconds=milliseconds, read_only=read_only
    )
    event.listen(engine, "connect", configure)
    event.listen(engine, "connect", _remember_connection)
    event.listen(engine, "close", _forget_connection)
    event.listen(engine, "close_detached", _forget_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


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
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


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
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
