"""Specification of observation embedding (`tasks.embed.embed_symbol`), run through ``.fn``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from models import collections, memory_items, repositories, run_summaries
from models.dialects import vector_backend_for
from models.engine import session_scope
from models.tables import BarRecord, MemoryItemRecord, ObservationRecord
from neuraltrade.errors import FingerprintMismatch, UnknownSymbol
from neuraltrade.market.synthetic import MarketConfig, generate_market, write_market_csv
from neuraltrade.memory.embedding import WindowEmbedder, WindowEmbedderConfig
from neuraltrade.types import Observation
from tasks.embed import MARKET_STATE_COLLECTION, embed_symbol
from tasks.ingest import ingest_file
from tests.models.vector_support import stored_vectors

CONFIG = WindowEmbedderConfig(window=16, dimension=64)
SYMBOL = "SYN000"
BARS = 120
EARLY_BARS = 90  # the first file; the later file holds the remaining 30 bars of each symbol
MARKET = generate_market(MarketConfig(symbols=2, bars_per_symbol=BARS, seed=7))


def bars_of(symbol: str) -> pd.DataFrame:
    return MARKET[MARKET["symbol"] == symbol].reset_index(drop=True)


def ingest_bars(url: str, folder: Path, name: str, rows: slice) -> dict[str, Any]:
    part = pd.concat([bars_of(symbol).iloc[rows] for symbol in MARKET["symbol"].unique()])
    path = folder / name
    write_market_csv(part, path)
    report = ingest_file.fn(url, str(path))
    assert report["rows_quarantined"] == 0, report
    return report


@pytest.fixture
def early_url(database_url: str, tmp_path: Path) -> str:
    """A database holding the first 90 bars of two synthetic symbols."""
    ingest_bars(database_url, tmp_path, "early.csv", slice(0, EARLY_BARS))
    return database_url


def stored_counts(url: str) -> tuple[int, int, int]:
    """(vectors, item rows, observation rows); a symbol's first `window - 1` bars have an observation and no
    vector."""
    with session_scope(url) as session:
        return (
            vector_backend_for(session).count(session.connection(), MARKET_STATE_COLLECTION),
            memory_items.count(session, collections.get_collection(session, MARKET_STATE_COLLECTION).id),
            run_summaries.table_counts(session)["observations"],
        )


def stored_vector(url: str, observation_id: Any) -> np.ndarray:
    with session_scope(url) as session:
        collection = collections.get_collection(session, MARKET_STATE_COLLECTION)
        number = memory_items.item_id(collection.id, str(observation_id))
    return stored_vectors(url, MARKET_STATE_COLLECTION, [number])[number]


def test_embedding_a_symbol_stores_one_vector_per_full_window(early_url: str) -> None:
    result = embed_symbol.fn(early_url, SYMBOL, CONFIG)

    assert result == {"symbol": SYMBOL, "embedded": EARLY_BARS - CONFIG.window + 1, "skipped_history": 15}
    assert stored_counts(early_url) == (75, 75, 90)


def test_embedding_again_embeds_nothing(early_url: str) -> None:
    embed_symbol.fn(early_url, SYMBOL, CONFIG)
    with session_scope(early_url) as session:
        before = session.execute(select(MemoryItemRecord.__table__).order_by(MemoryItemRecord.id)).all()

    assert embed_symbol.fn(early_url, SYMBOL, CONFIG)["embedded"] == 0

    assert stored_counts(early_url) == (75, 75, 90)
    with session_scope(early_url) as session:
        assert session.execute(select(MemoryItemRecord.__table__).order_by(MemoryItemRecord.id)).all() == before


def test_early_bars_without_observations_get_them_and_nothing_is_embedded_again(early_url: str) -> None:
    # A database embedded before early bars' observations were stored: the first window - 1 bars have none.
    embed_symbol.fn(early_url, SYMBOL, CONFIG)
    early = bars_of(SYMBOL)["timestamp"].iloc[: CONFIG.window - 1]
    with session_scope(early_url, write=True) as session:
        for moment in early:
            session.execute(
                ObservationRecord.__table__.delete().where(
                    ObservationRecord.id == Observation.id_for(SYMBOL, moment.to_pydatetime())
                )
            )
    assert stored_counts(early_url) == (75, 75, 75)
    vectors_before = stored_vector(early_url, Observation.id_for(SYMBOL, bars_of(SYMBOL)["timestamp"].iloc[20]))

    result = embed_symbol.fn(early_url, SYMBOL, CONFIG)

    assert result["embedded"] == 0
    assert stored_counts(early_url) == (75, 75, 90)
    after = stored_vector(early_url, Observation.id_for(SYMBOL, bars_of(SYMBOL)["timestamp"].iloc[20]))
    np.testing.assert_array_equal(after, vectors_before)
    assert embed_symbol.fn(early_url, SYMBOL, CONFIG)["embedded"] == 0


def test_after_later_bars_arrive_only_the_new_ones_are_embedded(early_url: str, tmp_path: Path) -> None:
    embed_symbol.fn(early_url, SYMBOL, CONFIG)
    ingest_bars(early_url, tmp_path, "later.csv", slice(EARLY_BARS, BARS))

    result = embed_symbol.fn(early_url, SYMBOL, CONFIG)

    assert result["embedded"] == BARS - EARLY_BARS
    assert stored_counts(early_url) == (105, 105, 120)


def test_vectors_embedded_in_two_runs_equal_those_of_one_run_over_the_whole_history(
    early_url: str, tmp_path: Path
) -> None:
    embed_symbol.fn(early_url, SYMBOL, CONFIG)
    ingest_bars(early_url, tmp_path, "later.csv", slice(EARLY_BARS, BARS))
    embed_symbol.fn(early_url, SYMBOL, CONFIG)

    bars = bars_of(SYMBOL)
    expected = WindowEmbedder(CONFIG).embed(bars)
    ends = bars["timestamp"].iloc[CONFIG.window - 1 :].tolist()
    # A vector must not depend on which run stored it, least of all the first one after new bars.
    for row in (0, EARLY_BARS - CONFIG.window, EARLY_BARS - CONFIG.window + 1, len(ends) - 1):
        stored = stored_vector(early_url, Observation.id_for(SYMBOL, ends[row].to_pydatetime()))
        np.testing.assert_allclose(stored, expected[row], atol=1e-6, err_msg=f"vector of bar {ends[row]}")


def test_observations_take_their_stable_ids_and_their_bars_values(early_url: str) -> None:
    embed_symbol.fn(early_url, SYMBOL, CONFIG)

    with session_scope(early_url) as session:
        observations = session.scalars(select(ObservationRecord).order_by(ObservationRecord.timestamp)).all()
        bars = {bar.id: bar for bar in session.scalars(select(BarRecord).where(BarRecord.symbol == SYMBOL))}
        embedded = set(session.scalars(select(MemoryItemRecord.observation_id)))

    # Every bar has its observation (its market state); those with a full window also a vector.
    expected_times = [moment.to_pydatetime() for moment in bars_of(SYMBOL)["timestamp"].iloc[:EARLY_BARS]]
    assert [observation.timestamp for observation in observations] == expected_times
    assert [observation.id for observation in observations] == [
        Observation.id_for(SYMBOL, moment) for moment in expected_times
    ]
    assert embedded == {observation.id for observation in observations[CONFIG.window - 1 :]}
    for observation in observations:
        bar = bars[observation.bar_id]
        assert (bar.symbol, bar.timestamp) == (observation.symbol, observation.timestamp)
        assert (observation.price, observation.volume, observation.spread) == (bar.close, bar.volume, bar.spread)
        assert observation.metadata_ == {"spread_source": "quoted"}


def test_embedding_one_symbol_leaves_the_others_alone(early_url: str) -> None:
    embed_symbol.fn(early_url, SYMBOL, CONFIG)
    assert stored_counts(early_url) == (75, 75, 90)

    assert embed_symbol.fn(early_url, "SYN001", CONFIG)["embedded"] == 75

    assert stored_counts(early_url) == (150, 150, 180)
    with session_scope(early_url) as session:
        for symbol in ("SYN000", "SYN001"):
            collection = collections.get_collection(session, MARKET_STATE_COLLECTION)
            assert len(repositories.embedded_timestamps(session, collection.id, symbol)) == 75


def test_a_symbol_shorter_than_one_window_embeds_nothing(database_url: str, tmp_path: Path) -> None:
    ingest_bars(database_url, tmp_path, "short.csv", slice(0, CONFIG.window - 1))

    result = embed_symbol.fn(database_url, SYMBOL, CONFIG)

    assert result == {"symbol": SYMBOL, "embedded": 0, "skipped_history": CONFIG.window - 1}
    assert stored_counts(database_url) == (0, 0, 0)


def test_another_embedder_on_the_same_collection_is_a_fingerprint_mismatch(early_url: str) -> None:
    embed_symbol.fn(early_url, SYMBOL, CONFIG)
    other = WindowEmbedderConfig(window=16, dimension=64, seed=CONFIG.seed + 1)

    with pytest.raises(FingerprintMismatch, match=MARKET_STATE_COLLECTION):
        embed_symbol.fn(early_url, "SYN001", other)

    assert stored_counts(early_url) == (75, 75, 90)


def test_another_embedder_may_fill_its_own_collection(early_url: str) -> None:
    embed_symbol.fn(early_url, SYMBOL, CONFIG)
    other = WindowEmbedderConfig(window=24, dimension=32)

    result = embed_symbol.fn(early_url, SYMBOL, other, collection="wide_windows")

    assert result["embedded"] == EARLY_BARS - 24 + 1
    with session_scope(early_url) as session:
        assert vector_backend_for(session).count(session.connection(), "wide_windows") == 67
        # One observation per bar, shared by every collection that embeds it.
        assert run_summaries.table_counts(session)["observations"] == EARLY_BARS


def test_embedding_a_symbol_without_bars_is_refused_naming_it(early_url: str) -> None:
    with pytest.raises(UnknownSymbol, match="'NOPE'"):
        embed_symbol.fn(early_url, "NOPE", CONFIG)
