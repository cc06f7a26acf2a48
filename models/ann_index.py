"""The vector memory's in-process approximate nearest-neighbour index: an HNSW graph over hnswlib.

hnswlib was chosen by measurement: at equal recall it answered single queries in about half the time of usearch.
Distances are the store's own: cosine ``1 - cos(q, x)``, l2 the Euclidean distance, inner_product ``1 - q·x``.
Every change and search holds one lock, so an index may be shared between threads; they then run one at a time.

When the first vectors added to an empty graph lie in a span much smaller than their dimension (the default
embedder's 512-d vectors span 107 dimensions), the graph holds their coordinates in that span instead
(`neuraltrade.memory.subspace`): the same distances, computed in a fifth of the time. A vector added later
off that span turns the graph back into one of full vectors before it goes in.
"""

from __future__ import annotations

import glob
import hashlib
import json
import operator
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from models.kill_points import kill_point
from neuraltrade.canonical import digest, to_plain
from neuraltrade.errors import ConfigError, DimensionMismatch, IndexFileError, InvalidItemId, InvalidVector
from neuraltrade.memory.collection import distance_metric
from neuraltrade.memory.subspace import Subspace

#: Version 2 adds the graph's subspace to the sidecar; a version 1 file has none, and loads as before.
FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
# hnswlib's names of the spaces it searches, by the geometry of `neuraltrade.memory.collection`'s metrics.
_SPACES = {"angular": "cosine", "euclidean": "l2", "dot": "ip"}
_MAX_ID = 2**63 - 1
# Hashing only both ends keeps a load of a multi-GB index fast; the size check catches truncation in between.
_CHECKED_BYTES = 1 << 20
# hnswlib draws node levels from this seed; fixing it makes a build from the same input reproducible.
_SEED = 100
_NAME = "hnsw index"
# Names the temporary files of saves, with the process id (`remove_leftovers`); no dots, which part names.
_HOST = socket.gethostname().replace(".", "_").replace("/", "_") or "host"


@dataclass(frozen=True, kw_only=True)
class HnswConfig:
    """Parameters of the HNSW graph; all of them are in its digest."""

    m: int = 16
    ef_construction: int = 200
    #: Search breadth. 256 reaches recall@10 0.95 over a million of the default embedder's vectors (0.855
    #: at 64, 0.921 at 128) with p99 0.88 ms; over 100,000 it costs p99 0.45 ms instead of 0.23 ms at 64
    #: (docs/benchmarks.md). `Query(ef=...)` overrides it per search.
    ef_search: int = 256
    threads: int = 2

    def __post_init__(self) -> None:
        for name, low, high in (("m", 2, 1024), ("ef_construction", 1, 1 << 20), ("ef_search", 1, 1 << 20)):
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= high:
                raise ConfigError(f"hnsw {name} must be an integer in [{low}, {high}], was {value!r}")
        if not _is_int(self.threads) or self.threads < 1:
            raise ConfigError(f"hnsw threads must be a positive integer, was {self.threads!r}")

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


class HnswIndex:
    """An HNSW index of float32 vectors labelled by non-negative 63-bit integer ids.

    Parameters
    ----------
    dimension
        The dimension of every vector.
    metric
        One of `neuraltrade.memory.collection.METRICS`.
    config
        Graph parameters.
    capacity
        Slots reserved at first; `add` grows it by doubling.
    """

    def __init__(self, *, dimension: int, metric: str, config: HnswConfig, capacity: int = 1024) -> None:
        if not _is_int(capacity) or capacity < 1:
            raise ConfigError(f"hnsw capacity must be a positive integer, was {capacity!r}")
        self._prepare(dimension, metric, config)
        self._initialise(capacity)

    def _prepare(self, dimension: int, metric: str, config: HnswConfig, subspace: Subspace | None = None) -> None:
        if not _is_int(dimension) or dimension < 1:
            raise ConfigError(f"hnsw dimension must be a positive integer, was {dimension!r}")
        geometry = distance_metric(metric, what="hnsw metric").geometry
        if not isinstance(config, HnswConfig):
            raise ConfigError(f"hnsw config must be an HnswConfig, was {type(config).__name__}")
        self._dimension = int(dimension)
        self._metric = metric
        self._config = config
        self._lock = threading.RLock()
        self._geometry = geometry
        if subspace is not None and subspace.dimension != self._dimension:
            raise ConfigError(f"a subspace of {subspace.dimension}-d vectors cannot serve a {dimension}-d hnsw index")
        self._subspace = subspace
        self._index = hnswlib.Index(space=_SPACES[geometry], dim=self._graph_dimension)
        # hnswlib has no cheap "is this label live" query, so the live ids are kept here.
        self._live: set[int] = set()

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, *, metric: str, config: HnswConfig) -> HnswIndex:
        """Return a new index of `vectors` labelled `ids` (a later duplicate id wins)."""
        matrix = np.asarray(vectors)
        dimension = int(matrix.shape[1]) if matrix.ndim == 2 else -1
        if dimension < 1:
            raise InvalidVector(f"{_NAME} is built from a matrix of vectors, was given shape {matrix.shape}")
        index = cls(dimension=dimension, metric=metric, config=config, capacity=max(len(matrix), 1))
        index.add(ids, matrix)
        return index

    @property
    def dimension(self) -> int:
        """The dimension of every vector."""
        return self._dimension

    @property
    def subspace(self) -> Subspace | None:
        """The span whose coordinates the graph holds, or None when it holds the vectors themselves."""
        return self._subspace

    @property
    def _graph_dimension(self) -> int:
        return self._dimension if self._subspace is None else self._subspace.rows

    @property
    def metric(self) -> str:
        """How distance is measured, one of `neuraltrade.memory.collection.METRICS`."""
        return self._metric

    @property
    def config(self) -> HnswConfig:
        """The graph parameters."""
        return self._config

    @property
    def capacity(self) -> int:
        """Slots reserved, deleted ones included."""
        return int(self._index.get_max_elements())

    def __len__(self) -> int:
        return len(self._live)

    def ids(self) -> np.ndarray:
        """Return the ids of every live vector (int64, in no set order)."""
        with self._lock:
            return np.fromiter(self._live, dtype=np.int64, count=len(self._live))

    def reserve(self, count: int) -> None:
        """Make room for `count` vectors at least, so that adding them does not resize the graph piecemeal."""
        with self._lock:
            if count > self.capacity:
                self._index.resize_index(count)

    def __contains__(self, id: object) -> bool:
        return id in self._live

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add `vectors` labelled `ids`; an id already present is replaced, so it stays live exactly once."""
        labels, matrix = self._check_ids(ids), self._check_vectors(vectors)
        if len(labels) != len(matrix):
            raise ConfigError(f"{_NAME}: {len(labels)} ids were given for {len(matrix)} vectors")
        # The last occurrence of a repeated id wins, as if the rows had been added one after another.
        reversed_unique = np.unique(labels[::-1], return_index=True)[1]
        keep = np.sort(len(labels) - 1 - reversed_unique)
        labels, matrix = labels[keep], matrix[keep]
        with self._lock:
            matrix = self._coordinates(matrix)
            present = np.fromiter((label in self._live for label in labels.tolist()), dtype=bool, count=len(labels))
            vacant = self._index.element_count - len(self._live)
            # A deleted id must be revived in its own slot: hnswlib would otherwise put it in any free slot
            # and later drop it from its label table when that old slot is reused.
            for position in np.flatnonzero(~present).tolist() if vacant else []:
                try:
                    self._index.unmark_deleted(int(labels[position]))
                except RuntimeError:
                    continue
                present[position] = True
                self._live.add(int(labels[position]))
                vacant -= 1
                if vacant == 0:
                    break
            if present.any():
                # hnswlib's replace_deleted would give a live id a second slot, so updates go in place.
                self._index.add_items(matrix[present], labels[present], num_threads=self._config.threads)
            fresh = ~present
            if fresh.any():
                needed = self._index.element_count + max(0, int(fresh.sum()) - vacant)
                if needed > self.capacity:
                    self._index.resize_index(max(needed, 2 * self.capacity))
                self._index.add_items(
                    matrix[fresh], labels[fresh], num_threads=self._config.threads, replace_deleted=True
                )
                self._live.update(labels[fresh].tolist())

    def _coordinates(self, matrix: np.ndarray) -> np.ndarray:
        """What the graph stores for `matrix`: the vectors, or their coordinates in its subspace. The first
        vectors of an empty graph decide whether it has a subspace; one off the subspace ends it."""
        if self._subspace is None and self._index.element_count == 0:
            found = Subspace.find(matrix)
            if found is not None:
                self._reshape(found, np.empty(0, dtype=np.int64), np.empty((0, found.rows), dtype=np.float32))
        if self._subspace is None:
            return matrix
        coordinates = self._subspace.project(matrix)
        if not self._subspace.outside(matrix, coordinates).any():
            return coordinates
        live = self.ids()
        stored = np.empty((0, self._subspace.rows), dtype=np.float32)
        if len(live):
            stored = np.asarray(self._index.get_items(live), dtype=np.float32)
        self._reshape(None, live, self._subspace.lift(stored))
        return matrix

    def _initialise(self, capacity: int) -> None:
        """Make the (new, empty) hnswlib graph ready for `capacity` vectors, with the configuration's
        parameters."""
        self._index.init_index(
            max_elements=capacity,
            M=self._config.m,
            ef_construction=self._config.ef_construction,
            random_seed=_SEED,
            allow_replace_deleted=True,
        )
        self._index.set_ef(self._config.ef_search)
        self._index.set_num_threads(self._config.threads)

    def _reshape(self, subspace: Subspace | None, labels: np.ndarray, stored: np.ndarray) -> None:
        """Replace the graph by an empty one over `subspace`'s coordinates (None: full vectors) of the same
        capacity, holding `stored` under `labels`; deleted slots are not carried over."""
        capacity = self.capacity
        self._subspace = subspace
        self._index = hnswlib.Index(space=_SPACES[self._geometry], dim=self._graph_dimension)
        self._initialise(capacity)
        if len(labels):
            self._index.add_items(stored, labels, num_threads=self._config.threads)

    def remove(self, ids: Iterable[int]) -> int:
        """Mark `ids` deleted, ignoring those not present; return how many were removed."""
        removed = 0
        with self._lock:
            for label in {operator.index(item) for item in ids}:
                if label in self._live:
                    self._index.mark_deleted(label)
                    self._live.discard(label)
                    removed += 1
        return removed

    def search(self, vector: np.ndarray, k: int, *, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the ids (int64) and distances (float64) of at most `k` nearest live vectors, nearest first.

        Parameters
        ----------
        vector
            One query of the index's dimension.
        k
            How many neighbours to return; more than the live count returns them all.
        ef
            Search breadth, default ``config.ef_search``; raised to `k` when smaller.
        """
        query = np.asarray(vector)
        if query.ndim != 1:
            raise InvalidVector(f"{_NAME} searches one vector at a time, was given shape {query.shape}")
        if query.dtype == np.float32 and query.shape[0] == self._dimension and np.isfinite(query).all():
            # The common case, checked in a few microseconds: the full check costs more than the search
            # of a small index.
            matrix = query.reshape(1, -1)
        else:
            matrix = self._check_vectors(query)
        with self._lock:
            ids, distances = self._query(matrix, k, ef, threads=1)
        return ids[0], distances[0]

    def search_many(self, vectors: np.ndarray, k: int, *, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ids and distances of shape ``(len(vectors), min(k, len(self)))``, searching in threads.

        A row that the graph cannot fill (rare, after many deletions) is padded with id -1 and distance infinity.
        """
        matrix = self._check_vectors(vectors)
        with self._lock:
            try:
                return self._query(matrix, k, ef, threads=self._config.threads, shrink=False)
            except _TooFewResults:
                width = min(_check_k(k), len(self._live))
                ids = np.full((len(matrix), width), -1, dtype=np.int64)
                distances = np.full((len(matrix), width), np.inf)
                for row, query in enumerate(matrix):
                    found, found_distances = self._query(query[np.newaxis], k, ef, threads=1)
                    ids[row, : found.shape[1]], distances[row, : found.shape[1]] = found[0], found_distances[0]
                return ids, distances

    def save(self, path: Path, *, state: Mapping[str, Any]) -> None:
        """Write the index to `path` and its description and `state` to ``path + ".json"``, atomically.

        The index file is replaced first and the sidecar last, so a crash in between leaves a pair that
        `load` refuses rather than a sidecar describing the wrong graph. `state` is stored as plain JSON.

        Raises
        ------
        SerializationError
            If `state` holds a value with no canonical JSON form.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        plain_state = to_plain(dict(state))
        with self._lock:
            index_temporary = _temporary(path)
            sidecar_temporary = _temporary(_sidecar(path))
            try:
                self._index.save_index(str(index_temporary))
                _fsync(index_temporary)
                size, check = _fingerprint(index_temporary)
                sidecar = {
                    "format": FORMAT_VERSION,
                    "dimension": self._dimension,
                    "metric": self._metric,
                    "config": asdict(self._config),
                    "config_digest": self._config.digest,
                    "live_count": len(self._live),
                    "element_count": int(self._index.element_count),
                    "deleted_ids": sorted(set(self._index.get_ids_list()) - self._live),
                    "subspace": None if self._subspace is None else self._subspace.to_plain(),
                    "index_bytes": size,
                    "index_blake2b": check,
                    "state": plain_state,
                }
                sidecar_temporary.write_text(json.dumps(sidecar, indent=1, sort_keys=True), encoding="utf-8")
                _fsync(sidecar_temporary)
                os.replace(index_temporary, path)
                kill_point("index_file")
                os.replace(sidecar_temporary, _sidecar(path))
                _fsync(path.parent)
            finally:
                index_temporary.unlink(missing_ok=True)
                sidecar_temporary.unlink(missing_ok=True)
            remove_leftovers(path)

    @classmethod
    def load(cls, path: Path) -> tuple[HnswIndex, dict[str, Any]]:
        """Return the index saved at `path` and the `state` saved with it.

        Raises
        ------
        IndexFileError
            If either file is missing, the sidecar is unreadable or of another format, or the index file
            is not the one the sidecar describes.
        """
        path = Path(path)
        sidecar_path = _sidecar(path)
        for required in (path, sidecar_path):
            if not required.is_file():
                raise IndexFileError(str(path), f"{required.name} is missing")
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise IndexFileError(str(path), f"sidecar {sidecar_path.name} is not valid JSON: {error}") from error
        if not isinstance(sidecar, dict) or sidecar.get("format") not in _READABLE_FORMATS:
            found = sidecar.get("format") if isinstance(sidecar, dict) else type(sidecar).__name__
            raise IndexFileError(str(path), f"sidecar format is {found!r}, expected one of {_READABLE_FORMATS}")
        try:
            config = HnswConfig(**sidecar["config"])
            if config.digest != sidecar["config_digest"]:
                raise IndexFileError(str(path), "sidecar config does not match its digest")
            if (sidecar["index_bytes"], sidecar["index_blake2b"]) != _fingerprint(path):
                raise IndexFileError(str(path), "index file does not match its sidecar (truncated or replaced)")
            # Not through __init__: hnswlib warns on stderr when an initialised index is loaded over.
            index = cls.__new__(cls)
            described = sidecar.get("subspace")
            subspace = None if described is None else Subspace.from_plain(described)
            index._prepare(sidecar["dimension"], sidecar["metric"], config, subspace)
            index._index.load_index(str(path), allow_replace_deleted=True)
            index._index.set_ef(config.ef_search)
            index._index.set_num_threads(config.threads)
            index._live = set(index._index.get_ids_list()) - set(sidecar["deleted_ids"])
            counts = (len(index._live), int(index._index.element_count))
            if counts != (sidecar["live_count"], sidecar["element_count"]):
                raise IndexFileError(str(path), f"index holds (live, elements) {counts}, its sidecar says otherwise")
            if not isinstance(sidecar["state"], dict):
                raise IndexFileError(str(path), f"sidecar state is a {type(sidecar['state']).__name__}, not an object")
            return index, sidecar["state"]
        except (KeyError, TypeError, ConfigError, RuntimeError) as error:
            raise IndexFileError(str(path), f"sidecar or index is inconsistent: {error!r}") from error

    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        matrix = np.asarray(vectors)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2:
            raise InvalidVector(f"{_NAME} takes a matrix of vectors, was given shape {matrix.shape}")
        if matrix.shape[1] != self._dimension:
            raise DimensionMismatch(_NAME, self._dimension, int(matrix.shape[1]))
        if not np.issubdtype(matrix.dtype, np.number) or np.issubdtype(matrix.dtype, np.complexfloating):
            raise InvalidVector(f"{_NAME} takes real numbers, was given dtype {matrix.dtype}")
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise InvalidVector(f"{_NAME} refuses vector {first} of {len(matrix)}: it holds NaN or infinity")
        return matrix

    @staticmethod
    def _check_ids(ids: np.ndarray) -> np.ndarray:
        labels = np.asarray(ids)
        if labels.ndim == 0:
            labels = labels.reshape(1)
        if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise ConfigError(f"{_NAME} ids must be a flat array of integers, was dtype {labels.dtype} {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() > _MAX_ID):
            bad = labels[(labels < 0) | (labels > _MAX_ID)][0]
            raise InvalidItemId(bad, f"is not a non-negative 63-bit integer, which every {_NAME} id must be")
        return labels.astype(np.int64)

    def _query(
        self, matrix: np.ndarray, k: int, ef: int | None, *, threads: int, shrink: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        breadth = self._config.ef_search if ef is None else ef
        if not _is_int(breadth) or breadth < 1:
            raise ConfigError(f"{_NAME} search breadth ef must be a positive integer, was {breadth!r}")
        width = min(_check_k(k), len(self._live))
        if width == 0:
            return np.empty((len(matrix), 0), dtype=np.int64), np.empty((len(matrix), 0))
        breadth = max(breadth, width)
        try:
            # hnswlib fails when the graph yields fewer than k live results (after deletions); searching wider
            # usually finds them, and a breadth of the live count reaches every connected node.
            while True:
                try:
                    return self._knn(matrix, width, breadth, threads)
                except RuntimeError:
                    if breadth >= len(self._live):
                        break
                    breadth = min(4 * breadth, len(self._live))
            if not shrink:
                raise _TooFewResults
            # Some nodes are unreachable: find the largest k the graph can fill.
            fits, fails, found = 0, width, (np.empty((1, 0), dtype=np.int64), np.empty((1, 0)))
            while fails - fits > 1:
                middle = (fits + fails) // 2
                try:
                    found, fits = self._knn(matrix, middle, breadth, threads), middle
                except RuntimeError:
                    fails = middle
            return found
        finally:
            if self._index.ef != self._config.ef_search:
                self._index.set_ef(self._config.ef_search)

    def _knn(self, matrix: np.ndarray, k: int, breadth: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
        if self._index.ef != breadth:
            self._index.set_ef(breadth)
        if self._subspace is None:
            labels, raw = self._index.knn_query(matrix, k=k, num_threads=threads)
            distances = raw.astype(np.float64)
        else:
            coordinates = self._subspace.project(matrix)
            labels, raw = self._index.knn_query(coordinates, k=k, num_threads=threads)
            distances = self._subspace.corrected(self._geometry, raw.astype(np.float64), matrix, coordinates)
        if self._geometry == "euclidean":
            # hnswlib's l2 space returns squared distances; the store measures Euclidean ones.
            distances = np.sqrt(np.maximum(distances, 0.0))
        return labels.astype(np.int64), distances


class _TooFewResults(Exception):
    """The graph cannot return k results for every query of a batch."""


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_k(k: int) -> int:
    if not _is_int(k) or k < 1:
        raise ConfigError(f"{_NAME} k must be a positive integer, was {k!r}")
    return int(k)


def sidecar_path(path: Path) -> Path:
    """The sidecar of the graph file `path`: written last by a save, so its change marks a new graph."""
    return _sidecar(path)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".json")


def _temporary(path: Path) -> Path:
    # Same folder as the target, so os.replace is a rename within one file system and therefore atomic;
    # not mkstemp, whose 0600 mode would keep the saved index from a worker running as another user. The
    # host and process that write it are in its name, so that a later save can tell a leftover of a killed
    # process from a file another process is writing now.
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def remove_leftovers(path: Path) -> list[Path]:
    """Delete the temporary files of saves of `path` (graph and sidecar) by processes of this host that
    died before they finished (a crash, SIGKILL); return them. A graph's temporary file is as large as the
    graph, so each crash would otherwise leave one behind for good."""
    removed = []
    for target in (path, _sidecar(path)):
        for leftover in target.parent.glob(f".{glob.escape(target.name)}.{glob.escape(_HOST)}.*.tmp"):
            pid = leftover.name[len(f".{target.name}.{_HOST}.") :].split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _fingerprint(path: Path) -> tuple[int, str]:
    """Return the size of `path` and a BLAKE2b digest of its size, first MiB and last MiB."""
    size = path.stat().st_size
    hasher = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=32)
    with path.open("rb") as handle:
        hasher.update(handle.read(_CHECKED_BYTES))
        if size > _CHECKED_BYTES:
            handle.seek(max(_CHECKED_BYTES, size - _CHECKED_BYTES))
            hasher.update(handle.read(_CHECKED_BYTES))
    return size, hasher.hexdigest()
