"""Vector collections as stored: their rows, their vector storage, their versions and index files.

`models.vector_store.VectorDB` is the public face; these functions are what it and the tasks share.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import memory_items
from models.base import stored_microseconds
from models.dialects import dialect_for, vector_backend_for
from models.engine import database_file, server_database_folder
from models.tables import CollectionRecord, CollectionVersionRecord, MemoryItemRecord
from neuraltrade.errors import CollectionNotFound, ConfigError, DimensionMismatch, FingerprintMismatch
from neuraltrade.memory.collection import CollectionSpec
from neuraltrade.memory.embedding import EmbedderFingerprint

#: The folder of the HNSW index files of collections in a server database (`index_path`).
INDEX_FOLDER_VARIABLE = "NEURALTRADE_INDEX_DIR"

__all__ = [
    "INDEX_FOLDER_VARIABLE",
    "CollectionNotFound",
    "bump_version",
    "delete_items",
    "delete_vectors_from",
    "ensure_collection",
    "external_fingerprint",
    "get_collection",
    "index_path",
    "random_token",
    "remove_items",
    "spec_of",
    "version_token",
]


def external_fingerprint(dimension: int) -> EmbedderFingerprint:
    """Return the fingerprint of vectors that come from outside the platform's embedders."""
    return EmbedderFingerprint(name="external", version="1", dimension=dimension)


def index_path(database_url: str, collection: str) -> Path | None:
    """Return where collection `collection`'s HNSW index file lives.

    Beside a SQLite file: ``<db>.indexes/<name>.hnsw``. For a server (PostgreSQL), in the folder
    ``$NEURALTRADE_INDEX_DIR`` names, one subfolder per database (its name and a digest of its URL
    without the password, so that two servers' databases of one name do not share files); without that
    variable, or for an in-memory database, None: the index then lives in memory only and each process
    builds it when it opens the collection.
    """
    path = database_file(database_url)
    if path is not None:
        return path.parent / f"{path.name}.indexes" / f"{collection}.hnsw"
    folder = os.environ.get(INDEX_FOLDER_VARIABLE)
    if not folder or dialect_for(database_url).name == "sqlite":
        return None
    try:
        base = Path(folder).expanduser()
    except RuntimeError as error:  # "~someone" of a user this machine does not have
        raise ConfigError(f"{INDEX_FOLDER_VARIABLE}={folder!r} cannot be expanded: {error}") from error
    return base / server_database_folder(database_url) / f"{collection}.hnsw"


def get_collection(session: Session, name: str) -> CollectionRecord:
    """Return the collection called `name`, or raise `CollectionNotFound`."""
    record = session.scalar(select(CollectionRecord).where(CollectionRecord.name == name))
    if record is None:
        raise CollectionNotFound(f"no vector collection is called {name!r}")
    return record


def spec_of(record: CollectionRecord) -> CollectionSpec:
    """Return the `CollectionSpec` a stored collection was created with."""
    return CollectionSpec(
        name=record.name,
        fingerprint=EmbedderFingerprint(**record.fingerprint),
        metric=record.metric,
        quantization=record.quantization,
        partition_key=record.partition_key,
    )


def ensure_collection(session: Session, spec: CollectionSpec, now: datetime) -> CollectionRecord:
    """Return the collection `spec` names, creating its row and vector storage if it is new.

    Raises
    ------
    FingerprintMismatch
        If a collection of that name holds vectors of another embedder.
    ConfigError
        If it exists with another metric, quantization or partition key (each difference is named).
    """
    record = session.scalar(select(CollectionRecord).where(CollectionRecord.name == spec.name))
    if record is not None:
        stored = spec_of(record)
        if stored.fingerprint.digest != spec.fingerprint.digest:
            if stored.dimension != spec.dimension:
                raise DimensionMismatch(spec.name, stored.dimension, spec.dimension)
            raise FingerprintMismatch(spec.name, stored.fingerprint.describe(), spec.fingerprint.describe())
        differences = [
            f"{name} {getattr(stored, name)!r} (asked for {getattr(spec, name)!r})"
            for name in ("metric", "quantization", "partition_key")
            if getattr(stored, name) != getattr(spec, name)
        ]
        if differences:
            raise ConfigError(f"collection {spec.name!r} exists with " + ", ".join(differences))
        return record
    record = CollectionRecord(
        name=spec.name,
        dimension=spec.dimension,
        metric=spec.metric,
        quantization=spec.quantization,
        partition_key=spec.partition_key,
        version=0,
        fingerprint={
            "name": spec.fingerprint.name,
            "version": spec.fingerprint.version,
            "dimension": spec.fingerprint.dimension,
            "parameters": spec.fingerprint.parameters,
        },
        fingerprint_digest=spec.fingerprint.digest,
        created_at=now,
    )
    session.add(record)
    session.flush()
    vector_backend_for(session).create_collection(session.connection(), spec)
    return record


def random_token() -> str:
    """A token no other write has: 128 random bits, as 32 hex digits."""
    return uuid.uuid4().hex


def bump_version(session: Session, collection_id: int, *, new_token: Callable[[], str] = random_token) -> int:
    """Record a write to the collection, with a token of its own (`CollectionVersionRecord`); return its
    new version."""
    statement = (
        update(CollectionRecord)
        .where(CollectionRecord.id == collection_id)
        .values(version=CollectionRecord.version + 1)
        .returning(CollectionRecord.version)
    )
    version = int(session.execute(statement).scalar_one())
    session.add(CollectionVersionRecord(collection_id=collection_id, version=version, token=new_token()))
    session.flush()
    return version


def version_token(session: Session, collection_id: int, version: int) -> str | None:
    """The token of the collection's write `version` in this database (None if it made no such write)."""
    return session.scalar(
        select(CollectionVersionRecord.token).where(
            CollectionVersionRecord.collection_id == collection_id, CollectionVersionRecord.version == version
        )
    )


def remove_items(session: Session, collection: str, ids: Sequence[int]) -> None:
    """Remove items `ids` of collection `collection` from all three stores (its vector storage, the item
    rows and the full vectors), without recording a write: the caller bumps the version once."""
    vector_backend_for(session).delete(session.connection(), collection, ids)
    memory_items.delete_rows(session, ids)


def delete_items(session: Session, record: CollectionRecord, ids: Sequence[int]) -> int:
    """Delete items `ids` of collection `record` and record the write; return how many went."""
    if not ids:
        return 0
    remove_items(session, record.name, ids)
    bump_version(session, record.id)
    return len(ids)


def delete_vectors_from(session: Session, symbol: str, since: int) -> int:
    """Delete, in every partitioned collection, the items of partition `symbol` whose timestamp is at or
    after epoch microsecond `since`; return how many went. Ingestion calls it when bars change."""
    removed = 0
    column = stored_microseconds(MemoryItemRecord.timestamp)
    for record in session.scalars(select(CollectionRecord).where(CollectionRecord.partition_key.is_not(None))):
        ids = session.scalars(
            select(MemoryItemRecord.id).where(
                MemoryItemRecord.collection_id == record.id, MemoryItemRecord.partition == symbol, column >= since
            )
        ).all()
        removed += delete_items(session, record, list(ids))
    return removed
