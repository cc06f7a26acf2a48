"""The memory strategies read through the process's L1 cache (`tasks.strategy_context.MEMORY_CACHE`).

A partition is cached under the database, collection, partition and the collection's version: read again
unchanged it is a hit (the same snapshot, not loaded again); after a write, which raises the version, a miss.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from models import repositories
from models.engine import session_scope
from neuraltrade.errors import MarketMemoryMissing
from neuraltrade.market.ingest import read_bars
from neuraltrade.memory.embedding import WindowEmbedderConfig
from neuraltrade.memory.session import SessionMemory, SessionMemoryConfig
from tasks import strategy_context
from tasks.embed import MARKET_STATE_COLLECTION, embed_symbol
from tasks.strategy_context import DatabaseContext, cache_figures, cache_statistics, cached_snapshot

SAMPLE = Path(__file__).parents[2] / "neuraltrade" / "sample_data" / "NVDA.csv"
DIMENSION = 16


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> SessionMemory:
    """A fresh cache in place of the process's, so that the counts are this test's alone."""
    fresh = SessionMemory(SessionMemoryConfig(max_items=1, max_results=8, ttl_seconds=3_600.0))
    monkeypatch.setattr(strategy_context, "MEMORY_CACHE", fresh)
    return fresh


def store_and_embed(url: str, first: int, last: int) -> None:
    """Store bars `first` to `last` (exclusive) of the NVDA sample and embed their market states."""
    frame = read_bars(SAMPLE).frame.drop(columns=["line"], errors="ignore").iloc[first:last]
    with session_scope(url, write=True) as session:
        repositories.upsert_bars(session, frame, source="test", now=datetime(2026, 1, 1, tzinfo=UTC))
    embed_symbol.fn(url, "NVDA", WindowEmbedderConfig(dimension=DIMENSION))


def test_a_partition_read_again_at_its_version_is_a_hit_and_after_a_write_a_miss(
    database_url: str, cache: SessionMemory
) -> None:
    store_and_embed(database_url, 0, 300)
    context = DatabaseContext(database_url)

    first = context.memory_searcher(["NVDA"])
    again = context.memory_searcher(["NVDA"])

    assert again.searcher is first.searcher and again.digest == first.digest
    assert (cache.statistics.hits, cache.statistics.misses) == (1, 1)
    # The whole collection is a key of its own.
    assert context.memory_searcher([]).searcher is not first.searcher
    assert (cache.statistics.hits, cache.statistics.misses) == (1, 2)

    # A write (the next night embeds new bars) raises the collection's version: the next read is a miss,
    # and sees what was written.
    before = cache_statistics()
    store_and_embed(database_url, 300, 350)
    after = context.memory_searcher(["NVDA"])

    assert after.searcher is not first.searcher and after.items == first.items + 50
    assert after.digest != first.digest
    snapshot = cached_snapshot(database_url, MARKET_STATE_COLLECTION, "NVDA")
    assert snapshot is after.searcher
    version = first.searcher.version  # type: ignore[attr-defined]
    assert version is not None and snapshot.version is not None and snapshot.version > version
    # The entries of the older version (NVDA's and the whole collection's) were dropped when the newer was seen.
    assert cache_figures(before) == {
        "hits": 1,
        "misses": 1,
        "hit_rate": 0.5,
        "entries": 1,
        "evictions": 0,
        "expirations": 0,
        "invalidations": 2,
    }


def test_a_database_without_market_memory_is_refused_and_nothing_is_cached(
    database_url: str, cache: SessionMemory
) -> None:
    with pytest.raises(MarketMemoryMissing):
        DatabaseContext(database_url).memory_searcher(["NVDA"])
    assert cache.statistics.entries == 0
