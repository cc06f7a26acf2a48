"""ORM models: bars, observations, vector collections and their items, quarantined rows, run summaries.

Every vector lives once, in one sqlite-vec ``vec0`` virtual table per collection (see
`models.vector_store`); each `MemoryItemRecord` shares its id with its vector's rowid there.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.dialects import ROW_ID


class BarRecord(Base):
    """One OHLCV bar; (symbol, timestamp) is its natural key."""

    __tablename__ = "bars"
    __table_args__ = (UniqueConstraint("symbol", "timestamp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(32))
    timestamp: Mapped[datetime]
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    spread: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(Text)
    ingested_at: Mapped[datetime]


class ObservationRecord(Base):
    """The market state the memory stores for one bar; `id` is the stable `Observation.id_for`."""

    __tablename__ = "observations"
    __table_args__ = (UniqueConstraint("symbol", "timestamp"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    bar_id: Mapped[int] = mapped_column(ForeignKey("bars.id", ondelete="CASCADE"), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    timestamp: Mapped[datetime]
    price: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    spread: Mapped[float] = mapped_column(Float)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime]


class CollectionRecord(Base):
    """A named vector collection: one dimension, metric, quantization, partition key and embedder.

    `version` grows with every write to the collection; an HNSW index file records the version it
    reflects, so a reader can tell a fresh index from a stale one. `index_type` becomes "hnsw" once any
    store opens the collection with an index, so that maintenance keeps its file.
    """

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    dimension: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(16))
    quantization: Mapped[str] = mapped_column(String(16), server_default="none")
    index_type: Mapped[str] = mapped_column(String(16), server_default="exact")
    partition_key: Mapped[str | None] = mapped_column(String(64))
    int8_scale: Mapped[float | None] = mapped_column(Float)
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    fingerprint: Mapped[dict[str, Any]] = mapped_column(JSON)
    fingerprint_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class CollectionVersionRecord(Base):
    """One write to a collection: its version, and a random token no other write of any database has.

    An HNSW graph file records the token of the version it was sealed at. A version alone does not say
    which history it belongs to: a database restored from an older backup and written to again reaches the
    graph's version with other items. The token of that version then differs (or is missing, when the
    database is behind the graph), and the graph is not used (`models.vector_index`).
    """

    __tablename__ = "collection_versions"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    token: Mapped[str] = mapped_column(String(32))


class MemoryItemRecord(Base):
    """One item of a vector collection: its key, metadata and timestamp.

    `id` is derived from (collection, key) and is also the rowid of the item's vectors in the
    collection's vector table. `timestamp` is when the item came to be (a market state: its bar's time);
    searches with ``as_of`` see only earlier items. `written_version` is the collection version of the
    write that stored it: the items written after an ANN graph was built form its unsealed segment.
    """

    __tablename__ = "memory_items"
    # No unique index on (collection_id, key): the id is derived from exactly that pair, so its unique
    # index already refuses a second row of one key, and each index costs ~15% of bulk insert speed.
    # Rows are keyed by `sequence`, the order they were written in: keyed by the derived id (a hash),
    # each write of 10,000 items touched as many random pages of the table (revision 0007).
    __table_args__ = (
        Index(None, "collection_id", "partition", "timestamp"),
        Index(None, "observation_id"),
        Index(None, "collection_id", "written_version"),
    )

    sequence: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    id: Mapped[int] = mapped_column(ROW_ID, unique=True, autoincrement=False)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(256))
    partition: Mapped[str | None] = mapped_column(String(64))
    observation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("observations.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    fingerprint_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    written_version: Mapped[int] = mapped_column(BigInteger, server_default="0")


class QuarantinedRow(Base):
    """An input row that failed parsing or a quality check, kept with everything needed to fix it."""

    __tablename__ = "quarantined_rows"
    __table_args__ = (UniqueConstraint("source_digest", "line"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(Text)
    source_digest: Mapped[str] = mapped_column(String(64))
    line: Mapped[int] = mapped_column(Integer)
    failed_checks: Mapped[list[str]] = mapped_column(JSON)
    raw_values: Mapped[list[str]] = mapped_column(JSON)
    quarantined_at: Mapped[datetime]


class RunSummary(Base):
    """What one flow or command run did: its kind, config digest, status and figures."""

    __tablename__ = "run_summaries"
    __table_args__ = (Index(None, "kind", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    config_digest: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


import models.learning  # noqa: E402  (registers the learning loop's tables on the metadata)
import models.provenance  # noqa: E402  (registers the provenance log's tables on the metadata)
import models.trading  # noqa: E402, F401  (registers the trading tables on the metadata)
