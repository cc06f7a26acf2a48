"""What every kind of database must say for itself: the SQL and the set-up that SQLAlchemy cannot make portable.

Modelled on Prefect's ``BaseQueryComponents``: one abstract class, one subclass per dialect, one instance
chosen once from the engine's (or the URL's) dialect name by `models.dialects.dialect_for`. Callers ask
the components instead of testing ``dialect.name`` themselves, so a new kind of database is one new
subclass, not a search through the callers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.engine import URL
from sqlalchemy.types import TypeEngine

from neuraltrade.errors import StorageError

if TYPE_CHECKING:
    from models.vector_backend import VectorBackend


class DialectComponents(ABC):
    """The dialect-specific pieces of the model layer, for one kind of database."""

    #: SQLAlchemy's name of the dialect (``engine.dialect.name``).
    name: ClassVar[str]
    #: What the database calls the JSON type of a value, by the Python type of a filter value (str, float,
    #: bool). A metadata filter keeps only values of the filter value's kind.
    json_kind_names: ClassVar[Mapping[type, tuple[str, ...]]]
    #: The column type a 64-bit integer primary key needs to be the table's row id (None: a BIGINT is).
    row_id_type: ClassVar[TypeEngine[Any] | None] = None
    #: Whether Alembic alters its tables by copying them (SQLite's ALTER TABLE cannot change a column).
    batch_migrations: ClassVar[bool] = False
    #: Whether the database file is compacted by maintenance (`vacuum`, `optimize`, `free_page_ratio`).
    compactable: ClassVar[bool] = False
    #: Fragments of the driver's message (lower case) when another writer held the database too long.
    locked_messages: ClassVar[tuple[str, ...]] = ()
    #: Fragments of the driver's message (lower case) when the connection to a server failed or dropped.
    connection_lost_messages: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def create_engine(self, url: URL, *, busy_timeout_seconds: float | None = None) -> Engine:
        """Return a new engine for `url`, every connection set up as this database needs.

        Raises
        ------
        StorageError
            If the driver is not installed or the database's location cannot be prepared.
        """

    def release(self, engine: Engine) -> None:  # noqa: B027 (a hook most databases leave empty)
        """Stop what the engine runs beside its connections (called before it is disposed)."""

    @abstractmethod
    def insert(self, table: Table) -> Any:
        """Return an INSERT of `table` that takes ``on_conflict_do_update`` and ``on_conflict_do_nothing``."""

    @abstractmethod
    def lock_schema(self, connection: Connection) -> None:
        """Hold, until `connection`'s transaction ends, the lock that lets one process at a time migrate."""

    @abstractmethod
    def render_json_kind(self, compiler: Any, column: Any, path: Any, key: Any, **options: Any) -> str:
        """Return the SQL naming the JSON type of field `key` (at JSON path `path`) of JSON `column`."""

    def prepare_reader(self, driver_connection: Any) -> None:  # noqa: B027 (a hook most databases leave empty)
        """Set up a driver connection that `models.memory_items.HotReader` keeps for its reads."""

    def database_file(self, database_url: str) -> Path | None:
        """Return the file holding the database of `database_url`, or None (a server, or memory)."""
        return None

    def read_only_url(self, database_url: str) -> str:
        """Return a URL that reads the database of `database_url` without changing it."""
        return database_url

    def interrupt_statements(self) -> int:
        """Abort the statements this process's connections are running; return how many connections."""
        return 0

    def free_page_ratio(self, connection: Connection) -> float:
        """Return the share of the database file that is free pages (see `compactable`)."""
        raise StorageError(f"a {self.name} database is not compacted by neuraltrade")

    def vacuum(self, engine: Engine) -> tuple[int, int]:
        """Rewrite the database file without its free pages; return its size in bytes before and after."""
        raise StorageError(f"a {self.name} database is not vacuumed by neuraltrade")

    def optimize(self, engine: Engine) -> tuple[int, int]:
        """Refresh the query planner's statistics; return the file size in bytes before and after."""
        raise StorageError(f"a {self.name} database is not optimized by neuraltrade")

    #: The file name of a backup of this kind of database (`models.backups`).
    backup_file: ClassVar[str] = "database.backup"

    def dump(self, database_url: str, target: Path) -> str:
        """Write a consistent copy of the database to `target` (`models.backups`); return the URL of a
        database whose rows are the copy's, to count them."""
        raise StorageError(f"a {self.name} database is not backed up by neuraltrade")

    def load(self, source: Path, database_url: str) -> None:
        """Restore the copy `source` (written by `dump`) into the empty database `database_url`."""
        raise StorageError(f"a {self.name} database is not restored by neuraltrade")

    def vector_backend(self) -> VectorBackend:
        """Return the backend that stores this database's vector collections.

        Raises
        ------
        StorageError
            If vector collections cannot be stored in this kind of database yet.
        """
        raise StorageError(
            f"vector collections cannot be stored in a {self.name} database yet; use a SQLite file "
            "(sqlite:///path/to/file.db), which stores them with sqlite-vec"
        )
