"""One HNSW graph per partition: a query filtered to one symbol searches that symbol's graph.

A filter inside the traversal of the collection's one graph costs a Python call per visited node (hnswlib's
``filter=``): 27 ms at the median for one symbol of 50 over 50,000 vectors, measured. A graph per
partition answers in the time of a search of a graph 50 times smaller. The graphs are built when the
collection is sealed, kept in files beside the main graph (``<name>.hnsw.parts/<digest>.hnsw``, each
recording its partition and the version it was sealed at) and loaded on a partition's first query.

Items written to a partition after its graph was sealed are its unsealed segment, scanned exactly and
merged, as for the main graph (`models.vector_index`). A partition without a graph (fewer than
`GRAPH_MIN_ITEMS` items when last sealed, or never sealed) is searched exactly by the vector backend.
Every saved partition graph is loaded in a background thread when the store opens, so that no query pays
for loading one (a query for a partition not loaded yet loads it itself).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.ann_index import HnswConfig, HnswIndex
from models.vector_index import VersionToken, graph_answer, same_history
from models.vector_segment import Segment, VectorReader, current_segment, scan_segment
from neuraltrade.errors import IndexFileError

logger = logging.getLogger(__name__)

#: A partition graph's unsealed segment is scanned exactly while it holds at most this many items.
SCAN_LIMIT = 20_000
#: A partition gets a graph of its own at sealing once it holds at least this many items; smaller ones
#: are searched exactly by the vector backend (sqlite-vec: 0.7 ms for 1,000 x 512 float32).
GRAPH_MIN_ITEMS = 1_000

#: The written version of a partition's items written after a version: (after, partition) -> {id: version}.
PartitionList = Callable[[int, str], dict[int, int]]
#: How many of a partition's items were written after a version, up to another: (after, through, partition).
PartitionCount = Callable[[int, int, str], int]


class PartitionGraphs:
    """The per-partition graphs and unsealed segments of one collection, in this process."""

    def __init__(
        self,
        *,
        folder: Path | None,
        state: dict[str, object],
        dimension: int,
        metric: str,
        config: HnswConfig,
        partition_list: PartitionList,
        partition_count: PartitionCount,
        vectors_of: VectorReader,
        version_token: VersionToken,
    ) -> None:
        self._folder = folder
        self._state = state
        self._dimension = dimension
        self._metric = metric
        self._config = config
        self._partition_list = partition_list
        self._partition_count = partition_count
        self._vectors_of = vectors_of
        self._version_token = version_token
        self._lock = threading.RLock()
        # partition -> (graph or None, the version it was sealed at; -1 without a graph)
        self._graphs: dict[str, tuple[HnswIndex | None, int]] = {}
        self._segments: dict[str, Segment] = {}

    def search(
        self, vector: np.ndarray, k: int, ef: int | None, partition: str, stored_version: int
    ) -> list[tuple[int, float]] | None:
        """The `k` nearest of `partition` (graph and unsealed segment merged), or None when it has no
        graph and too many items to scan."""
        graph, sealed = self._graph(partition)
        if graph is None:
            return None
        segment = self._segment(partition, sealed, stored_version, graph)
        if segment is None:
            return None
        pairs: list[tuple[int, float]] = []
        if len(graph):
            pairs.extend(graph_answer(graph, vector, k, ef, segment.written, len(segment)))
        if len(segment):
            pairs.extend(scan_segment(segment, vector, k, self._metric))
        pairs.sort(key=lambda pair: (pair[1], pair[0]))
        return pairs[:k]

    def _segment(self, partition: str, sealed: int, stored_version: int, graph: HnswIndex) -> Segment | None:
        with self._lock:
            old = self._segments.get(partition)
            if old is not None and old.version == stored_version:
                return old
            segment = current_segment(
                old,
                base=sealed,
                version=stored_version,
                written_since=lambda after: self._partition_list(after, partition),
                count_since=lambda after, through: self._partition_count(after, through, partition),
                vectors_of=self._vectors_of,
                dimension=self._dimension,
                metric=self._metric,
                subspace=graph.subspace,
                limit=SCAN_LIMIT,
            )
            if segment is None:
                self._segments.pop(partition, None)
                return None
            self._segments[partition] = segment
            return segment

    def _graph(self, partition: str) -> tuple[HnswIndex | None, int]:
        held = self._graphs.get(partition)
        if held is None:
            loaded = self._load(partition)
            with self._lock:
                held = self._graphs.setdefault(partition, loaded)
        return held

    def preload(self) -> None:
        """Load every saved partition graph in a background thread."""
        if self._folder is None or not self._folder.is_dir():
            return
        threading.Thread(target=self._preload, name="partition-graphs", daemon=True).start()

    def _preload(self) -> None:
        assert self._folder is not None
        for sidecar in sorted(self._folder.glob("*.hnsw.json")):
            try:
                partition = json.loads(sidecar.read_text(encoding="utf-8"))["state"]["partition"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # `_load` names what is wrong with it when the partition is queried
            if isinstance(partition, str):
                self._graph(partition)

    def _load(self, partition: str) -> tuple[HnswIndex | None, int]:
        path = self.path(partition)
        if path is None or not path.exists():
            return None, -1
        try:
            graph, state = HnswIndex.load(path)
        except IndexFileError as error:
            logger.warning("HNSW graph of partition %r is unusable; searching it exactly: %s", partition, error)
            return None, -1
        expected = {**self._state, "partition": partition}
        if any(state.get(name) != value for name, value in expected.items()):
            logger.warning("HNSW graph file %s belongs to another collection or partition; ignored", path)
            return None, -1
        if not same_history(state, self._version_token, path):
            return None, -1
        return graph, int(state.get("version", -1))

    def path(self, partition: str) -> Path | None:
        """Where the graph of `partition` is saved (a digest names it: partition values are any text)."""
        if self._folder is None:
            return None
        digest = hashlib.blake2b(partition.encode("utf-8"), digest_size=12).hexdigest()
        return self._folder / f"{digest}.hnsw"

    def seal(
        self,
        partitions: Sequence[str],
        stored_version: int,
        stored_ids: Callable[[str], np.ndarray],
    ) -> int:
        """Bring every partition's graph to `stored_version`: add what was written since, drop what is no
        longer stored, save it. Partitions under `GRAPH_MIN_ITEMS` keep no graph. Return how many
        vectors went into graphs."""
        added = 0
        token = self._version_token(stored_version)  # one read for every partition sealed at that version
        for partition in partitions:
            graph, sealed = self._graph(partition)
            ids_now = stored_ids(partition)
            if graph is None and len(ids_now) < GRAPH_MIN_ITEMS:
                continue
            if graph is None:
                graph, sealed = (
                    HnswIndex(
                        dimension=self._dimension, metric=self._metric, config=self._config, capacity=len(ids_now)
                    ),
                    -1,
                )
            written = self._partition_list(sealed, partition)
            if written:
                ids, matrix = self._vectors_of(list(written))
                graph.reserve(len(graph) + len(ids))
                graph.add(ids, matrix)
                added += len(ids)
            graph.remove(set(graph.ids().tolist()) - set(ids_now.tolist()))
            path = self.path(partition)
            if path is not None:
                state = {
                    **self._state,
                    "partition": partition,
                    "version": stored_version,
                    "token": token,
                }
                graph.save(path, state=state)
            with self._lock:
                self._graphs[partition] = (graph, stored_version)
                self._segments.pop(partition, None)
        return added

    def size(self, partition: str) -> int | None:
        """How many vectors the graph of `partition` holds (None without one)."""
        graph, _ = self._graph(partition)
        return None if graph is None else len(graph)

    def remove(self, ids: Sequence[int]) -> None:
        """Remove items this process deleted from every loaded partition graph."""
        with self._lock:
            for graph, _ in self._graphs.values():
                if graph is not None:
                    graph.remove(ids)

    def close(self) -> None:
        """Drop the graphs and segments from memory."""
        with self._lock:
            self._graphs.clear()
            self._segments.clear()
