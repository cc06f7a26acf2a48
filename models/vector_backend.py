"""Where a collection's vectors live: the seam between the vector store and one kind of database.

`VectorDB` keeps items and metadata in a portable table (`models.memory_items`); every vector, the
searched one and (for a quantized collection) its full-precision original, lives once, in storage only
one kind of database provides
(sqlite-vec's ``vec0`` tables, `models.dialects.sqlite_vec`; pgvector's tables,
`models.dialects.pgvector`). Every statement on that storage is a method here, each backend returned by
its dialect's `DialectComponents.vector_backend` (`models.dialects.vector_backend_for`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from neuraltrade.errors import StorageError

# Only for annotations: the engine imports this seam, and numpy and the memory rules cost it seconds.
if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy import Connection

    from neuraltrade.memory.collection import CollectionSpec

#: Prefix of every table a vector backend creates outside the ORM (``vec_<collection>``, and sqlite-vec's
#: shadow tables after it); Alembic's autogenerate skips such tables.
VECTOR_TABLE_PREFIX = "vec_"

#: The item table (`models.tables.MemoryItemRecord`), whose `sequence` keys each backend's vector rows.
#: Named here: the dialects load before the ORM tables.
ITEM_TABLE = "memory_items"


def vector_table(collection: str) -> str:
    """Return the vector table of collection `collection` (a name `CollectionSpec` validated)."""
    return f"{VECTOR_TABLE_PREFIX}{collection}"


def check_insert(spec: CollectionSpec, ids: Sequence[int], full: np.ndarray | None, sequences: Sequence[int]) -> None:
    """Refuse an insert whose ids and item sequences do not pair up, or a quantized collection's
    insert without the full-precision vectors stored beside the searched ones.

    Raises
    ------
    StorageError
        Naming the collection and what does not match.
    """
    if len(sequences) != len(ids):
        raise StorageError(f"collection {spec.name!r}: {len(ids)} ids but {len(sequences)} item sequences")
    if spec.quantization != "none" and full is None:
        raise StorageError(
            f"collection {spec.name!r} is {spec.quantization}: its full-precision vectors are stored too"
        )


#: Runs one driver statement with its parameters and returns the rows: a session's connection, or the
#: hot reader's raw connection on the search path (`models.memory_items.HotReader.rows`).
RowReader = Callable[[str, tuple[object, ...]], Iterable[Any]]


class VectorBackend(ABC):
    """The storage of the searched vectors of every collection of one database."""

    @property
    @abstractmethod
    def max_k(self) -> int:
        """The most neighbours one `nearest` call returns; a search for more is answered another way."""

    @abstractmethod
    def ranks(self, metric: str) -> bool:
        """Return whether `nearest` ranks by `metric`; exact searches of other metrics rank with numpy."""

    def storage_name(self, collection: str) -> str:
        """Return the name of the table (or index) holding the collection's vectors, as messages show it."""
        return vector_table(collection)

    @abstractmethod
    def create_collection(self, connection: Connection, spec: CollectionSpec) -> None:
        """Create the storage of collection `spec` if it does not exist."""

    def ensure_index(self, connection: Connection, spec: CollectionSpec) -> None:  # noqa: B027 (most have none)
        """Create the backend's own approximate index of collection `spec` if it has one and it does not
        exist; called when a store that keeps an HNSW index opens the collection."""

    @abstractmethod
    def drop_collection(self, connection: Connection, collection: str) -> None:
        """Drop the storage of a collection, if it exists, with everything in it."""

    @abstractmethod
    def insert(
        self,
        connection: Connection,
        spec: CollectionSpec,
        ids: Sequence[int],
        partitions: Sequence[str] | None,
        payloads: np.ndarray,
        full: np.ndarray | None = None,
        *,
        sequences: Sequence[int],
    ) -> None:
        """Store one searched vector per id: rows of `payloads` are float32, int8 or packed bits, as the
        collection's quantization says; `partitions` holds each id's partition value (None: unpartitioned).
        A quantized collection also stores each id's full-precision vector (rows of `full`, float32);
        an unquantized one's payload is its full-precision vector. `sequences` holds each id's item-row
        `sequence` (the rows are written first), which a backend may key its storage by."""

    @abstractmethod
    def replace(
        self,
        connection: Connection,
        spec: CollectionSpec,
        partitions: Sequence[str] | None,
        payloads: np.ndarray,
        full: np.ndarray | None = None,
        *,
        sequences: Sequence[int],
    ) -> None:
        """Replace the stored vectors of the items `sequences` (rows as for `insert`), which stay in their
        `partitions`."""

    @abstractmethod
    def full_vectors(
        self, connection: Connection, spec: CollectionSpec, ids: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (ids, float32 matrix) of the full-precision vectors of those of `ids` that are stored."""

    @abstractmethod
    def scan_full(
        self, connection: Connection, spec: CollectionSpec, *, batch: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, float32 matrix) batches of at most `batch` of every full-precision vector."""

    @abstractmethod
    def delete(self, connection: Connection, collection: str, ids: Sequence[int]) -> None:
        """Delete the vectors `ids` (ids not stored are ignored)."""

    @abstractmethod
    def nearest(
        self,
        rows: RowReader,
        spec: CollectionSpec,
        payload: np.ndarray,
        k: int,
        *,
        partition: str | None = None,
        breadth: int | None = None,
    ) -> list[tuple[int, float]]:
        """Return the (id, distance) of the at most `k` (capped at `max_k`) stored vectors nearest to
        `payload` (quantized as the collection's vectors are), within `partition` when it is given.
        Exact, unless `breadth` is given and the backend has an approximate index: it then searches it
        with that candidate list."""

    @abstractmethod
    def count(self, connection: Connection, collection: str) -> int:
        """Return how many vectors the collection's storage holds."""

    @abstractmethod
    def ids(self, connection: Connection, collection: str) -> np.ndarray:
        """Return the ids of every vector the collection's storage holds whose item row exists (int64, in
        no set order); `count` minus their number is how many vectors have lost their item row."""

    @abstractmethod
    def size_bytes(self, connection: Connection, collection: str) -> int | None:
        """Return the bytes the collection's storage occupies, or None when the database cannot say."""

    @abstractmethod
    def compact(self, connection: Connection, spec: CollectionSpec, batch: int) -> int:
        """Rewrite the collection's storage densely, ids and vectors unchanged; return how many vectors
        it holds. Moves at most `batch` vectors at a time through memory."""
