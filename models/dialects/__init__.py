"""The one seam per kind of database: `dialect_for` picks its `DialectComponents` from a dialect name.

Everything the model layer says differently to SQLite and to PostgreSQL (engine set-up, upserts, the
schema lock, JSON type names, compaction, where vector collections are stored) is a method of the
components; nothing else in the project tests a dialect's name or writes its SQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Connection, Engine, String, Table
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from models.dialects.base import DialectComponents
from models.dialects.postgresql import PostgresqlComponents
from models.dialects.sqlite import SqliteComponents
from neuraltrade.errors import StorageError

if TYPE_CHECKING:
    from models.vector_backend import VectorBackend

__all__ = [
    "DIALECTS",
    "ROW_ID",
    "Bind",
    "DialectComponents",
    "all_dialects",
    "dialect_for",
    "insert_statement",
    "json_kind",
    "json_kind_names",
    "transient_messages",
    "vector_backend_for",
]

#: The components of every kind of database the models run on, by SQLAlchemy's dialect name.
DIALECTS: dict[str, DialectComponents] = {
    components.name: components for components in (SqliteComponents(), PostgresqlComponents())
}

Bind = Engine | Connection | Session | Dialect | URL | str


def dialect_for(bind: Bind) -> DialectComponents:
    """Return the components of the database `bind` is, was opened on, or names (a URL: no connection made).

    Raises
    ------
    StorageError
        If the URL is malformed or names a kind of database neuraltrade does not run on.
    """
    name = _dialect_name(bind)
    components = DIALECTS.get(name)
    if components is None:
        raise StorageError(f"database dialect {name!r} is not supported here; use SQLite or PostgreSQL")
    return components


def _dialect_name(bind: Bind) -> str:
    if isinstance(bind, Session):
        return bind.get_bind().dialect.name
    if isinstance(bind, Engine | Connection):
        return bind.dialect.name
    if isinstance(bind, Dialect):
        return bind.name
    try:
        return (bind if isinstance(bind, URL) else make_url(bind)).get_backend_name()
    except (ArgumentError, ValueError) as error:  # ValueError: a port that is no number
        raise StorageError(f"database URL {bind!r} is not a SQLAlchemy URL: {error}") from error


def vector_backend_for(bind: Bind) -> VectorBackend:
    """Return the vector backend of the database `bind` is, was opened on, or names.

    Raises
    ------
    StorageError
        If that kind of database cannot store vector collections (yet).
    """
    return dialect_for(bind).vector_backend()


def all_dialects() -> tuple[DialectComponents, ...]:
    """Return the components of every supported kind of database."""
    return tuple(DIALECTS.values())


def transient_messages() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return the fragments (lower case) of every supported driver's messages for a database locked past
    its busy timeout, and for a server connection that failed or dropped: both may pass if tried again.

    Every dialect's, not one's: a driver error is often met far from the engine that raised it.
    """
    locked = tuple(fragment for components in DIALECTS.values() for fragment in components.locked_messages)
    lost = tuple(fragment for components in DIALECTS.values() for fragment in components.connection_lost_messages)
    return locked, lost


def insert_statement(session: Session, table: Table) -> Any:
    """Return an INSERT of `table` in the session's dialect, which takes ``on_conflict_do_update`` and
    ``on_conflict_do_nothing`` (SQLite and PostgreSQL share SQLAlchemy's API for them)."""
    return dialect_for(session).insert(table)


def _row_id() -> Any:
    column = BigInteger()
    for components in DIALECTS.values():
        if components.row_id_type is not None:
            column = column.with_variant(components.row_id_type, components.name)
    return column


#: A 64-bit integer primary key that is also the row id where the dialect has one (SQLite's rowid).
ROW_ID = _row_id()


class json_kind(FunctionElement[str]):  # noqa: N801 - named like the SQL function it renders
    """The JSON type of a metadata field: ``json_kind(column, json_path, key)``, rendered per dialect."""

    type = String()
    inherit_cache = True
    name = "json_kind"


@compiles(json_kind)
def _render_json_kind(element: json_kind, compiler: Any, **options: Any) -> str:
    column, path, key = list(element.clauses)
    return dialect_for(compiler.dialect).render_json_kind(compiler, column, path, key, **options)


def json_kind_names(kind: type) -> tuple[str, ...]:
    """Return every name a supported dialect gives JSON values of Python type `kind` (str, float, bool).

    A filter is built before the dialect that runs it is known, so it accepts every dialect's names;
    no dialect uses another's name for a different kind.
    """
    names: list[str] = []
    for components in DIALECTS.values():
        names.extend(name for name in components.json_kind_names[kind] if name not in names)
    return tuple(names)
