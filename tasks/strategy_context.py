"""What strategies need besides bars, filled from the database (`neuraltrade.strategies.needs.StrategyContext`).

The registry asks a context only for what a strategy declares it needs, so a strategy that needs nothing
never touches the database through it; the URL is resolved when something is first asked for.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neuraltrade.errors import CollectionNotFound, MarketMemoryMissing
from neuraltrade.strategies.needs import LearningRead, MemoryRead

#: Learning memories this process loaded, by database, strategy id and `learning_state`: a night builds each
#: gated strategy once per symbol, and loading its memory (episodes, verdicts, vectors, distillations) costs
#: seconds; records are only ever added, so an unchanged state is an unchanged memory.
_LEARNING_MEMORIES: OrderedDict[tuple[str, str, tuple[int, ...]], LearningRead] = OrderedDict()
_LEARNING_MEMORIES_KEPT = 8
_LEARNING_LOCK = threading.Lock()


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
        from models.vector_snapshot import snapshot
        from tasks.embed import MARKET_STATE_COLLECTION

        url = resolve_database_url(self.database_url)
        partition = symbols[0] if len(symbols) == 1 else None
        try:
            searcher = snapshot(url, MARKET_STATE_COLLECTION, partition)
        except CollectionNotFound:
            raise MarketMemoryMissing(display_url(url)) from None
        return MemoryRead(
            searcher=searcher, collection=MARKET_STATE_COLLECTION, items=len(searcher), digest=searcher.digest
        )

    def learning_memory(self, strategy: str) -> LearningRead:
        """What the learning loop knows of strategy id `strategy`: its judged episodes (one per decision),
        their entry states from the ``reflections`` collection, and its distillations (empty on a database
        that has learnt nothing yet)."""
        from models.engine import resolve_database_url, session_scope
        from models.learning_store import learning_state, load_distillations, load_episodes, load_verdicts
        from models.vector_snapshot import snapshot
        from neuraltrade.learning.defaults import DISTILLATION_CONFIG, JUDGE_CONFIG, REFLECTIONS_COLLECTION
        from neuraltrade.learning.episodes import unique_decisions
        from neuraltrade.learning.patterns import one_per_checkpoint
        from neuraltrade.learning.retrieval import learning_memory

        url = resolve_database_url(self.database_url)
        with session_scope(url) as session:
            key = (url, strategy, learning_state(session, strategy))
        with _LEARNING_LOCK:
            if key in _LEARNING_MEMORIES:
                return _LEARNING_MEMORIES[key]
        with session_scope(url) as session:
            episodes = unique_decisions(load_episodes(session, strategy_id=strategy))
            verdicts = load_verdicts(
                session, episode_ids=[episode.id for episode in episodes], judge_digest=JUDGE_CONFIG.digest
            )
            distillations = one_per_checkpoint(load_distillations(session, strategy), DISTILLATION_CONFIG.digest)
        vectors: dict[uuid.UUID, np.ndarray] = {}
        if episodes:
            try:
                stored = snapshot(url, REFLECTIONS_COLLECTION, strategy)
            except CollectionNotFound:
                stored = None
            if stored is not None:
                vectors = {uuid.UUID(key): row for key, row in zip(stored.keys, stored.vectors, strict=True)}
        judged = {verdict.episode_id for verdict in verdicts}
        usable = [episode for episode in episodes if episode.id in judged and episode.id in vectors]
        memory = learning_memory(strategy, usable, verdicts, vectors, distillations)
        read = LearningRead(
            memory=memory,
            strategy=strategy,
            episodes=len(usable),
            distillations=len(distillations),
            digest=memory.digest,
        )
        with _LEARNING_LOCK:
            _LEARNING_MEMORIES[key] = read
            while len(_LEARNING_MEMORIES) > _LEARNING_MEMORIES_KEPT:
                _LEARNING_MEMORIES.popitem(last=False)
        return read
