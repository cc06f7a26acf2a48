"""A collection's HNSW graph in this process, and the unsealed segment of items written since it was built.

Writes never touch the graph: they only store rows (`models.vector_store`). The graph covers every item
written up to its *sealed* version (the collection version it was built or last merged at, recorded in
its file ``<db>.indexes/<name>.hnsw``); the items written after it (``memory_items.written_version`` above
the sealed version) form the *unsealed segment*. Every search asks the graph and scans the segment
exactly, and merges the two answers, the way Lucene and Milvus treat unsealed segments: so a search sees
every committed item at once, from this process or another, and never a stale graph's answer alone.

The segment is read from the database when the collection's version changes (its ids and written
versions, then only the vectors not already held). hnswlib cannot add to a graph while it is searched
(nmslib/hnswlib#562), so when the segment reaches `MERGE_THRESHOLD` items a background thread builds a
*delta graph* of every item written since the main graph was sealed, beside it; once complete it answers
with the others and the segment shrinks to what came after. `VectorDB.seal` (and maintenance, and closing
a store that wrote) merges everything into the main graph and saves it with its new sealed version.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.ann_index import HnswConfig, HnswIndex, sidecar_path
from models.vector_segment import CountSince, Segment, VectorReader, WrittenSince, current_segment, scan_segment
from neuraltrade.errors import IndexFileError

logger = logging.getLogger(__name__)

#: Segment size at which a search starts building a delta graph of the unsealed items in the background.
#: A segment of 5,000 x 512 float32 is scanned in about 0.5 ms.
MERGE_THRESHOLD = 5_000
#: Past this many unsealed items a search goes to the exact path and only `seal` (maintenance) merges:
#: scanning or merging that many in a searching process would stall it for seconds.
SEGMENT_LIMIT = 100_000

#: Vectors added per call (and per hold of the graph's lock) when sealing: large, so that hnswlib's
#: threads stay busy; a search in the sealing process waits for the call it arrived during.
SEAL_STEP = 50_000

#: Graph builds and loads running in the background. A process that exits while hnswlib's threads build
#: a graph is aborted by the C++ runtime ("terminate called without an active exception", status 134),
#: so exiting waits for them.
_BACKGROUND: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def _wait_for_background() -> None:
    for thread in list(_BACKGROUND):
        thread.join()


def _start_background(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    _BACKGROUND.add(thread)
    thread.start()
    return thread


#: Reads the token of one of the collection's versions in the database (None if it has no such version).
VersionToken = Callable[[int], "str | None"]


class _Either:
    """Membership in either of two collections of ids, without building their union."""

    __slots__ = ("first", "second")

    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second

    def __contains__(self, item: object) -> bool:
        return item in self.first or item in self.second


class IndexKeeper:
    """Holds one collection's HNSW graph and unsealed segment for a `VectorDB`."""

    def __init__(
        self,
        *,
        path: Path | None,
        collection: str,
        collection_id: int,
        fingerprint_digest: str,
        dimension: int,
        metric: str,
        config: HnswConfig,
        segment_list: WrittenSince,
        count_since: CountSince,
        vectors_of: VectorReader,
        version_token: VersionToken,
    ) -> None:
        self.path = path
        self._collection = collection
        self._state = {"collection_id": collection_id, "fingerprint": fingerprint_digest}
        self._dimension = dimension
        self._metric = metric
        self._config = config
        self._segment_list = segment_list
        self._count_since = count_since
        self._vectors_of = vectors_of
        self._version_token = version_token
        self._lock = threading.RLock()
        self._index: HnswIndex | None = None
        self._sealed = -1
        self._segment: Segment | None = None
        # The delta graph: items written after the main graph was sealed, up to `_delta_version`.
        self._delta: HnswIndex | None = None
        self._delta_version = -1
        self._delta_ids: frozenset[int] = frozenset()
        self._building: threading.Thread | None = None
        self._dirty = False
        # The (mtime, size) of the graph's sidecar when this process last read or wrote it, and the thread
        # loading a graph another process sealed since (`_adopt_sealed_file`).
        self._file_seen: tuple[int, int] | None = None
        self._adopting: threading.Thread | None = None

    # -- the graph ------------------------------------------------------------------------------

    def open(self, stored_version: int, *, stored_count: int) -> None:
        """Load the graph file if it is usable; without one the graph starts empty at version -1 and
        every item is in the segment until a merge.

        A graph holding fewer vectors than the items written up to its sealed version is refused: a graph
        that is "fresh" and wrong (AgentDB's silently empty index) would answer every query with nothing.
        """
        with self._lock:
            if self._load(stored_version) and self._index is not None:
                sealed_items = stored_count - len(self._segment_list(self._sealed))
                if len(self._index) < sealed_items:
                    logger.warning(
                        "HNSW graph file %s holds %d vectors for the %d items sealed in it; not used",
                        self.path,
                        len(self._index),
                        sealed_items,
                    )
                    self._index = None
            if self._index is None:
                self._index = HnswIndex(dimension=self._dimension, metric=self._metric, config=self._config)
                self._sealed = -1

    def _load(self, stored_version: int) -> bool:
        if self.path is None or not self.path.exists():
            return False
        self._file_seen = _file_state(self.path)
        try:
            index, state = HnswIndex.load(self.path)
        except IndexFileError as error:
            logger.warning("HNSW graph of %r is unusable; rebuilding from the segment: %s", self._collection, error)
            return False
        sealed = self._sealed_version(state, stored_version)
        if sealed is None:
            return False
        self._index, self._sealed, self._segment = index, sealed, None
        self._delta, self._delta_version, self._delta_ids = None, -1, frozenset()
        return True

    def _sealed_version(self, state: dict[str, Any], stored_version: int | None) -> int | None:
        """The version a loaded graph file was sealed at, if it is of this collection and embedder and of
        this database's history (and, given `stored_version`, not past it); else None, the reason logged."""
        if any(state.get(name) != value for name, value in self._state.items()):
            logger.warning("HNSW graph file %s belongs to another collection or embedder; ignored", self.path)
            return None
        sealed = int(state.get("version", -1))
        if stored_version is not None and sealed > stored_version:
            # Built from a database state this one never reached (a restored backup): it may hold items
            # that are not stored, so it is not used.
            logger.warning(
                "HNSW graph file %s was sealed at version %d, past the collection's %d; ignored",
                self.path,
                sealed,
                stored_version,
            )
            return None
        return sealed if same_history(state, self._version_token, self.path) else None

    def status(self, stored_version: int) -> str:
        """``"fresh"`` (sealed at the stored version: the graph holds every item and nothing else),
        ``"behind"`` (written to since: new items are searched in the segment, deleted ones are filtered
        out) or ``"missing"`` (no graph yet, and the collection has been written to)."""
        with self._lock:
            if self._sealed >= stored_version or stored_version == 0:
                return "fresh"
            return "behind" if self._index is not None and len(self._index) else "missing"

    def size(self) -> int | None:
        """How many vectors the graph holds (None without a graph)."""
        with self._lock:
            return None if self._index is None else len(self._index)

    def subspace_rank(self) -> int | None:
        """The rank of the span the main graph searches in (None without one: it holds whole vectors)."""
        with self._lock:
            subspace = None if self._index is None else self._index.subspace
        return None if subspace is None else subspace.rank

    def segment_size(self, stored_version: int) -> int | None:
        """How many items the segment holds at `stored_version` (None when it is past `SEGMENT_LIMIT`)."""
        segment = self._current_segment(stored_version)
        return None if segment is None else len(segment)

    # -- searching ------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, k: int, ef: int | None, stored_version: int) -> list[tuple[int, float]] | None:
        """Return the `k` nearest (id, distance) pairs of the graph, the delta graph and the segment
        merged, or None when the segment is too large to scan (the caller searches exactly).

        A later layer shadows an earlier one: an item written again is answered from where its newest
        vector is (segment, then delta, then graph), whatever the older layers say of it.
        """
        segment = self._current_segment(stored_version)
        if segment is None:
            return None
        with self._lock:
            index, delta, delta_ids = self._index, self._delta, self._delta_ids
        newer: Any = segment.written
        pairs: list[tuple[int, float]] = []
        if delta is not None and len(delta):
            pairs.extend(graph_answer(delta, vector, k, ef, newer, len(segment)))
            newer = _Either(segment.written, delta_ids)
        if index is not None and len(index):
            pairs.extend(graph_answer(index, vector, k, ef, newer, len(segment) + len(delta_ids)))
        if len(segment):
            pairs.extend(scan_segment(segment, vector, k, self._metric))
        pairs.sort(key=lambda pair: (pair[1], pair[0]))
        if len(segment) >= MERGE_THRESHOLD:
            self._build_delta_in_background()
        return pairs[:k]

    def _current_segment(self, stored_version: int) -> Segment | None:
        with self._lock:
            segment = self._segment
            if segment is not None and segment.version == stored_version:
                return segment
            self._watch_sealed_file()
            self._segment = current_segment(
                self._segment,
                base=self._delta_version if self._delta is not None else self._sealed,
                version=stored_version,
                written_since=self._segment_list,
                count_since=self._count_since,
                vectors_of=self._vectors_of,
                dimension=self._dimension,
                metric=self._metric,
                subspace=None if self._index is None else self._index.subspace,
                limit=SEGMENT_LIMIT,
            )
            return self._segment

    # -- a graph sealed by another process ---------------------------------------------------------

    def _watch_sealed_file(self) -> None:
        """Start loading the graph file if another process saved it since this one last read or wrote it.

        A process that seals (the writer, or maintenance) saves its graph; searching processes then take
        it instead of each scanning the growing segment and building delta graphs of their own. Called
        when the collection's version changes, under the lock; costs one stat.
        """
        if self.path is None or self._dirty or (self._adopting is not None and self._adopting.is_alive()):
            return
        seen = _file_state(self.path)
        if seen is None or seen == self._file_seen:
            return
        self._file_seen = seen
        self._adopting = _start_background(self._adopt_sealed_file, f"adopt-{self._collection}")

    def _adopt_sealed_file(self) -> None:
        assert self.path is not None
        try:
            index, state = HnswIndex.load(self.path)
        except IndexFileError:
            return  # being replaced as it was read: its next change is read again
        # A file saved by another process records its token, which stands for the version check too.
        sealed = self._sealed_version(state, None)
        if sealed is None:
            return
        with self._lock:
            if sealed > self._sealed and not self._dirty:
                self._index, self._sealed, self._segment = index, sealed, None
                self._delta, self._delta_version, self._delta_ids = None, -1, frozenset()

    # -- the delta graph, built off to the side ---------------------------------------------------

    def _build_delta_in_background(self) -> None:
        with self._lock:
            if self._building is not None and self._building.is_alive():
                return
            self._building = _start_background(self._build_delta, f"delta-{self._collection}")

    def _build_delta(self) -> None:
        """Build one graph of every item written since the main graph was sealed, beside it.

        hnswlib cannot add and search one graph at the same time (nmslib/hnswlib#562), so the new items go
        into a graph of their own that no search sees until it is complete; it then replaces the delta
        and the segment shrinks to what was written after. `seal` merges it all into the main graph.
        """
        try:
            with self._lock:
                sealed, segment = self._sealed, self._segment
            if segment is None:
                return
            written = self._segment_list(sealed)
            if not written or len(written) > SEGMENT_LIMIT:
                return
            ids, matrix = self._vectors_of(list(written))
            delta = HnswIndex(dimension=self._dimension, metric=self._metric, config=self._config, capacity=len(ids))
            delta.add(ids, matrix)
            with self._lock:
                if self._sealed == sealed:
                    covered = max(written.values())
                    self._delta, self._delta_version, self._delta_ids = delta, covered, frozenset(ids.tolist())
                    self._segment = None
        except Exception:  # a background thread has nobody to raise to: the segment stays searchable
            logger.exception("building the delta HNSW graph of %r failed", self._collection)

    # -- sealing: everything into the main graph ---------------------------------------------------

    def seal(self, stored_version: int, *, stored_ids: np.ndarray | None = None) -> int:
        """Merge every item written since the graph was sealed into it now, save it, and return how many
        items it merged.

        With `stored_ids` (every id the collection holds), graph entries no longer stored (deleted by
        another process) are removed too.
        """
        self._wait_for_delta()
        with self._lock:
            written = self._segment_list(self._sealed)
            ids, matrix = self._vectors_of(list(written)) if written else (np.empty(0, dtype=np.int64), None)
            if self._index is None:
                self._index = HnswIndex(dimension=self._dimension, metric=self._metric, config=self._config)
        merged = self._add(ids, matrix)
        with self._lock:
            assert self._index is not None
            if stored_ids is not None:
                stale = set(self._index.ids().tolist()) - set(stored_ids.tolist())
                self._index.remove(stale)
            self._sealed = max(stored_version, max(written.values(), default=-1))
            self._delta, self._delta_version, self._delta_ids = None, -1, frozenset()
            self._segment = None
            self._dirty = True
        self.save()
        return merged

    def _add(self, ids: np.ndarray, matrix: np.ndarray | None) -> int:
        index = self._index
        if index is None or matrix is None or len(ids) == 0:
            return 0
        index.reserve(len(index) + len(ids))
        for start in range(0, len(ids), SEAL_STEP):
            index.add(ids[start : start + SEAL_STEP], matrix[start : start + SEAL_STEP])
        return len(ids)

    def _wait_for_delta(self) -> None:
        building = self._building
        if building is not None:
            building.join()

    def remove(self, ids: Sequence[int]) -> None:
        """Remove items this process deleted from the graphs (the segment drops them at its next read)."""
        with self._lock:
            for graph in (self._index, self._delta):
                if graph is not None and ids:
                    graph.remove(ids)
            self._dirty = True

    def replace(self, index: HnswIndex, version: int) -> None:
        """Adopt `index`, built from every item stored at collection `version`, and save it."""
        self._wait_for_delta()
        with self._lock:
            self._index, self._sealed, self._segment, self._dirty = index, version, None, True
            self._delta, self._delta_version, self._delta_ids = None, -1, frozenset()
        self.save()

    def save(self) -> None:
        """Write the graph beside the database with its sealed version, atomically (nothing without a file).

        Raises
        ------
        IndexFileError
            If the file cannot be written (the graph in memory is kept).
        """
        with self._lock:
            if self.path is None or self._index is None or self._sealed < 0:
                return
            try:
                state = {**self._state, "version": self._sealed, "token": self._version_token(self._sealed)}
                self._index.save(self.path, state=state)
            except OSError as error:  # e.g. its folder cannot be made, or the disk is full
                raise IndexFileError(str(self.path), f"cannot be written: {error}") from error
            self._dirty = False
            self._file_seen = _file_state(self.path)

    def save_if_changed(self) -> None:
        """Save the graph if this process changed it since it was loaded or saved."""
        with self._lock:
            if self._dirty:
                self.save()

    def close(self) -> None:
        """Drop the graph and the segment from memory."""
        self._wait_for_delta()
        if self._adopting is not None:
            self._adopting.join()
        with self._lock:
            self._index, self._segment, self._sealed = None, None, -1
            self._delta, self._delta_version, self._delta_ids = None, -1, frozenset()


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(sidecar_path(path))
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def token_matches(state: Mapping[str, Any], version_token: VersionToken) -> bool:
    """Whether the token a graph file recorded is the database's token at the file's sealed version (True
    for a file that records none: written before revision 0009)."""
    if "token" not in state:
        return True
    return version_token(int(state.get("version", -1))) == state["token"]


def same_history(state: dict[str, Any], version_token: VersionToken, path: Path | None) -> bool:
    """Whether the database made the write a graph file was sealed at: its version holds the token the
    file recorded. A file of another history (a database restored from a backup and written to again) is
    not used, even at a version the database has reached. A file that records no token (written before
    revision 0009) is judged by its version alone.
    """
    if token_matches(state, version_token):
        return True
    sealed = int(state.get("version", -1))
    logger.warning(
        "HNSW graph file %s was sealed at version %d of another history of this database (restored from a "
        "backup, or written by another copy); it is not used and is rebuilt at the next seal",
        path,
        sealed,
    )
    return False


def graph_answer(
    graph: HnswIndex, vector: np.ndarray, k: int, ef: int | None, newer: Any, shadowing: int
) -> list[tuple[int, float]]:
    """The graph's `k` nearest that no newer layer holds (`newer`: ids that shadow the graph's)."""
    # Answers shadowed by a newer layer are dropped: ask for as many more as could be shadowed.
    ids, values = graph.search(vector, k + min(shadowing, 3 * k), ef=ef)
    return [(i, d) for i, d in zip(ids.tolist(), values.tolist(), strict=True) if i not in newer]
