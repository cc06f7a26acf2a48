"""PostgreSQL (the `postgres` extra): a server the URL names, its advisory locks and its JSON functions.

Vector collections are stored with pgvector (`models.dialects.pgvector`). A write session takes one
transaction-scoped advisory lock when it begins, as a SQLite writer takes the write lock with BEGIN
IMMEDIATE: writers of item rows number them from the largest stored sequence
(`models.memory_items.next_sequence`), which is only safe one writer at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Connection, Engine, Table, event, text
from sqlalchemy import create_engine as sqlalchemy_engine
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import NoSuchModuleError

from models.dialects.base import DialectComponents
from neuraltrade.errors import StorageError

if TYPE_CHECKING:
    from models.vector_backend import VectorBackend

#: The advisory lock migrations hold (any fixed 64-bit number that nothing else uses).
SCHEMA_LOCK = 0x6E74_7363_6865_6D61
#: How long a statement waits for a lock (a writer for the write lock) before it fails as locked.
BUSY_TIMEOUT_SECONDS = 30.0
#: The advisory lock every write session holds until it ends (another fixed number).
WRITE_LOCK = 0x6E74_7772_6974_6572


class PostgresqlComponents(DialectComponents):
    """PostgreSQL through psycopg."""

    name: ClassVar[str] = "postgresql"
    json_kind_names: ClassVar[Mapping[type, tuple[str, ...]]] = {
        str: ("string",),
        float: ("number",),
        bool: ("boolean",),
    }
    locked_messages: ClassVar[tuple[str, ...]] = ("lock timeout",)
    connection_lost_messages: ClassVar[tuple[str, ...]] = (
        "could not connect",
        "connection reset",
        "connection refused",
        # The socket file of a local server that is down or restarting (after a crash, until it is back).
        "failed: no such file or directory",
        "server closed the connection",
        "terminating connection",
        "the database system is starting up",
        "the database system is in recovery mode",
    )

    def create_engine(self, url: URL, *, busy_timeout_seconds: float | None = None) -> Engine:
        # A lock waited for longer than SQLite's busy timeout fails the same way: a locked database.
        seconds = BUSY_TIMEOUT_SECONDS if busy_timeout_seconds is None else busy_timeout_seconds
        options = {"options": f"-c lock_timeout={max(1, round(seconds * 1000))}"}
        try:
            engine = sqlalchemy_engine(url, pool_pre_ping=True, connect_args=options)
        except (ImportError, NoSuchModuleError) as error:
            raise StorageError(
                f"database URL {url.render_as_string(hide_password=True)!r} needs a driver that is not installed "
                f"({error}); for PostgreSQL: pip install 'neuraltrade[postgres]' and write postgresql+psycopg://..."
            ) from error
        event.listen(engine, "begin", _begin_transaction)
        event.listen(engine.pool, "checkout", _register_vector_types)
        event.listen(engine.pool, "checkin", _end_autocommit)
        return engine

    def prepare_reader(self, driver_connection: Any) -> None:
        """The hot reader's connection runs each read as its own transaction: a connection left idle in
        an open transaction would hold its tables' locks against every migration and DROP. (It goes
        back to the pool, when its thread ends, as it came: `_end_autocommit`.)"""
        driver_connection.autocommit = True
        from models.dialects.pgvector import register_types

        register_types(driver_connection)

    backup_file: ClassVar[str] = "database.pgdump"

    def dump(self, database_url: str, target: Path) -> str:
        # The rows are counted on the server, apart from pg_dump's snapshot: a write between the two
        # makes the restore's count check refuse the backup (pg_dump --snapshot would close the gap).
        _run_tool("pg_dump", ["--format=custom", "--no-owner", f"--file={target}"], database_url)
        return database_url

    def load(self, source: Path, database_url: str) -> None:
        name = make_url(database_url).database or ""
        _run_tool("pg_restore", ["--no-owner", "--exit-on-error", f"--dbname={name}", str(source)], database_url)

    def vector_backend(self) -> VectorBackend:
        from models.dialects.pgvector import PGVECTOR

        return PGVECTOR

    def insert(self, table: Table) -> Any:
        return postgresql.insert(table)

    def lock_schema(self, connection: Connection) -> None:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})

    def render_json_kind(self, compiler: Any, column: Any, path: Any, key: Any, **options: Any) -> str:
        return f"json_typeof(({compiler.process(column, **options)})::json -> {compiler.process(key, **options)})"


def _begin_transaction(connection: Connection) -> None:
    # A writer takes the write lock when it begins (see the module's docstring); a second writer waits.
    if connection.get_execution_options().get("immediate", False):
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")


def _register_vector_types(driver_connection: Any, _record: Any, _proxy: Any) -> None:
    # pgvector's types have an id of their own in each database, known once its extension exists: a
    # connection opened before the first collection was created registers them at a later checkout.
    from models.dialects.pgvector import register_types

    register_types(driver_connection)


def _end_autocommit(driver_connection: Any, _record: Any) -> None:
    # A pooled connection must begin transactions again: savepoints and the write lock need one.
    if driver_connection is not None and driver_connection.autocommit:
        driver_connection.autocommit = False


#: The folder of PostgreSQL's client tools (pg_dump, pg_restore); else they are found on the PATH.
PG_BIN_VARIABLE = "NEURALTRADE_PG_BIN"


def _run_tool(name: str, arguments: list[str], database_url: str) -> None:
    folder = os.environ.get(PG_BIN_VARIABLE)
    program = str(Path(folder) / name) if folder else shutil.which(name)
    # os.path.exists, not Path.exists: a name too long for the file system is no tool, not an OSError.
    if program is None or not os.path.exists(program):
        raise StorageError(f"{name} is not installed (or set {PG_BIN_VARIABLE} to the folder that holds it)")
    url = make_url(database_url)
    environment = {**os.environ, "PGDATABASE": url.database or ""}
    for variable, value in (("PGUSER", url.username), ("PGPASSWORD", url.password), ("PGPORT", url.port)):
        if value is not None:
            environment[variable] = str(value)
    host = url.host or url.query.get("host")
    if host:
        environment["PGHOST"] = str(host if isinstance(host, str) else host[0])
    try:
        finished = subprocess.run([program, *arguments], env=environment, capture_output=True, text=True, check=False)
    except OSError as error:  # not executable, or a folder of that name
        raise StorageError(
            f"{name} at {program} cannot be run ({error.strerror or error}); set {PG_BIN_VARIABLE} to the folder "
            "that holds it"
        ) from error
    if finished.returncode != 0:
        last = (finished.stderr.strip().splitlines() or ["no message"])[-1]
        shown = url.render_as_string(hide_password=True)
        raise StorageError(f"{name} of {shown} failed: {last}")
