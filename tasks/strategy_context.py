"""What strategies need besides bars, filled from the database (`neuraltrade.strategies.needs.StrategyContext`).

The registry asks a context only for what a strategy declares it needs, so a strategy that needs nothing
never touches the database through it; the URL is resolved when something is first asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neuraltrade.errors import CollectionNotFound, MarketMemoryMissing
from neuraltrade.strategies.needs import MemoryRead


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
