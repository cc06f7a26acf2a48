"""PostgreSQL (the `postgres` extra): a server the URL names, its advisory lock and its JSON functions.

Vector collections are not stored here yet: `vector_backend` refuses until a pgvector backend exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy import create_engine as sqlalchemy_engine
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL
from sqlalchemy.exc import NoSuchModuleError

from models.dialects.base import DialectComponents
from neuraltrade.errors import StorageError

#: The advisory lock migrations hold (any fixed 64-bit number that nothing else uses).
SCHEMA_LOCK = 0x6E74_7363_6865_6D61


class PostgresqlComponents(DialectComponents):
    """PostgreSQL through psycopg."""

    name: ClassVar[str] = "postgresql"
    json_kind_names: ClassVar[Mapping[type, tuple[str, ...]]] = {
        str: ("string",),
        float: ("number",),
        bool: ("boolean",),
    }
    connection_lost_messages: ClassVar[tuple[str, ...]] = ("could not connect", "connection reset")

    def create_engine(self, url: URL, *, busy_timeout_seconds: float | None = None) -> Engine:
        try:
            return sqlalchemy_engine(url, pool_pre_ping=True)
        except (ImportError, NoSuchModuleError) as error:
            raise StorageError(
                f"database URL {url.render_as_string(hide_password=True)!r} needs a driver that is not installed "
                f"({error}); for PostgreSQL: pip install 'neuraltrade[postgres]' and write postgresql+psycopg://..."
            ) from error

    def insert(self, table: Table) -> Any:
        return postgresql.insert(table)

    def lock_schema(self, connection: Connection) -> None:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})

    def render_json_kind(self, compiler: Any, column: Any, path: Any, key: Any, **options: Any) -> str:
        return f"json_typeof(({compiler.process(column, **options)})::json -> {compiler.process(key, **options)})"
