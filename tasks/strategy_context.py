"""What strategies need besides bars, filled from the database (`neuraltrade.strategies.needs.StrategyContext`).

The registry asks a context only for what a strategy declares it needs, so a strategy that needs nothing
never touches the database through it; the URL is resolved when something is first asked for.

Every read of memory here goes through this process's L1 cache, `MEMORY_CACHE` (a `SessionMemory`): a
night builds memory_vote and gated:memory_vote on each symbol (each loads that symbol's market states) and
each gated strategy on every symbol (each loads its base's learning memory), and a load costs up to
seconds, while a hit costs a lookup. A partition of a collection is cached under the database, collection,
partition and the collection's version (`cached_snapshot`), so a write, which raises the version, makes the
next read a miss; a learning memory under the database, strategy id and `learning_state`. The run that
builds the strategies records the cache's figures (`cache_figures`), which `neuraltrade memory stats` shows.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from neuraltrade.errors import CollectionNotFound, MarketMemoryMissing
from neuraltrade.memory.session import CacheStatistics, SessionMemory, SessionMemoryConfig
from neuraltrade.strategies.needs import LearningRead, MemoryRead

if TYPE_CHECKING:
    from neuraltrade.memory.snapshot import MemorySnapshot

#: Whole reads the cache holds (partitions' snapshots and learning memories; the least recently used goes
#: first). A night on the shipped data asks for 3 market-state partitions and 5 learning memories (and the
#: reflections partitions they are built from); the bound keeps a large universe from holding every one.
CACHED_READS = 32
#: Seconds a cached read is kept. A key carries the version it was read at, so the time to live does not
#: bound staleness here: it lets entries outlast a night's backtests (the same partition is read again by
#: the last strategies of the list) and no more.
CACHED_READ_SECONDS = 3_600.0
#: This process's L1 cache of memory reads, shared by every strategy built here (threads included).
MEMORY_CACHE = SessionMemory(
    SessionMemoryConfig(max_items=1, max_results=CACHED_READS, ttl_seconds=CACHED_READ_SECONDS)
)
#: The name under which the cache keeps learning memories (vector collections are kept under their own).
LEARNING_READS = "learning_memory"
#: The newest version of each collection read here, by database and collection: once a newer one is seen,
#: every entry of an older version is stale (no reader asks for it again), so it is dropped at once rather
#: than held until the bound pushes it out.
_VERSIONS_SEEN: dict[tuple[str, str], int] = {}
_VERSIONS_LOCK = threading.Lock()


def cached_snapshot(database_url: str, collection: str, partition: str | None = None) -> MemorySnapshot:
    """`models.vector_snapshot.snapshot` through `MEMORY_CACHE`: loaded once per database, collection,
    partition and collection version (read first, one row); a write raises the version, so it is a miss.

    Raises
    ------
    CollectionNotFound
        If no collection is called `collection`.
    """
    from models.collections import get_collection
    from models.engine import session_scope
    from models.vector_snapshot import snapshot

    with session_scope(database_url) as session:
        version = int(get_collection(session, collection).version)
    _drop_older_versions(database_url, collection, version)

    def load() -> MemorySnapshot:
        loaded = snapshot(database_url, collection, partition)
        if loaded.version is not None and loaded.version != version:
            # Written to between the two reads: what was loaded is the newer version's, and is kept under it
            # too (a reader of the older version would load no older a snapshot than this).
            MEMORY_CACHE.put_results(collection, (database_url, partition, loaded.version), loaded)
        return loaded

    return MEMORY_CACHE.get_or_load(collection, (database_url, partition, version), load)


def _drop_older_versions(database_url: str, collection: str, version: int) -> None:
    """Drop the cached partitions of `collection` if `version` is newer than any read before (with those of a
    collection of that name in another database: they are read again)."""
    with _VERSIONS_LOCK:
        seen = _VERSIONS_SEEN.get((database_url, collection))
        if seen is not None and seen >= version:
            return
        _VERSIONS_SEEN[(database_url, collection)] = version
    if seen is not None:
        MEMORY_CACHE.invalidate(collection)


def cache_statistics() -> CacheStatistics:
    """The counters of `MEMORY_CACHE` now: taken when a run starts, handed to `cache_figures` when it ends."""
    return MEMORY_CACHE.statistics


def cache_figures(since: CacheStatistics) -> dict[str, Any]:
    """What `MEMORY_CACHE` did after `since` (hits, misses, hit_rate, ...) and the entries it holds now,
    as a run summary records them in ``details["cache"]``."""
    return MEMORY_CACHE.statistics.since(since).figures()


@dataclass(frozen=True)
class DatabaseContext:
    """Fills strategies' needs from the database of `database_url` (None: the configured default)."""

    database_url: str | None = None

    def memory_searcher(self, symbols: Sequence[str]) -> MemoryRead:
        """The market states of `symbols` (of every symbol when there are several or none), searched exactly
        in memory at one point in time, with the collection, its size and digest that a run records.

        Raises
        ------
        MarketMemoryMissing
            If the database holds no market memory yet.
        """
        from models.engine import display_url, resolve_database_url
        from tasks.embed import MARKET_STATE_COLLECTION

        url = resolve_database_url(self.database_url)
        partition = symbols[0] if len(symbols) == 1 else None
        try:
            searcher = cached_snapshot(url, MARKET_STATE_COLLECTION, partition)
        except CollectionNotFound:
            raise MarketMemoryMissing(display_url(url)) from None
        return MemoryRead(
            searcher=searcher, collection=MARKET_STATE_COLLECTION, items=len(searcher), digest=searcher.digest
        )

    def learning_memory(self, strategy: str) -> LearningRead:
        """What the learning loop knows of strategy id `strategy`: its judged episodes (one per decision),
        their entry states from the ``reflections`` collection, and its distillations (empty on a database
        that has learnt nothing yet).

        Loaded once per database, strategy id and `learning_state` (`MEMORY_CACHE`): records are only ever
        added, so an unchanged state is an unchanged memory; the reflections it reads are in the same
        transactions as its episodes. Keyed by that state rather than by the version of the ``reflections``
        collection, which every strategy's reflections raise.
        """
        from models.engine import resolve_database_url, session_scope
        from models.learning_store import learning_state

        url = resolve_database_url(self.database_url)
        with session_scope(url) as session:
            key = (url, strategy, learning_state(session, strategy))
        return MEMORY_CACHE.get_or_load(LEARNING_READS, key, lambda: _load_learning(url, strategy))


def _load_learning(url: str, strategy: str) -> LearningRead:
    from models.engine import session_scope
    from models.learning_store import load_distillations, load_episodes, load_verdicts
    from neuraltrade.learning.defaults import DISTILLATION_CONFIG, JUDGE_CONFIG, REFLECTIONS_COLLECTION
    from neuraltrade.learning.episodes import unique_decisions
    from neuraltrade.learning.patterns import one_per_checkpoint
    from neuraltrade.learning.retrieval import learning_memory

    with session_scope(url) as session:
        episodes = unique_decisions(load_episodes(session, strategy_id=strategy))
        verdicts = load_verdicts(
            session, episode_ids=[episode.id for episode in episodes], judge_digest=JUDGE_CONFIG.digest
        )
        distillations = one_per_checkpoint(load_distillations(session, strategy), DISTILLATION_CONFIG.digest)
    vectors: dict[uuid.UUID, np.ndarray] = {}
    if episodes:
        try:
            stored = cached_snapshot(url, REFLECTIONS_COLLECTION, strategy)
        except CollectionNotFound:
            stored = None
        if stored is not None:
            vectors = {uuid.UUID(key): row for key, row in zip(stored.keys, stored.vectors, strict=True)}
    judged = {verdict.episode_id for verdict in verdicts}
    usable = [episode for episode in episodes if episode.id in judged and episode.id in vectors]
    memory = learning_memory(strategy, usable, verdicts, vectors, distillations)
    return LearningRead(
        memory=memory,
        strategy=strategy,
        episodes=len(usable),
        distillations=len(distillations),
        digest=memory.digest,
    )
