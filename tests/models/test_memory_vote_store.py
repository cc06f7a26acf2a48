"""`memory_vote` asking the real vector memory (`models.vector_store.VectorDB`) on a SQLite file."""

from __future__ import annotations

import numpy as np
import pytest

from models.vector_store import VectorDB
from neuraltrade.memory.embedding import WindowEmbedder
from neuraltrade.strategies.base import verify_causality
from neuraltrade.strategies.indicators import bar_frame
from neuraltrade.strategies.memory_vote import MemoryVote, MemoryVoteConfig
from tests.domain.strategy_support import BruteForceMemory, real_history

CONFIG = MemoryVoteConfig(dimension=32, horizon=4, k=8, min_neighbours=4, min_confidence=0.6)


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's stores run on SQLite and on PostgreSQL."""
    return storage_url


def test_memory_vote_on_the_store_decides_as_on_a_brute_force_memory(database_url: str) -> None:
    history = real_history("NVDA").head(260)
    embedder = WindowEmbedder(CONFIG.embedder_config)
    store = VectorDB(CONFIG.dimension, name="market_state", fingerprint=embedder.fingerprint, database_url=database_url)
    # As the nightly embed task stores them: keyed and linked by observation id, stamped with the bar's time.
    ends = history.timestamps[CONFIG.window - 1 :]
    keys = [str(history.observation_id(bar)) for bar in range(CONFIG.window - 1, len(history))]
    store.upsert_many(
        keys,
        embedder.embed(bar_frame(history)),
        [{"symbol": history.symbol, "observation_id": key} for key in keys],
        timestamps=ends.tolist(),
    )
    reference = BruteForceMemory()
    reference.add_history(history, CONFIG.embedder_config)

    strategy = MemoryVote(CONFIG, store)
    frame = strategy.signals(history)
    expected = MemoryVote(CONFIG, reference).signals(history)
    frame.check(history, strategy.strategy_id)
    assert len(frame.decisions()) > 3
    assert np.array_equal(frame.target, expected.target, equal_nan=True)
    assert frame.links == expected.links
    verify_causality(strategy, history, frame, cuts=[int(bar) + 1 for bar in frame.decisions()[:3]])
