"""Schema migrations, run programmatically, and the first open of a database.

The CLI, the flows and the tests call `upgrade_database`; `VectorDB` calls `ensure_schema`, which gives a
new or empty database (or one at an older revision) the newest schema when it is first opened, safely
when several processes open it at once. `database_errors` and `guard_database_errors` turn what
SQLAlchemy and the database driver raise into a `DatabaseUnavailable` that names the database.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from alembic import command
from models.dialects import dialect_for, transient_messages
from models.engine import display_url, get_engine, resolve_database_url
from neuraltrade.errors import (
    DatabaseConnectionLost,
    DatabaseLocked,
    DatabaseUnavailable,
    NeuralTradeError,
    StorageError,
)

_PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Driver messages of the transient failures, as each dialect names them (`tasks.retry` reads the same): a
#: database another writer held past the busy timeout, and a server connection that failed or dropped.
_LOCKED_MESSAGES, _CONNECTION_MESSAGES = transient_messages()
#: Methods `guard_database_errors` wraps besides the public ones.
_GUARDED_SPECIAL_METHODS = frozenset({"__init__", "__enter__", "__exit__"})

GuardedClass = TypeVar("GuardedClass", bound=type)


def alembic_config(database_url: str | None = None) -> Config:
    """Return the Alembic configuration of the project, aimed at `database_url`."""
    ini = _PROJECT_ROOT / "alembic.ini"
    if not ini.exists():
        raise StorageError(
            f"migrations not found at {ini}; install neuraltrade from its source tree (pip install -e .)"
        )
    config = Config(str(ini))
    config.set_main_option("script_location", str(_PROJECT_ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", resolve_database_url(database_url).replace("%", "%%"))
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(_PROJECT_ROOT / "alembic"))
    return ScriptDirectory.from_config(config)


def head_revision() -> str:
    """Return the newest schema revision this code knows."""
    head = _scripts().get_current_head()
    if head is None:
        folder = _PROJECT_ROOT / "alembic"
        raise StorageError(f"the migrations folder {folder} holds no revision; reinstall neuraltrade")
    return head


@contextmanager
def _schema_transaction(database_url: str | None) -> Iterator[Connection]:
    # The lock is taken before Alembic reads its version table: the table alone is no lock, since two
    # processes would both read "empty" and both create the tables. Each dialect says how it locks
    # (SQLite: BEGIN IMMEDIATE on a connection flagged `immediate`; PostgreSQL: an advisory lock); a
    # second migrator waits, then finds the schema up to date.
    with get_engine(database_url).execution_options(immediate=True).begin() as connection:
        dialect_for(connection).lock_schema(connection)
        yield connection


def upgrade_database(database_url: str | None = None, revision: str = "head") -> None:
    """Bring the schema of `database_url` up to `revision` (creating the file if needed).

    One transaction holding the database's write lock from its start, so concurrent upgrades run one
    after the other and each later one finds the schema already at `revision`.
    """
    config = alembic_config(database_url)
    with database_errors(resolve_database_url(database_url)), _schema_transaction(database_url) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade_database(database_url: str | None = None, revision: str = "base") -> None:
    """Take the schema of `database_url` down to `revision`."""
    config = alembic_config(database_url)
    with _schema_transaction(database_url) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(database_url: str | None = None) -> str | None:
    """Return the schema revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with database_errors(resolve_database_url(database_url)), get_engine(database_url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(database_url: str | None = None) -> bool:
    """Give the database the newest schema if it has none or an older one; return whether it migrated.

    A database already at the newest revision is only read. Safe when several processes open the same
    new database at once (see `upgrade_database`): one migrates, the others find the schema in place.

    Raises
    ------
    DatabaseUnavailable
        If the database cannot be opened, read or migrated (naming it and the cause).
    StorageError
        If the database is at a revision this code does not know (a newer neuraltrade migrated it).
    """
    url = resolve_database_url(database_url)
    try:
        get_engine(url)
    except StorageError as error:  # e.g. the database's folder cannot be created
        raise DatabaseUnavailable(display_url(url), str(error)) from error
    with database_errors(url):
        current = current_revision(url)
        if current == head_revision():
            return False
        if current is not None and current not in {script.revision for script in _scripts().walk_revisions()}:
            raise StorageError(
                f"database {display_url(url)} is at schema revision {current!r}, which this neuraltrade does not "
                f"know (its newest is {head_revision()!r}); upgrade neuraltrade"
            )
        upgrade_database(url)
    return True


def as_database_error(database_url: str, error: BaseException) -> DatabaseUnavailable | None:
    """Return `error` as a `DatabaseUnavailable` naming the database and the cause on one line, if
    SQLAlchemy or the database driver raised it; None for any other error.

    A database locked past the busy timeout is a `DatabaseLocked` and a failed or dropped server
    connection a `DatabaseConnectionLost`: both may pass when tried again, and say so by their type.
    """
    if isinstance(error, NeuralTradeError):
        return None
    if isinstance(error, DBAPIError):
        cause: BaseException = error.orig if error.orig is not None else error
    elif isinstance(error, SQLAlchemyError) or _is_driver_error(error):
        cause = error
    else:
        return None
    first_line = next(iter(str(cause).strip().splitlines()), "")
    reason = f"{type(cause).__name__}: {first_line}" if first_line else type(cause).__name__
    lowered = first_line.lower()
    if any(fragment in lowered for fragment in _LOCKED_MESSAGES):
        return DatabaseLocked(display_url(database_url), reason)
    invalidated = isinstance(error, DBAPIError) and error.connection_invalidated
    if invalidated or any(fragment in lowered for fragment in _CONNECTION_MESSAGES):
        return DatabaseConnectionLost(display_url(database_url), reason)
    return DatabaseUnavailable(display_url(database_url), reason)


def _is_driver_error(error: BaseException) -> bool:
    # Reads on raw driver connections (the hot reader) raise the driver's own errors. Every DB-API 2
    # module (PEP 249) exposes `paramstyle` and the base class `Error` of all it raises.
    module = sys.modules.get(type(error).__module__.partition(".")[0])
    base = getattr(module, "Error", None)
    return hasattr(module, "paramstyle") and isinstance(base, type) and isinstance(error, base)


@contextmanager
def database_errors(database_url: str) -> Iterator[None]:
    """Re-raise what SQLAlchemy or the driver raises in the block as `DatabaseUnavailable` (others pass)."""
    try:
        yield
    except Exception as error:
        translated = as_database_error(database_url, error)
        if translated is None:
            raise
        raise translated from error


def guard_database_errors(cls: GuardedClass) -> GuardedClass:
    """Make every public method and property of `cls` (and ``__init__``, ``__enter__``, ``__exit__``)
    raise `DatabaseUnavailable` for what SQLAlchemy or the driver raises, naming ``self.database_url``.

    A class decorator, so that no method of the class can be forgotten; class methods guard themselves.
    """
    for name, member in list(vars(cls).items()):
        if name.startswith("_") and name not in _GUARDED_SPECIAL_METHODS:
            continue
        if isinstance(member, property) and member.fget is not None:
            setattr(cls, name, property(_guarded(member.fget), member.fset, member.fdel, member.__doc__))
        elif inspect.isgeneratorfunction(member):
            setattr(cls, name, _guarded_generator(member))
        elif inspect.isfunction(member):
            setattr(cls, name, _guarded(member))
    return cls


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    # A bare try, not `database_errors`: this wraps `search`, whose latency is measured in microseconds.
    @functools.wraps(function)
    def guarded(self: Any, *arguments: Any, **options: Any) -> Any:
        try:
            return function(self, *arguments, **options)
        except Exception as error:
            translated = as_database_error(getattr(self, "database_url", "?"), error)
            if translated is None:
                raise
            raise translated from error

    return guarded


def _guarded_generator(function: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    @functools.wraps(function)
    def guarded(self: Any, *arguments: Any, **options: Any) -> Iterator[Any]:
        with database_errors(getattr(self, "database_url", "?")):
            yield from function(self, *arguments, **options)

    return guarded
