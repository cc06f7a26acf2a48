"""Alembic environment: runs migrations on the engine `models.engine` builds (sqlean + sqlite-vec)."""

from __future__ import annotations

from typing import Any

import models.tables  # noqa: F401  (registers every table on the metadata)
from alembic import context
from models.base import Base
from models.dialects import dialect_for
from models.engine import get_engine, resolve_database_url
from models.vector_backend import VECTOR_TABLE_PREFIX

config = context.config


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leave sqlite-vec's virtual tables and their shadow tables out of autogenerate and check."""
    return not (type_ == "table" and name is not None and name.startswith(VECTOR_TABLE_PREFIX))


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("db") or resolve_database_url(
        config.get_main_option("sqlalchemy.url") or None
    )
    with get_engine(url).connect() as connection:
        _run(connection)
        connection.commit()


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_name=include_name,
        render_as_batch=dialect_for(connection).batch_migrations,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations()
