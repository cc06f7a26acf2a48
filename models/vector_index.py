"""A collection's HNSW index in this process: loaded from its file, kept in step, known fresh or stale.

The index file (``<db>.indexes/<name>.hnsw``) records the collection version it reflects. An index is
*fresh* while that version equals the stored one: this process's own writes keep it so, a write by
anyone else makes it *stale*, and a stale or missing index is never searched (the exact path answers).
Maintenance rebuilds the file; a process holding a stale index picks up a fresh file by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.ann_index import HnswConfig, HnswIndex
from neuraltrade.errors import IndexFileError

logger = logging.getLogger(__name__)

#: Seconds between looks for a newer index file while the one in memory is stale or missing.
RELOAD_INTERVAL_SECONDS = 5.0


class IndexKeeper:
    """Holds one collection's HNSW index for a `VectorDB`, and the version it reflects."""

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._collection = collection
        self._state = {"collection_id": collection_id, "fingerprint": fingerprint_digest}
        self._dimension = dimension
        self._metric = metric
        self._config = config
        self._clock = clock
        self._lock = threading.RLock()
        self._index: HnswIndex | None = None
        self._version = -1
        self._looked_at = -float("inf")
        self._dirty = False

    def open(self, stored_version: int, *, stored_count: int) -> None:
        """Load the index file; without one, start an empty index if the collection is empty.

        A file that claims the stored version but holds another number of vectors is refused: an index
        that is "fresh" and wrong (AgentDB's silently empty index) would answer every query with nothing.
        """
        with self._lock:
            if self._load() and self._version == stored_version and len(self._index or ()) != stored_count:
                logger.warning(
                    "HNSW index file %s holds %d vectors, the collection %d; searching exactly until a rebuild",
                    self.path,
                    len(self._index or ()),
                    stored_count,
                )
                self._index, self._version = None, -1
            if self._index is not None or stored_count:
                if self._index is not None and self._version != stored_version:
                    logger.warning("HNSW index of %r is stale; searching exactly until it is rebuilt", self._collection)
                return
            # An empty collection starts a fresh, empty index that then follows every write.
            self._index = HnswIndex(dimension=self._dimension, metric=self._metric, config=self._config)
            self._version = stored_version

    def _load(self) -> bool:
        self._looked_at = self._clock()
        if self.path is None or not self.path.exists():
            return False
        try:
            index, state = HnswIndex.load(self.path)
        except IndexFileError as error:
            logger.warning(
                "HNSW index of %r is unusable; searching exactly until a rebuild: %s", self._collection, error
            )
            return False
        if any(state.get(name) != value for name, value in self._state.items()):
            logger.warning("HNSW index file %s belongs to another collection or embedder; ignored", self.path)
            return False
        self._index = index
        self._version = int(state.get("version", -1))
        return True

    def status(self, stored_version: int) -> str:
        """``"fresh"``, ``"stale"`` or ``"missing"``."""
        with self._lock:
            if self._index is None:
                return "missing"
            return "fresh" if self._version == stored_version else "stale"

    def search(
        self, vector: np.ndarray, k: int, ef: int | None, stored_version: int
    ) -> tuple[HnswIndex, np.ndarray, np.ndarray] | None:
        """Return (index, ids, distances) of the `k` nearest, or None if the index is not fresh."""
        with self._lock:
            fresh = self._version == stored_version and self._index is not None
            waited = self._clock() - self._looked_at >= RELOAD_INTERVAL_SECONDS
            if not fresh and not (waited and self._reload(stored_version)):
                return None
            assert self._index is not None
            ids, values = self._index.search(vector, k, ef=ef)
            return self._index, ids, values

    def _reload(self, stored_version: int) -> bool:
        # A newer file (written by maintenance in another process) may match the store again.
        self._load()
        return self._index is not None and self._version == stored_version

    def follow(
        self,
        version: int,
        *,
        added: tuple[np.ndarray, np.ndarray] | None = None,
        removed: Sequence[int] = (),
    ) -> None:
        """Apply this process's committed write, which made the collection `version`."""
        with self._lock:
            if self._index is None:
                return
            if self._version != version - 1:
                # Another writer got in between: the index no longer matches the store.
                self._version = -1
                return
            if removed:
                self._index.remove(removed)
            if added is not None:
                self._index.add(*added)
            self._version = version
            self._dirty = True

    def forget(self) -> None:
        """Mark the index stale (a write this process cannot follow, e.g. in a caller's transaction)."""
        with self._lock:
            self._version = -1

    def replace(self, index: HnswIndex, version: int) -> None:
        """Adopt a newly built `index` of collection `version` and save it."""
        with self._lock:
            self._index = index
            self._version = version
            self._dirty = True
        self.save()

    def save(self) -> None:
        """Write the index beside the database, atomically (nothing without a file or a fresh index).

        Raises
        ------
        IndexFileError
            If the file cannot be written (the index in memory is kept).
        """
        with self._lock:
            if self.path is None or self._index is None or self._version < 0:
                return
            try:
                self._index.save(self.path, state={**self._state, "version": self._version})
            except OSError as error:  # e.g. its folder cannot be made, or the disk is full
                raise IndexFileError(str(self.path), f"cannot be written: {error}") from error
            self._dirty = False

    def save_if_changed(self) -> None:
        """Save the index if this process changed it since it was loaded or saved."""
        with self._lock:
            if self._dirty:
                self.save()

    def size(self) -> int | None:
        """Return how many vectors the index holds, or None without an index."""
        with self._lock:
            return None if self._index is None else len(self._index)

    def close(self) -> None:
        """Drop the index from memory."""
        with self._lock:
            self._index = None
            self._version = -1
