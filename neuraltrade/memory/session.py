"""The vector memory's first-level cache: items and query results kept in process, least recently used first out.

`models.vector_store.VectorDB` asks it on every `get` and `search` and calls `invalidate` on every write, so a
session that re-asks the same questions (a backtest replaying recent market states) is answered from memory.
Writers in other processes cannot invalidate it; the time to live bounds how stale an answer can be.

Time is an injected callable returning monotonic seconds, so a test moves it by hand. An entry stored at
time ``t`` is fresh while ``clock() < t + ttl_seconds``: at an age of exactly ``ttl_seconds`` it has expired.
The time to live counts from the `put`; reading an entry refreshes its recency, not its age.

A `SessionMemory` may be shared between threads: one lock guards every read and write (a hit still costs well
under two microseconds), because even a hit reorders the recency list.

Whole reads that cost seconds (a partition's snapshot, a strategy's learning memory) go through
`SessionMemory.get_or_load`: one lookup, and on a miss one load, which other threads asking for the same key
wait for instead of loading it again. Such a key names what makes the value (the collection's version among
them), so that a write makes a new key and the old entry is never asked for again.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from neuraltrade.errors import ConfigError, ValidationError

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class SessionMemoryConfig:
    """How much a `SessionMemory` holds and for how long.

    Attributes
    ----------
    max_items : int
        Most cached items, over all collections; the least recently used goes first.
    max_results : int
        Most cached query results, over all collections; the least recently used goes first.
    ttl_seconds : float
        Age at which an entry is a miss; bounds staleness from writers in other processes.
    """

    max_items: int = 10_000
    max_results: int = 10_000
    ttl_seconds: float = 300.0

    def __post_init__(self) -> None:
        for name in ("max_items", "max_results"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"session memory {name} must be a whole number >= 1, was {value!r}")
        ttl = self.ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
            raise ConfigError(f"session memory ttl_seconds must be a finite number > 0, was {ttl!r}")


@dataclass(frozen=True)
class CacheStatistics:
    """Counters of a `SessionMemory` since it was made or its statistics were last reset.

    Attributes
    ----------
    hits, misses : int
        Lookups (items and results together) answered from the cache, and not.
    evictions : int
        Entries dropped to make room, expired or not.
    expirations : int
        Entries found expired by a lookup (each also counts as a miss).
    invalidations : int
        Entries dropped by `SessionMemory.invalidate` (entries dropped by `clear` are not counted).
    items, results : int
        Entries held now, including expired ones no lookup has found yet.
    """

    hits: int
    misses: int
    evictions: int
    expirations: int
    invalidations: int
    items: int
    results: int

    @property
    def hit_rate(self) -> float:
        """Hits per lookup; 0.0 when nothing was asked."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    @property
    def entries(self) -> int:
        """Entries held now, items and results together."""
        return self.items + self.results

    def since(self, earlier: CacheStatistics) -> CacheStatistics:
        """The counters counted after `earlier` (statistics of the same memory, taken before), with the entries
        held now: what one run did with a memory that outlives it."""
        return CacheStatistics(
            hits=self.hits - earlier.hits,
            misses=self.misses - earlier.misses,
            evictions=self.evictions - earlier.evictions,
            expirations=self.expirations - earlier.expirations,
            invalidations=self.invalidations - earlier.invalidations,
            items=self.items,
            results=self.results,
        )

    def figures(self) -> dict[str, int | float]:
        """The counters, the hit rate and the entries held, JSON-ready (as a run summary records them)."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "entries": self.entries,
            "evictions": self.evictions,
            "expirations": self.expirations,
            "invalidations": self.invalidations,
        }


class _Region:
    """One bounded LRU of ``(collection, key) -> (expires_at, value)``, with the keys of each collection indexed.

    Keeping one recency order over all collections makes the bound global and a hit touch a single OrderedDict;
    the per-collection index lets `drop_collection` cost the size of that collection, not of the whole cache.
    """

    def __init__(self, capacity: int, ttl_seconds: float, clock: Callable[[], float], lock: threading.Lock) -> None:
        self.entries: OrderedDict[tuple[str, Hashable], tuple[float, Any]] = OrderedDict()
        self.keys_by_collection: dict[str, set[Hashable]] = {}
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.lock = lock
        self.reset_counters()

    def reset_counters(self) -> None:
        self.hits = self.misses = self.evictions = self.expirations = self.invalidations = 0

    def get(self, collection: str, key: Hashable) -> Any | None:
        full_key = (collection, key)
        with self.lock:
            entry = self.entries.get(full_key)
            if entry is None:
                self.misses += 1
                return None
            if self.clock() >= entry[0]:
                del self.entries[full_key]
                self._unindex(collection, key)
                self.expirations += 1
                self.misses += 1
                return None
            self.entries.move_to_end(full_key)
            self.hits += 1
            return entry[1]

    def put(self, collection: str, key: Hashable, value: Any) -> None:
        if value is None:
            # None is how a lookup says "miss", so a cached None could never be told from one.
            raise ValidationError(f"session memory cannot hold None (collection {collection!r}, key {key!r})")
        full_key = (collection, key)
        with self.lock:
            entries = self.entries
            entries[full_key] = (self.clock() + self.ttl_seconds, value)
            entries.move_to_end(full_key)
            self.keys_by_collection.setdefault(collection, set()).add(key)
            while len(entries) > self.capacity:
                (old_collection, old_key), _ = entries.popitem(last=False)
                self._unindex(old_collection, old_key)
                self.evictions += 1

    def drop_collection(self, collection: str) -> None:
        with self.lock:
            for key in self.keys_by_collection.pop(collection, ()):
                del self.entries[(collection, key)]
                self.invalidations += 1

    def drop_keys(self, collection: str, keys: Iterable[Hashable]) -> None:
        with self.lock:
            for key in keys:
                if self.entries.pop((collection, key), None) is not None:
                    self._unindex(collection, key)
                    self.invalidations += 1

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.keys_by_collection.clear()

    def _unindex(self, collection: str, key: Hashable) -> None:
        keys = self.keys_by_collection[collection]
        keys.discard(key)
        if not keys:
            # Forget emptied collections, or a session touching many of them would keep every name forever.
            del self.keys_by_collection[collection]


class SessionMemory:
    """An in-process LRU and time-to-live cache of a vector memory's items and query results.

    Parameters
    ----------
    config : SessionMemoryConfig
        The bounds and the time to live.
    clock : callable returning float
        Monotonic seconds; `time.monotonic` unless a test or replay drives time itself.

    Notes
    -----
    Items and results are bounded separately, each over all collections. A write to a collection invalidates
    every cached result of that collection (any of them may change) and the items it names. Safe to share
    between threads.
    """

    def __init__(
        self, config: SessionMemoryConfig = SessionMemoryConfig(), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._items = _Region(self.config.max_items, self.config.ttl_seconds, clock, self._lock)
        self._results = _Region(self.config.max_results, self.config.ttl_seconds, clock, self._lock)
        # Result keys being looked up through `get_or_load`: their lock and how many callers hold or wait for it.
        self._loading: dict[tuple[str, Hashable], tuple[threading.Lock, list[int]]] = {}

    def get_item(self, collection: str, item_id: str) -> Any | None:
        """Return the cached item `item_id` of `collection`, or None if it is absent or expired."""
        return self._items.get(collection, item_id)

    def put_item(self, collection: str, item_id: str, value: Any) -> None:
        """Cache `value` (never None) as item `item_id` of `collection`, evicting the least recently used."""
        self._items.put(collection, item_id, value)

    def get_results(self, collection: str, key: Hashable) -> Any | None:
        """Return the cached result of query `key` on `collection`, or None if it is absent or expired."""
        return self._results.get(collection, key)

    def put_results(self, collection: str, key: Hashable, value: Any) -> None:
        """Cache `value` (never None) as the result of query `key` on `collection`."""
        self._results.put(collection, key, value)

    def get_or_load(self, collection: str, key: Hashable, load: Callable[[], T]) -> T:
        """Return the cached result of `key` on `collection`, or load it with `load`, cache it and return it.

        One lookup is counted (a hit or a miss). Callers asking for the same key at once are served one
        at a time: the first misses and loads, the others then find its value and count a hit, so a value
        is never loaded twice. Callers asking for other keys are not held up. `load` may itself call
        `get_or_load` for another key, never for its own. Nothing is cached if `load` raises.

        Raises
        ------
        ValidationError
            If `load` returns None (which a lookup could not tell from a miss).
        """
        full_key = (collection, key)
        with self._lock:
            lock, waiting = self._loading.setdefault(full_key, (threading.Lock(), [0]))
            waiting[0] += 1
        try:
            with lock:
                found = self._results.get(collection, key)
                if found is not None:
                    return cast(T, found)
                value = load()
                self._results.put(collection, key, value)
                return value
        finally:
            with self._lock:
                waiting[0] -= 1
                if not waiting[0]:
                    del self._loading[full_key]

    def invalidate(self, collection: str, item_ids: Iterable[str] | None = None) -> None:
        """Forget what a write to `collection` may have changed.

        Parameters
        ----------
        collection : str
            The collection written to; every cached query result of it is dropped.
        item_ids : iterable of str, optional
            The items written; all items of the collection are dropped when None.

        Raises
        ------
        ValidationError
            If `item_ids` is a single string, which would otherwise be read as one id per character.
        """
        if isinstance(item_ids, str):
            raise ValidationError(f"invalidate takes an iterable of item ids, was given the string {item_ids!r}")
        self._results.drop_collection(collection)
        if item_ids is None:
            self._items.drop_collection(collection)
        else:
            self._items.drop_keys(collection, item_ids)

    def clear(self) -> None:
        """Drop every entry; the statistics keep counting."""
        self._items.clear()
        self._results.clear()

    @property
    def statistics(self) -> CacheStatistics:
        """The counters so far and the entries held now."""
        with self._lock:
            items, results = self._items, self._results
            return CacheStatistics(
                hits=items.hits + results.hits,
                misses=items.misses + results.misses,
                evictions=items.evictions + results.evictions,
                expirations=items.expirations + results.expirations,
                invalidations=items.invalidations + results.invalidations,
                items=len(items.entries),
                results=len(results.entries),
            )

    def reset_statistics(self) -> None:
        """Set every counter back to zero; the cached entries stay."""
        with self._lock:
            self._items.reset_counters()
            self._results.reset_counters()
