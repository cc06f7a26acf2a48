"""SQLite: one file opened through sqlean with sqlite-vec loaded, WAL, a busy timeout and 16 KiB pages.

The stdlib ``sqlite3`` here cannot load extensions, so every connection goes through ``sqlean``. Every
PRAGMA, the write lock taken at BEGIN, the read-only URI form, VACUUM and ``PRAGMA optimize`` live here;
the vector tables (sqlite-vec's ``vec0``) live in `models.dialects.sqlite_vec`.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, unquote

from sqlalchemy import Connection, Engine, Integer, Table, event
from sqlalchemy import create_engine as sqlalchemy_engine
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.types import TypeEngine

from models.dialects.base import DialectComponents
from neuraltrade.errors import DatabaseMissing, StorageError

if TYPE_CHECKING:
    from models.vector_backend import VectorBackend

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

logger = logging.getLogger(__name__)

#: The background checkpointer of every SQLite engine of this process, by the engine's id.
_checkpointers: dict[int, Checkpointer] = {}

#: Every open SQLite driver connection of this process, by id (they take no weak references), so that an
#: interrupted command can abort the statements its worker threads are running (`interrupt_statements`).
_open_connections: dict[int, Any] = {}


class SqliteComponents(DialectComponents):
    """SQLite through sqlean, with sqlite-vec loaded on every connection."""

    name: ClassVar[str] = "sqlite"
    json_kind_names: ClassVar[Mapping[type, tuple[str, ...]]] = {
        str: ("text",),
        float: ("integer", "real"),
        bool: ("true", "false"),
    }
    # Only a column declared exactly INTEGER PRIMARY KEY is the rowid; a BIGINT one is a second index.
    row_id_type: ClassVar[TypeEngine[Any] | None] = Integer()
    batch_migrations: ClassVar[bool] = True
    compactable: ClassVar[bool] = True
    locked_messages: ClassVar[tuple[str, ...]] = ("database is locked", "database is busy")

    def create_engine(self, url: URL, *, busy_timeout_seconds: float | None = None) -> Engine:
        import sqlean

        database = url.database or ""
        read_only = database.startswith("file:") and "mode=ro" in database
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StorageError(f"cannot create the folder of database {database!r}: {error}") from error
        milliseconds = BUSY_TIMEOUT_MILLISECONDS if busy_timeout_seconds is None else round(busy_timeout_seconds * 1000)
        engine = sqlalchemy_engine(url, module=sqlean, connect_args={"timeout": milliseconds / 1000})
        configure = functools.partial(
            _configure_connection, busy_timeout_milliseconds=milliseconds, read_only=read_only
        )
        event.listen(engine, "connect", configure)
        event.listen(engine, "connect", _remember_connection)
        event.listen(engine, "close", _forget_connection)
        event.listen(engine, "close_detached", _forget_connection)
        event.listen(engine, "begin", _begin_transaction)
        if not read_only and database and database != ":memory:":
            checkpointer = _checkpointers[id(engine)] = Checkpointer(engine)
            event.listen(engine, "commit", checkpointer.committed)
        return engine

    def release(self, engine: Engine) -> None:
        """Stop the engine's background checkpointer (before the engine is disposed)."""
        checkpointer = _checkpointers.pop(id(engine), None)
        if checkpointer is not None:
            checkpointer.stop()

    def insert(self, table: Table) -> Any:
        return sqlite.insert(table)

    def lock_schema(self, connection: Connection) -> None:
        # Nothing to add: a connection flagged `immediate` began with BEGIN IMMEDIATE, the write lock
        # (`_begin_transaction`); a second migrator waits on the busy timeout.
        return None

    def render_json_kind(self, compiler: Any, column: Any, path: Any, key: Any, **options: Any) -> str:
        return f"json_type({compiler.process(column, **options)}, {compiler.process(path, **options)})"

    def database_file(self, database_url: str) -> Path | None:
        # Also the file of a ``file:`` URI, as `read_only_url` writes it.
        database = make_url(database_url).database or ""
        if not database or database == ":memory:":
            return None
        if database.startswith("file:"):
            location = unquote(database.removeprefix("file:").split("?", 1)[0])
            return None if not location or location == ":memory:" else Path(location).resolve()
        return Path(database).expanduser().resolve()

    def read_only_url(self, database_url: str) -> str:
        """Return a read-only URI of the file; also *immutable* when no write-ahead log is beside it (the
        database was closed cleanly) or the file cannot be written (a read-only mount): SQLite then creates
        no ``-wal``/``-shm`` file, which a read-only reader of a WAL database otherwise would.

        Raises
        ------
        DatabaseMissing
            If the file does not exist.
        """
        parsed = make_url(database_url)
        path = self.database_file(database_url)
        if path is None or (parsed.database or "").startswith("file:"):
            return database_url
        if not path.is_file():
            raise DatabaseMissing(parsed.render_as_string(hide_password=True), str(path))
        writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
        immutable = not writable or not Path(f"{path}-wal").exists()
        options = "mode=ro" + ("&immutable=1" if immutable else "")
        return str(parsed.set(database=f"file:{quote(str(path))}?{options}", query={"uri": "true"}))

    def interrupt_statements(self) -> int:
        """Safe from any thread (SQLite's ``interrupt``): a worker thread in a long write gets an
        "interrupted" error, its transaction rolls back and its write lock is free. A connection between
        statements is not affected."""
        connections = list(_open_connections.values())
        for connection in connections:
            try:
                connection.interrupt()
            except Exception:  # a connection closed meanwhile
                _forget_connection(connection)
        return len(connections)

    def free_page_ratio(self, connection: Connection) -> float:
        pages = int(connection.exec_driver_sql("PRAGMA page_count").scalar_one())
        free = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar_one())
        return free / pages if pages else 0.0

    def vacuum(self, engine: Engine) -> tuple[int, int]:
        """VACUUM the file and truncate its write-ahead log."""
        return _outside_transaction(engine, ("VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"))

    def optimize(self, engine: Engine) -> tuple[int, int]:
        """Run ``PRAGMA optimize``, which refreshes the planner's statistics where they are stale."""
        return _outside_transaction(engine, ("PRAGMA optimize",))

    backup_file: ClassVar[str] = "database.sqlite"

    def dump(self, database_url: str, target: Path) -> str:
        # The copy itself, read only: the source may have been written to since it was taken.
        _sqlite_copy(self._file(database_url), target)
        return self.read_only_url(f"sqlite:///{target}")

    def load(self, source: Path, database_url: str) -> None:
        _sqlite_copy(source, self._file(database_url))

    def _file(self, database_url: str) -> Path:
        path = self.database_file(database_url)
        if path is None:
            raise StorageError(f"database {make_url(database_url).render_as_string(hide_password=True)} is not a file")
        return path

    def vector_backend(self) -> VectorBackend:
        from models.dialects.sqlite_vec import SQLITE_VEC

        return SQLITE_VEC


def _configure_connection(
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
        # The WAL is copied into the database by the engine's `Checkpointer`, off the committing thread.
        cursor.execute("PRAGMA wal_autocheckpoint = 0")
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


class Checkpointer:
    """Copies an engine's write-ahead log into its database in a background thread.

    SQLite's own automatic checkpoint runs inside the commit that fills the WAL past 1,000 pages, so a
    bulk writer paid for copying every page twice: 0.26-0.45 s of each 10,000-vector commit (measured,
    docs/benchmarks.md). Here every committed transaction wakes one thread per engine, which runs a
    PASSIVE checkpoint (it never blocks readers or writers) a moment later. A commit is durable once it
    is in the WAL (synchronous=NORMAL in WAL mode survives a crash of the process); the checkpoint only
    bounds the WAL's size. SQLite checkpoints on closing the last connection as well. Idle, the thread
    sleeps on an event and costs nothing.
    """

    #: Pause after a commit before checkpointing: the commit event fires as the commit starts.
    DELAY_SECONDS = 0.05

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._lock = threading.Lock()
        self._stopped = False

    def committed(self, _connection: Any) -> None:
        """Wake the checkpointing thread (starting it on the first commit of this process: a forked
        child inherits the object but not the thread)."""
        self._wake.set()
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid() and not self._stopped:
                    self._pid = os.getpid()
                    self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
                    self._thread.start()

    def stop(self) -> None:
        """Stop the thread after the checkpoint it may be running."""
        with self._lock:
            self._stopped = True
            thread = self._thread if self._pid == os.getpid() else None
        self._wake.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.DELAY_SECONDS)
            self._wake.clear()
            if self._stopped:
                return
            try:
                connection = self._engine.raw_connection()
                try:
                    connection.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                finally:
                    connection.close()
            except Exception:  # the next commit tries again; the WAL keeps every committed page meanwhile
                logger.debug("background checkpoint of %s failed", self._engine.url, exc_info=True)


def _remember_connection(dbapi_connection: Any, _record: Any) -> None:
    _open_connections[id(dbapi_connection)] = dbapi_connection


def _forget_connection(dbapi_connection: Any, _record: Any = None) -> None:
    _open_connections.pop(id(dbapi_connection), None)


def _load_sqlite_vec(dbapi_connection: Any) -> None:
    import sqlite_vec

    dbapi_connection.enable_load_extension(True)
    sqlite_vec.load(dbapi_connection)
    dbapi_connection.enable_load_extension(False)


def _begin_transaction(connection: Any) -> None:
    # A writer takes the write lock when it begins, so two writers queue on the busy timeout instead
    # of failing when a read transaction cannot be upgraded.
    immediate = connection.get_execution_options().get("immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _outside_transaction(engine: Engine, statements: tuple[str, ...]) -> tuple[int, int]:
    # VACUUM cannot run in a transaction: the driver connection is in autocommit (isolation_level None).
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        before = _file_bytes(cursor)
        for statement in statements:
            cursor.execute(statement)
            cursor.fetchall()
        after = _file_bytes(cursor)
        cursor.close()
    finally:
        raw.close()
    return before, after


def _file_bytes(cursor: Any) -> int:
    pages = cursor.execute("PRAGMA page_count").fetchone()[0]
    size = cursor.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(size)


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy with SQLite's online backup API: a consistent copy even while another process writes."""
    import sqlean

    target.parent.mkdir(parents=True, exist_ok=True)
    reader = sqlean.connect(f"file:{source}?mode=ro", uri=True)
    writer = sqlean.connect(str(target))
    try:
        reader.backup(writer)
        checked = writer.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        writer.close()
        reader.close()
    if checked != "ok":
        raise StorageError(f"the copy of {str(source)!r} fails SQLite's integrity check: {checked}")
