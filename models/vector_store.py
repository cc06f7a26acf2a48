"""The vector memory: `VectorDB`, a named collection of vectors with exact, quantized and HNSW search.

The database is the system of record and the exact path: every searched vector lives in the
collection's storage of the database's vector backend (`models.vector_backend`; sqlite-vec's ``vec0``
table on SQLite), and every item's key, metadata and timestamp in `memory_items`. Quantized collections
search int8 or bit vectors and re-score the candidates with the full-precision vectors kept beside
them. An HNSW index (`models.ann_index`) kept in a file beside the database answers unfiltered queries
when it is fresh; when it is missing or stale, the exact path answers instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import memory_items
from models.ann_index import HnswConfig, HnswIndex
from models.collections import (
    CollectionNotFound,
    bump_version,
    ensure_collection,
    external_fingerprint,
    get_collection,
    index_path,
    remove_items,
    spec_of,
    version_token,
)
from models.dialects import vector_backend_for
from models.engine import get_engine, resolve_database_url, session_scope
from models.item_writes import store_items
from models.migrations import database_errors, ensure_schema, guard_database_errors
from models.partition_index import PartitionGraphs
from models.tables import CollectionRecord
from models.vector_index import IndexKeeper
from models.vector_search import VectorSearch
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.errors import (
    ConfigError,
    DimensionMismatch,
    DuplicateItem,
    StorageError,
)
from neuraltrade.memory.collection import (
    CollectionSpec,
    Filter,
    Item,
    ItemId,
    Query,
    SearchResult,
    check_metadata,
    check_query_vector,
    check_timestamps,
    check_vectors,
    int8_scale,
    normalise_item_id,
    quantize_binary,
    quantize_int8,
)
from neuraltrade.memory.embedding import EmbedderFingerprint
from neuraltrade.memory.query import flat_vector
from neuraltrade.memory.session import SessionMemory
from neuraltrade.timestamps import from_microseconds, to_microseconds

__all__ = ["CollectionNotFound", "VectorDB"]

logger = logging.getLogger(__name__)

#: Functions told the collection and seconds of every search (`tasks.metrics` records a histogram); the
#: store knows nothing of what they do. Empty: a search is not timed.
SEARCH_OBSERVERS: list[Callable[[str, float], None]] = []
#: Functions that open a span (a context manager) around each search, given the collection and k
#: (`tasks.tracing` adds one when a tracer provider is set). Empty: no span, not even a no-op one (4 us,
#: measured, against a 100 us search).
SEARCH_SPANS: list[Callable[[str, int], AbstractContextManager[Any]]] = []


INDEX_TYPES = ("exact", "hnsw")
#: Candidates re-scored per wanted result, by quantization. One bit per dimension ranks far more
#: coarsely than int8, so binary needs a wider net for the same recall (docs/benchmarks.md).
DEFAULT_OVERSAMPLE = {"none": 1, "int8": 4, "binary": 16}
#: Item descriptions (key, metadata, timestamp) a store keeps between searches at one collection version.
DESCRIPTIONS_HELD = 200_000


@guard_database_errors
class VectorDB(VectorSearch):
    """A named, persistent vector collection with exact, quantized and HNSW search.

    Items are named by a `str`, `int` or `uuid.UUID` id, kept and returned as its `str` form (``42`` and
    ``"42"`` name the same item). Every error raised is a `NeuralTradeError`; the database's own failures
    are a `DatabaseUnavailable` naming the database.

    Parameters
    ----------
    dimension
        The dimension of every vector.
    name
        The collection's name (lower-case letters, digits and underscores).
    metric
        ``"cosine"`` (distance 1 - cos), ``"l2"`` (Euclidean) or ``"inner_product"`` (1 - dot).
    quantization
        ``"none"``, ``"int8"`` (also ``"scalar"``) or ``"binary"``: how searched vectors are stored.
        Quantized candidates are re-scored with full-precision vectors.
    index_type
        ``"exact"`` or ``"hnsw"`` (an in-process HNSW index, kept in a file beside the database).
    partition_key
        The metadata field that partitions the collection (filters on it search one partition only),
        or None.
    database_url
        The database (default: ``$NEURALTRADE_DB``, else ``./data/neuraltrade.db``). A new or empty one, or
        one at an older schema revision, is migrated to the newest when first opened.
    fingerprint
        The embedder of the vectors; collections refuse vectors of another embedder.
    oversample
        Candidates per result that a quantized search re-scores (default: 4 for int8, 16 for binary).
    hnsw
        The HNSW index's configuration.
    cache
        An L1 `SessionMemory` for items and query results, invalidated by this store's writes.
    clock
        Stamps items written without a timestamp.
    """

    def __init__(
        self,
        dimension: int,
        *,
        name: str = "default",
        metric: str = "cosine",
        quantization: str = "none",
        index_type: str = "exact",
        partition_key: str | None = "symbol",
        database_url: str | None = None,
        fingerprint: EmbedderFingerprint | None = None,
        oversample: int | None = None,
        hnsw: HnswConfig | None = None,
        cache: SessionMemory | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ConfigError(f"dimension must be a positive integer, was {dimension!r}")
        fingerprint = fingerprint or external_fingerprint(dimension)
        if fingerprint.dimension != dimension:
            raise DimensionMismatch(name, dimension, fingerprint.dimension)
        if index_type not in INDEX_TYPES:
            raise ConfigError(f"index_type {index_type!r} is not one of {', '.join(INDEX_TYPES)}")
        if oversample is not None and (
            isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1
        ):
            raise ConfigError(f"oversample must be a positive integer, was {oversample!r}")
        self.spec = CollectionSpec(
            name=name, fingerprint=fingerprint, metric=metric, quantization=quantization, partition_key=partition_key
        )
        self.index_type = index_type
        self.oversample = oversample or DEFAULT_OVERSAMPLE[self.spec.quantization]
        self.hnsw = hnsw or HnswConfig()
        self.cache = cache
        self.database_url = resolve_database_url(database_url)
        self._clock = clock or SystemClock()
        ensure_schema(self.database_url)
        self._engine: Engine = get_engine(self.database_url)
        self._vectors = vector_backend_for(self._engine)
        self._reader = sessionmaker(bind=self._engine)
        self._hot = memory_items.hot_reader(self._engine)
        # One cache may serve stores of several databases: its entries are named by database and collection.
        self._cache_name = f"{self.database_url}#{name}"
        with session_scope(self.database_url, write=True) as session:
            record = ensure_collection(session, self.spec, self._clock.now())
            if index_type == "hnsw":
                if record.index_type != "hnsw":
                    # Recorded so that maintenance keeps this collection's index file from now on.
                    record.index_type = "hnsw"
                self._vectors.ensure_index(session.connection(), self.spec)
            self._collection_id = record.id
            self._int8_scale = record.int8_scale
            version = record.version
        self._keeper: IndexKeeper | None = None
        self._partition_graphs: PartitionGraphs | None = None
        self._wrote = False
        self._descriptions: dict[int, tuple[str, Mapping[str, Any], datetime]] = {}
        self._descriptions_version = -1
        if index_type == "hnsw":
            self._keeper = IndexKeeper(
                path=index_path(self.database_url, self.name),
                collection=self.name,
                collection_id=self._collection_id,
                fingerprint_digest=self.spec.fingerprint.digest,
                dimension=self.spec.dimension,
                metric=self.spec.metric,
                config=self.hnsw,
                segment_list=self._written_since,
                count_since=self._count_written_since,
                vectors_of=self._vectors_of,
                version_token=self._version_token,
            )
            self._keeper.open(version, stored_count=self.count())
            if self.spec.partition_key is not None:
                self._partition_graphs = PartitionGraphs(
                    folder=None if self._keeper.path is None else self._keeper.path.with_suffix(".hnsw.parts"),
                    state={"collection_id": self._collection_id, "fingerprint": self.spec.fingerprint.digest},
                    dimension=self.spec.dimension,
                    metric=self.spec.metric,
                    config=self.hnsw,
                    partition_list=self._written_since,
                    partition_count=self._count_written_since,
                    vectors_of=self._vectors_of,
                    version_token=self._version_token,
                )
                self._partition_graphs.preload()

    def _written_since(self, after_version: int, partition: str | None = None) -> dict[int, int]:
        """The written version of every item (of `partition`) written after `after_version`, by id."""
        return self._hot.written_since(self._collection_id, after_version, partition)

    def _count_written_since(self, after_version: int, through_version: int, partition: str | None = None) -> int:
        """How many items (of `partition`) were written after `after_version`, up to `through_version`."""
        return self._hot.count_written(self._collection_id, after_version, through_version, partition)

    def _version_token(self, version: int) -> str | None:
        with self._reader() as session:
            return version_token(session, self._collection_id, version)

    def _vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        with self._reader() as session:
            return memory_items.full_vectors(session, self.spec, ids)

    @classmethod
    def open(cls, name: str, *, database_url: str | None = None, **options: Any) -> VectorDB:
        """Open the existing collection `name` with the settings it was created with.

        Raises
        ------
        CollectionNotFound
            If no collection has that name.
        """
        database_url = resolve_database_url(database_url)
        with database_errors(database_url):
            ensure_schema(database_url)
            with session_scope(database_url) as session:
                spec = spec_of(get_collection(session, name))
        return cls(
            spec.dimension,
            name=name,
            metric=spec.metric,
            quantization=spec.quantization,
            partition_key=spec.partition_key,
            database_url=database_url,
            fingerprint=spec.fingerprint,
            **options,
        )

    @property
    def name(self) -> str:
        """The collection's name."""
        return self.spec.name

    @property
    def collection_id(self) -> int:
        """The collection's row id."""
        return self._collection_id

    # -- writes -------------------------------------------------------------------------------

    def insert(
        self,
        id: ItemId,
        vector: np.ndarray,
        metadata: Mapping[str, Any] | None = None,
        *,
        timestamp: datetime | None = None,
    ) -> None:
        """Store one item; raise `DuplicateItem` if `id` is already stored (use `upsert` to replace)."""
        self.insert_many(
            [id],
            flat_vector(vector, f"the vector of item {id!r}").reshape(1, -1),
            [metadata],
            timestamps=_one(timestamp),
        )

    def upsert(
        self,
        id: ItemId,
        vector: np.ndarray,
        metadata: Mapping[str, Any] | None = None,
        *,
        timestamp: datetime | None = None,
    ) -> None:
        """Store one item, replacing any stored item of the same `id`."""
        self.upsert_many(
            [id],
            flat_vector(vector, f"the vector of item {id!r}").reshape(1, -1),
            [metadata],
            timestamps=_one(timestamp),
        )

    def insert_many(
        self,
        ids: Sequence[ItemId],
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        timestamps: Sequence[datetime] | Sequence[int] | np.ndarray | None = None,
        observation_ids: Sequence[uuid.UUID] | None = None,
        session: Session | None = None,
    ) -> int:
        """Store items in one transaction; return how many. Nothing is written if any is refused.

        `timestamps` are aware datetimes or epoch microseconds (default: now). `observation_ids` link
        items to the observations they embed. With `session`, the write joins the caller's transaction.

        Raises
        ------
        DuplicateItem
            If any id is already stored.
        ConfigError, DimensionMismatch, InvalidVector
            Naming the item and value at fault.
        """
        return self._write(ids, vectors, metadata, timestamps, observation_ids, session, replace=False)

    def upsert_many(
        self,
        ids: Sequence[ItemId],
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        timestamps: Sequence[datetime] | Sequence[int] | np.ndarray | None = None,
        observation_ids: Sequence[uuid.UUID] | None = None,
        session: Session | None = None,
    ) -> int:
        """Like `insert_many`, but replace stored items of the same ids; a re-run is idempotent."""
        return self._write(ids, vectors, metadata, timestamps, observation_ids, session, replace=True)

    def delete(self, ids: ItemId | Sequence[ItemId]) -> int:
        """Delete items by id (one, or a sequence); return how many were stored. Unknown ids are ignored."""
        single = isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray)
        keys = self._check_keys([ids] if single else ids, unique=False)
        numbers = [memory_items.item_id(self._collection_id, key) for key in keys]
        with session_scope(self.database_url, write=True) as session:
            stored = list(memory_items.stored_rows(session, numbers))
            if not stored:
                return 0
            remove_items(session, self.name, stored)
            bump_version(session, self._collection_id)
        self._after_write(keys, removed=stored)
        return len(stored)

    def _write(
        self,
        ids: Sequence[ItemId],
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any] | None] | None,
        timestamps: Sequence[datetime] | Sequence[int] | np.ndarray | None,
        observation_ids: Sequence[uuid.UUID] | None,
        session: Session | None,
        *,
        replace: bool,
    ) -> int:
        keys = self._check_keys(ids, unique=True)
        matrix = check_vectors(self.spec, self.spec.fingerprint, vectors)
        count = len(keys)
        if len(matrix) != count:
            raise ConfigError(f"{count} ids and {len(matrix)} vectors do not pair up")
        if metadata is not None and len(metadata) != count:
            raise ConfigError(f"{count} ids and {len(metadata)} metadata entries do not pair up")
        if observation_ids is not None and len(observation_ids) != count:
            raise ConfigError(f"{count} ids and {len(observation_ids)} observation ids do not pair up")
        metas = [
            check_metadata(self.spec, key, None if metadata is None else metadata[i]) for i, key in enumerate(keys)
        ]
        moments = check_timestamps(timestamps, count, now=self._clock.now())
        if count == 0:
            return 0
        numbers = [memory_items.item_id(self._collection_id, key) for key in keys]
        partition_key = self.spec.partition_key
        partitions = None if partition_key is None else [meta[partition_key] for meta in metas]
        # Rows are written grouped by partition, which keeps the vector backend's writes local.
        order = list(range(count)) if partitions is None else sorted(range(count), key=partitions.__getitem__)
        ordered = matrix[order]
        ordered_ids = [numbers[i] for i in order]
        ordered_partitions = None if partitions is None else [partitions[i] for i in order]
        with self._write_session(session) as writer:
            stored = memory_items.stored_rows(writer, numbers)
            if stored:
                self._check_stored({number: row.key for number, row in stored.items()}, numbers, keys, replace=replace)
            version = bump_version(writer, self._collection_id)
            columns: dict[str, list[Any]] = {
                "id": ordered_ids,
                "collection_id": [self._collection_id] * count,
                "key": [keys[i] for i in order],
                "partition": [None] * count if ordered_partitions is None else ordered_partitions,
                "observation_id": [None] * count if observation_ids is None else [observation_ids[i] for i in order],
                "timestamp": [moments[i] for i in order],
                "metadata": [metas[i] for i in order],
                "fingerprint_digest": [self.spec.fingerprint.digest] * count,
                "created_at": [to_microseconds(self._clock.now())] * count,
                "written_version": [version] * count,
            }
            full = None if self.spec.quantization == "none" else ordered
            store_items(writer, self._vectors, self.spec, columns, self._payloads(writer, ordered), full, stored)
        # Also when the write joined a caller's transaction that may still roll back: the cache then only
        # loses entries. The graph is not touched: a replaced item's new version is in the segment, which
        # shadows the graph's entry.
        self._after_write(keys)
        return count

    @contextmanager
    def _write_session(self, session: Session | None) -> Iterator[Session]:
        if session is not None:
            yield session
            return
        try:
            with session_scope(self.database_url, write=True) as writer:
                yield writer
        except IntegrityError as error:
            raise StorageError(f"collection {self.name!r} refused the write: {error}") from error

    def _check_stored(self, stored: dict[int, str], numbers: list[int], keys: list[str], *, replace: bool) -> None:
        present = [(number, key) for number, key in zip(numbers, keys, strict=True) if number in stored]
        for number, key in present:
            if stored[number] != key:
                raise StorageError(
                    f"item id {key!r} of collection {self.name!r} hashes to the same 63-bit id as stored item "
                    f"{stored[number]!r}; rename one of them"
                )
        if not replace:
            raise DuplicateItem(self.name, [key for _, key in present])

    def _check_keys(self, ids: object, *, unique: bool) -> list[str]:
        if isinstance(ids, str | bytes) or not isinstance(ids, Sequence | np.ndarray):
            raise ConfigError(f"ids of collection {self.name!r} must be a sequence of ids, was {ids!r}")
        keys = [normalise_item_id(value) for value in ids]
        if unique:
            seen: set[str] = set()
            for key in keys:
                if key in seen:
                    raise ConfigError(f"item id {key!r} appears twice in one write to collection {self.name!r}")
                seen.add(key)
        return keys

    def _payloads(self, session: Session, matrix: np.ndarray) -> np.ndarray:
        if self.spec.quantization == "none":
            return matrix
        if self.spec.quantization == "binary":
            return quantize_binary(matrix)
        if self._int8_scale is None:
            # The first write fixes the scale; every later vector and query is quantized the same way.
            scale = session.scalar(
                select(CollectionRecord.int8_scale).where(CollectionRecord.id == self._collection_id)
            )
            if scale is None:
                scale = int8_scale(matrix)
                session.execute(
                    update(CollectionRecord).where(CollectionRecord.id == self._collection_id).values(int8_scale=scale)
                )
            self._int8_scale = float(scale)
        return quantize_int8(matrix, self._int8_scale)

    def _after_write(self, keys: Sequence[str], *, removed: Sequence[int] = ()) -> None:
        self._wrote = True
        if self.cache is not None:
            self.cache.invalidate(self._cache_name, keys)
        if self._keeper is not None and removed:
            self._keeper.remove(removed)
        if self._partition_graphs is not None and removed:
            self._partition_graphs.remove(removed)

    # -- reads --------------------------------------------------------------------------------

    def get(self, id: ItemId) -> Item | None:
        """Return the item stored under `id`, with its full-precision vector, or None."""
        key = normalise_item_id(id)
        if self.cache is not None:
            cached = self.cache.get_item(self._cache_name, key)
            if cached is not None:
                return cached
        number = memory_items.item_id(self._collection_id, key)
        described = self._hot.describe([number])
        if number not in described or described[number][0] != key:
            return None
        with self._reader() as session:
            _, matrix = memory_items.full_vectors(session, self.spec, [number])
        if len(matrix) == 0:  # deleted between the two reads
            return None
        vector = matrix[0].copy()
        # A cached item is handed to every caller: nothing in it may change (the metadata is read-only).
        vector.setflags(write=False)
        _, metadata, moment = described[number]
        item = Item(id=key, vector=vector, metadata=metadata, timestamp=from_microseconds(moment))
        if self.cache is not None:
            self.cache.put_item(self._cache_name, key, item)
        return item

    def count(self, where: Filter | None = None) -> int:
        """Return how many items the collection holds (that satisfy `where`)."""
        extra = memory_items.condition(where, partition_key=self.spec.partition_key)
        with self._reader() as session:
            return memory_items.count(session, self._collection_id, None, extra)

    def search(self, query: Query) -> list[SearchResult]:
        """Return the `query.k` nearest items that satisfy the query's filter and ``as_of`` bound.

        Results are sorted by distance (ties by id). Unfiltered queries use the HNSW index when it is
        fresh; anything else, and every query when the index is missing or stale, is answered exactly.
        Each search's seconds go to every function of `SEARCH_OBSERVERS`, inside the spans of `SEARCH_SPANS`.
        """
        if not SEARCH_OBSERVERS and not SEARCH_SPANS:
            return self._search(query)
        with contextlib.ExitStack() as spans:
            for start_span in SEARCH_SPANS:
                spans.enter_context(start_span(self.name, query.k))
            started = time.perf_counter()
            results = self._search(query)
            seconds = time.perf_counter() - started
        for observe in SEARCH_OBSERVERS:
            observe(self.name, seconds)
        return results

    def _search(self, query: Query) -> list[SearchResult]:
        if not isinstance(query, Query):
            raise ConfigError(f"search takes a Query, was given {type(query).__name__}")
        if query.vector.shape[0] != self.spec.dimension:
            raise DimensionMismatch(self.name, self.spec.dimension, int(query.vector.shape[0]))
        check_query_vector(self.spec, query.vector)
        if self.cache is not None:
            cached = self.cache.get_results(self._cache_name, query.cache_key)
            if cached is not None:
                return cached
        if query.as_of is None and not query.exact:
            results = self._graph_results(query)
            if results is not None:
                if self.cache is not None:
                    self.cache.put_results(self._cache_name, query.cache_key, results)
                return results
        pairs = self._partition_search(query)
        if pairs is None:
            with self._reader() as session:
                pairs = self._nearest(session, query)
        results = self._described(pairs)
        if self.cache is not None:
            self.cache.put_results(self._cache_name, query.cache_key, results)
        return results

    def _graph_results(self, query: Query) -> list[SearchResult] | None:
        """The answer of the graphs and their unsealed segments, described, for a query without a filter
        or filtered on the partition key only (None for any other, or when no graph can answer); widened
        when items another process deleted since a graph was sealed (still in it, no longer described)
        leave fewer than `k`."""
        if query.where is None:
            search = self._index_search
        else:
            partitions, rest = self._split(query.where)
            if rest is not None or partitions is None or self._partition_graphs is None:
                return None
            search = functools.partial(self._partitions_search, partitions)
        fetch = query.k
        # One read of the version serves the search and the description of its answer.
        version = self._hot.version(self._collection_id)
        while True:
            pairs = search(None, query, None, fetch=fetch, version=version)
            if pairs is None:
                return None
            results = self._described(pairs, version=version)
            if len(results) >= query.k or len(pairs) < fetch or fetch >= self._vectors.max_k:
                return results[: query.k]
            fetch = min(4 * fetch, self._vectors.max_k)

    def _partitions_search(
        self, partitions: list[str], _session: None, query: Query, _extra: None, *, fetch: int, version: int
    ) -> list[tuple[int, float]] | None:
        assert self._partition_graphs is not None
        pairs: list[tuple[int, float]] = []
        for partition in partitions:
            found = self._partition_graphs.search(query.vector, fetch, self._breadth(query), partition, version)
            if found is None:
                return None
            pairs.extend(found)
        return sorted(pairs, key=lambda pair: (pair[1], pair[0]))[:fetch]

    def _described(self, pairs: list[tuple[int, float]], *, version: int | None = None) -> list[SearchResult]:
        """`pairs` as results, each item's key, metadata and timestamp read from the database, or (given the
        collection's current `version`, on the graph paths) from what this store read of them at that
        version: reading ten rows cost 0.1 ms of a 0.4 ms search (measured). Any write, by any process,
        moves the version and empties that memory."""
        ids = [number for number, _ in pairs]
        if version is None:
            described = self._read_descriptions(ids)
        else:
            described = self._descriptions
            if self._descriptions_version != version:
                described.clear()
                self._descriptions_version = version
            missing = [number for number in ids if number not in described]
            if missing:
                read = self._read_descriptions(missing)
                if len(described) + len(read) > DESCRIPTIONS_HELD:
                    described.clear()
                described.update(read)
        results = []
        for number, distance in pairs:
            item = described.get(number)
            if item is not None:  # deleted between the search and this read
                results.append(SearchResult(item[0], distance, item[1], item[2]))
        return results

    @property
    def index_file(self) -> Path | None:
        """Where the HNSW index is saved (None when the database has no file)."""
        return index_path(self.database_url, self.name)

    @property
    def index_status(self) -> str:
        """``"exact"`` (no index asked for), ``"fresh"`` (the graph holds every item), ``"behind"`` (items
        written since it was sealed are searched exactly beside it) or ``"missing"`` (no graph yet)."""
        if self._keeper is None:
            return "exact"
        return self._keeper.status(self._hot.version(self._collection_id))

    @property
    def index_size(self) -> int | None:
        """How many vectors the HNSW graph in memory holds (None without one)."""
        return None if self._keeper is None else self._keeper.size()

    def _read_descriptions(self, ids: list[int]) -> dict[int, tuple[str, Mapping[str, Any], datetime]]:
        """Each stored one of `ids`' key, metadata and timestamp, read from the database."""
        read = self._hot.describe(ids)
        return {number: (key, meta, from_microseconds(at)) for number, (key, meta, at) in read.items()}

    @property
    def index_subspace_rank(self) -> int | None:
        """The dimension of the exact subspace the HNSW graph searches in, when the stored vectors span one
        much smaller than theirs (`models.ann_index`); None when it searches whole vectors or has no graph."""
        return None if self._keeper is None else self._keeper.subspace_rank()

    @property
    def segment_size(self) -> int | None:
        """How many items are not in the HNSW graph yet (searched exactly beside it); None without an
        index, or when there are too many to scan (`models.vector_index.SEGMENT_LIMIT`)."""
        if self._keeper is None:
            return None
        return self._keeper.segment_size(self._hot.version(self._collection_id))

    def seal(self) -> int:
        """Merge every item not yet in the HNSW graph into it, drop what is no longer stored, save the
        graph beside the database, and return how many items were merged."""
        keeper = self._require_index()
        with self._reader() as session:
            version = self._stored_version(session)
            stored = memory_items.item_ids(session, self._collection_id)
            partitions = memory_items.partitions(session, self._collection_id)
        merged = keeper.seal(version, stored_ids=stored)
        if self._partition_graphs is not None:
            self._partition_graphs.seal(partitions, version, self._partition_ids)
        return merged

    def _partition_ids(self, partition: str) -> np.ndarray:
        with self._reader() as session:
            return memory_items.partition_ids(session, self._collection_id, partition)

    def rebuild_index(self) -> int:
        """Build the HNSW graph from every stored vector, save it atomically, return its size."""
        keeper = self._require_index()
        with self._reader() as session:
            version = self._stored_version(session)
            total = memory_items.count(session, self._collection_id)
            index = HnswIndex(
                dimension=self.spec.dimension, metric=self.spec.metric, config=self.hnsw, capacity=max(total, 1)
            )
            for ids, matrix in self.full_vector_batches(session):
                index.add(ids, matrix)
        keeper.replace(index, version)
        return len(index)

    def _require_index(self) -> IndexKeeper:
        if self._keeper is None:
            raise ConfigError(f"collection {self.name!r} was opened with index_type='exact'; it has no index")
        return self._keeper

    def save_index(self) -> None:
        """Write the HNSW index beside the database, atomically (nothing without a file or a fresh index)."""
        if self._keeper is not None:
            self._keeper.save()

    def full_vector_batches(self, session: Session) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, float32 matrix) batches of every stored full-precision vector."""
        yield from memory_items.scan_full_vectors(session, self._collection_id, self.spec)

    def close(self) -> None:
        """Seal the HNSW graph if this store wrote (`seal`: the items written go into the graph, which is
        saved), else save it if a background merge changed it; then drop it and the cached entries.

        The database stays open for other users. Also called on leaving a ``with VectorDB(...)`` block.
        """
        try:
            if self._keeper is not None and self._wrote:
                self.seal()
            elif self._keeper is not None:
                self._keeper.save_if_changed()
        finally:
            if self._keeper is not None:
                self._keeper.close()
            if self._partition_graphs is not None:
                self._partition_graphs.close()
            if self.cache is not None:
                self.cache.invalidate(self._cache_name)

    def __enter__(self) -> VectorDB:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()


def _one(timestamp: datetime | None) -> list[datetime] | None:
    return None if timestamp is None else [timestamp]
