"""The declarative base, its naming convention and the portable column types every table uses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Dialect, MetaData, Table, Uuid, type_coerce
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from neuraltrade.timestamps import from_microseconds, to_microseconds

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def stored_microseconds(column: Any) -> Any:
    """Return `column` (a `UtcMicroseconds` column) read as its stored integer, not as a datetime.

    Bulk reads and range filters work on epoch microseconds; converting a million values to datetimes
    and back would cost more than the query.
    """
    return type_coerce(column, BigInteger)


class UtcMicroseconds(TypeDecorator[datetime]):
    """An aware UTC datetime stored as a 64-bit count of microseconds since the Unix epoch.

    Integers keep microsecond precision and ordering on every engine, need no time-zone handling by
    the driver (SQLite has none) and bind without per-row conversion on the bulk paths, which may pass
    integers directly.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None or isinstance(value, int):
            return value
        return to_microseconds(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else from_microseconds(int(value))


class Base(DeclarativeBase):
    """Base class of every ORM model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcMicroseconds(), uuid.UUID: Uuid()}


def table_of(model: type[Base]) -> Table:
    """Return the `Table` of an ORM model (typed as a Table, which ``__table__`` is not)."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table
