"""How `VectorDB` answers a query: HNSW and its unsealed segment, else exact in the vector backend or numpy.

The paths, in the order they are tried:

1. no filter, no ``as_of``: the HNSW graph merged with an exact scan of the items not in it yet (the
   unsealed segment, `models.vector_index`), when the store has an index;
2. a filter on the partition key only: the vector backend's KNN within those partitions (on the hot
   reader);
3. any other filter or ``as_of``: the matching items' full vectors ranked with numpy when at most
   `SCAN_LIMIT` match, else a KNN over the vector storage widened until `k` neighbours pass the filter.

A metric the backend does not rank by (`VectorBackend.ranks`), or a `k` past its `max_k`, is answered
with numpy over the full vectors. Paths 2 and 3 rank exactly, except on a store with an HNSW index
whose backend has an approximate index of its own (pgvector's HNSW, searched with iterative scans within
a partition): a query that does not ask to be exact is then answered by that index.

Every path returns exact distances as `neuraltrade.memory.collection.distances` defines them; quantized candidates
are re-scored with full-precision vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from models import memory_items
from models.ann_index import HnswConfig
from models.tables import CollectionRecord
from models.vector_backend import RowReader, VectorBackend
from models.vector_index import IndexKeeper
from neuraltrade.memory.collection import (
    CollectionSpec,
    Filter,
    Query,
    distances,
    quantize_binary,
    quantize_int8,
    top_k,
)
from neuraltrade.timestamps import to_microseconds

if TYPE_CHECKING:
    from models.memory_items import HotReader

#: A filtered exact search reads the full vectors of at most this many matching items and ranks them
#: with numpy; past it, it widens a KNN over the vector table until enough neighbours pass the filter.
SCAN_LIMIT = 20_000
#: Candidates fetched per wanted result when a KNN must be post-filtered.
FILTER_OVERSAMPLE = 4

Pairs = list[tuple[int, float]]


class VectorSearch:
    """The search paths of `models.vector_store.VectorDB` (a mixin: it reads the store's state)."""

    spec: CollectionSpec
    oversample: int
    hnsw: HnswConfig
    _collection_id: int
    _int8_scale: float | None
    _keeper: IndexKeeper | None
    _hot: HotReader
    _reader: sessionmaker[Session]
    _vectors: VectorBackend

    def _nearest(self, session: Session, query: Query) -> list[tuple[int, float]]:
        partitions, rest = self._split(query.where)
        as_of = None if query.as_of is None else to_microseconds(query.as_of)
        extra = memory_items.condition(rest, partition_key=self.spec.partition_key, as_of=as_of)
        # Without a filter, `VectorDB.search` has already asked the index.
        if partitions is None and extra is not None and not query.exact:
            found = self._index_search(session, query, extra)
            if found is not None:
                return found
        return self._exact_search(session, query, partitions, extra)

    def _partition_search(self, query: Query) -> list[tuple[int, float]] | None:
        """Answer, on the hot reader, an exact query filtered by partition only (None if it is not one)."""
        partitions, rest = self._split(query.where)
        if rest is not None or query.as_of is not None or not self._vectors.ranks(self.spec.metric):
            return None
        if (self._keeper is not None and partitions is None and not query.exact) or query.k > self._vectors.max_k:
            return None
        if partitions == []:
            return []
        return self._nearest_in_table(self._hot.rows, query, partitions, _all, breadth=self._approximate(query))

    def _split(self, where: Filter | None) -> tuple[list[str] | None, Filter | None]:
        """Separate the conditions on the partition key, which the vector backend applies itself."""
        key = self.spec.partition_key
        if where is None or key is None:
            return None, where
        partitions: set[str] | None = None
        rest: list[Filter] = []
        for part in where.conjuncts():
            if part.name == key and part.operator in ("eq", "in"):
                values = part.value if isinstance(part.value, tuple) else (part.value,)
                strings = {value for value in values if isinstance(value, str)}
                partitions = strings if partitions is None else partitions & strings
            else:
                rest.append(part)
        remaining = None
        for part in rest:
            remaining = part if remaining is None else remaining & part
        return (None if partitions is None else sorted(partitions)), remaining

    def _exact_search(
        self, session: Session, query: Query, partitions: list[str] | None, extra: Any
    ) -> list[tuple[int, float]]:
        if partitions == []:
            return []
        ranked = self._vectors.ranks(self.spec.metric) and query.k <= self._vectors.max_k
        if extra is None and ranked:
            return self._nearest_in_table(_session_rows(session), query, partitions, _all)
        if ranked:
            candidates = memory_items.count(session, self._collection_id, partitions, extra)
            if candidates == 0:
                return []
            if candidates > SCAN_LIMIT:
                found = self._post_filtered(session, query, partitions, extra)
                if found is not None:
                    return found
        return self._scan_search(session, query, partitions, extra)

    def _post_filtered(
        self, session: Session, query: Query, partitions: list[str] | None, extra: Any
    ) -> list[tuple[int, float]] | None:
        """KNN over the vector storage, widened until `k` neighbours pass the filter; None past `max_k`.

        Exact: every item outside the fetched neighbours is at least as far as the last one fetched.
        (sqlite-vec's own ``item_id IN (...)`` constraint loses ids that differ by more than 2**31,
        which derived 63-bit ids always do, so the filter is applied here instead.)
        """

        def keep(pairs: list[tuple[int, float]]) -> list[tuple[int, float]]:
            allowed = memory_items.filter_ids(session, [number for number, _ in pairs], extra)
            return [pair for pair in pairs if pair[0] in allowed]

        multiplier = FILTER_OVERSAMPLE
        while True:
            fetch = query.k * multiplier
            found = self._nearest_in_table(
                _session_rows(session), query, partitions, keep, fetch=fetch, breadth=self._approximate(query)
            )
            if len(found) >= query.k:
                return found[: query.k]
            if fetch * (query.oversample or self.oversample) >= self._vectors.max_k:
                return None
            multiplier *= FILTER_OVERSAMPLE

    def _nearest_in_table(
        self,
        rows: RowReader,
        query: Query,
        partitions: list[str] | None,
        keep: Any,
        *,
        fetch: int | None = None,
        breadth: int | None = None,
    ) -> list[tuple[int, float]]:
        """KNN in the vector backend over `partitions` (all when None), `keep` applied to the candidates,
        then re-scored at full precision when the collection is quantized; approximate with `breadth`
        where the backend has an index of its own (`VectorBackend.nearest`)."""
        wanted = fetch or query.k
        quantized = self.spec.quantization != "none"
        depth = wanted * (query.oversample or self.oversample) if quantized else wanted
        payload = self._query_payload(query.vector) if quantized else query.vector
        pairs: list[tuple[int, float]] = []
        for partition in partitions or [None]:  # type: ignore[list-item]
            pairs.extend(self._vectors.nearest(rows, self.spec, payload, depth, partition=partition, breadth=breadth))
        pairs = keep(sorted(pairs, key=lambda pair: (pair[1], pair[0])))
        if not quantized:
            return pairs[:wanted]
        with self._reader() as session:
            ids, matrix = memory_items.full_vectors(session, self.spec, [number for number, _ in pairs])
        return top_k(ids.tolist(), distances(self.spec.metric, query.vector, matrix), wanted)

    def _query_payload(self, vector: np.ndarray) -> np.ndarray:
        if self.spec.quantization == "binary":
            return quantize_binary(vector)[0]
        scale = self._int8_scale or 127.0
        peak = float(np.abs(vector).max())
        if self.spec.metric == "cosine" and peak > 0:
            # Cosine reads direction only: the query's code spans the whole int8 range, so a query much
            # shorter than the stored vectors does not round to zero, whose cosine is undefined.
            scale = 127.0 / peak
        return quantize_int8(vector, scale)

    def _scan_search(
        self, session: Session, query: Query, partitions: list[str] | None, extra: Any
    ) -> list[tuple[int, float]]:
        best: list[tuple[int, float]] = []
        for ids, matrix in memory_items.scan_full_vectors(
            session, self._collection_id, self.spec, partitions=partitions, extra=extra
        ):
            values = distances(self.spec.metric, query.vector, matrix)
            merged = best + top_k(ids.tolist(), values, query.k)
            best = sorted(merged, key=lambda pair: (pair[1], pair[0]))[: query.k]
        return best

    def _index_search(
        self,
        session: Session | None,
        query: Query,
        extra: Any,
        *,
        fetch: int | None = None,
        version: int | None = None,
    ) -> list[tuple[int, float]] | None:
        """The `fetch` (default `query.k`) nearest of the HNSW graph and the unsealed segment, merged;
        post-filtered by `extra`, widened until `k` pass (None: no index, or a segment too large to scan,
        or a filter too narrow for the graph)."""
        if self._keeper is None:
            return None
        if version is None:
            version = self._hot.version(self._collection_id)
        fetch = fetch or (query.k if extra is None else query.k * FILTER_OVERSAMPLE)
        while True:
            pairs = self._keeper.search(query.vector, fetch, self._breadth(query), version)
            if pairs is None:
                return None
            if extra is None or session is None:
                return pairs
            allowed = memory_items.filter_ids(session, [number for number, _ in pairs], extra)
            kept = [pair for pair in pairs if pair[0] in allowed]
            if len(kept) >= query.k or len(pairs) < fetch:
                return kept[: query.k]
            if fetch >= self._vectors.max_k:
                return None
            fetch *= FILTER_OVERSAMPLE

    def _approximate(self, query: Query) -> int | None:
        """The breadth of a backend's own index search for `query`: only a store with an HNSW index
        answers a query that does not ask to be exact approximately (None: exact)."""
        return None if self._keeper is None or query.exact else self._breadth(query)

    def _breadth(self, query: Query) -> int:
        """The query's search breadth, else this store's: a graph saved with another `ef_search` is
        searched as the store that opened it says."""
        return query.ef if query.ef is not None else self.hnsw.ef_search

    def _stored_version(self, session: Session) -> int:
        return int(session.execute(_VERSION, {"id": self._collection_id}).scalar_one())


_VERSION = select(CollectionRecord.version).where(CollectionRecord.id == bindparam("id"))


def _all(pairs: Pairs) -> Pairs:
    return pairs


def _session_rows(session: Session) -> RowReader:
    connection = session.connection()
    return lambda sql, parameters: connection.exec_driver_sql(sql, parameters).all()
