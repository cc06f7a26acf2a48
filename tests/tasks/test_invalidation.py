"""Specification: a change to stored history drops the memory built on it, and embedding rebuilds it.

After any sequence of ingestions and embeddings, the stored vectors equal those of one ingestion of
the final history followed by one embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select

from models import run_summaries
from models.engine import dispose_engines, session_scope
from models.migrations import upgrade_database
from models.tables import MemoryItemRecord
from neuraltrade.market.synthetic import MarketConfig, generate_market, write_market_csv
from neuraltrade.memory.embedding import WindowEmbedderConfig
from tasks.embed import embed_symbol
from tasks.ingest import ingest_file
from tests.models.vector_support import stored_vectors

CONFIG = WindowEmbedderConfig(window=16, dimension=64)
SYMBOL = "SYN000"
HISTORY = generate_market(MarketConfig(symbols=1, bars_per_symbol=200, seed=11))
CHANGED = 100  # the position of the bar corrected or back-filled


def ingest(url: str, frame: pd.DataFrame, path: Path) -> dict[str, int]:
    write_market_csv(frame, path)
    report = ingest_file.fn(url, str(path))
    assert report["rows_quarantined"] == 0, report
    return report


def vectors_by_observation(url: str) -> dict[str, np.ndarray]:
    with session_scope(url) as session:
        # Typed columns: each database returns its own form of a UUID from raw SQL.
        query = select(MemoryItemRecord.id, MemoryItemRecord.observation_id)
        observations = dict(session.execute(query.where(MemoryItemRecord.observation_id.is_not(None))).all())
    vectors = stored_vectors(url, "market_state")
    return {str(observations[number]): vector for number, vector in vectors.items()}


def embedded_from_scratch(folder: Path, history: pd.DataFrame) -> dict[str, np.ndarray]:
    url = f"sqlite:///{folder}/scratch.db"
    upgrade_database(url)
    ingest(url, history, folder / "whole.csv")
    embed_symbol.fn(url, SYMBOL, CONFIG)
    vectors = vectors_by_observation(url)
    dispose_engines()
    return vectors


def assert_same_memory(found: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert found.keys() == expected.keys()
    for observation, vector in expected.items():
        np.testing.assert_allclose(found[observation], vector, rtol=0, atol=1e-6)


def corrected(history: pd.DataFrame) -> pd.DataFrame:
    fixed = history.copy()
    # A new close inside the bar's range keeps the bar valid while changing every window holding it.
    fixed.loc[CHANGED, "close"] = (fixed.loc[CHANGED, "low"] + fixed.loc[CHANGED, "close"]) / 2
    return fixed


def test_a_corrected_bar_drops_the_vectors_of_every_window_holding_it(database_url: str, tmp_path: Path) -> None:
    ingest(database_url, HISTORY, tmp_path / "first.csv")
    embed_symbol.fn(database_url, SYMBOL, CONFIG)

    report = ingest(database_url, corrected(HISTORY), tmp_path / "corrected.csv")

    assert report["rows_changed"] == 1
    assert report["vectors_invalidated"] == len(HISTORY) - CHANGED
    with session_scope(database_url) as session:
        counts = run_summaries.table_counts(session)
    # The windows holding the corrected bar lose their vectors; the bars before it keep their observations.
    assert counts["memory_items"] == CHANGED - CONFIG.window + 1
    assert counts["observations"] == CHANGED


def test_after_a_correction_embedding_again_rebuilds_exactly_the_memory_of_the_corrected_history(
    database_url: str, tmp_path: Path
) -> None:
    ingest(database_url, HISTORY, tmp_path / "first.csv")
    embed_symbol.fn(database_url, SYMBOL, CONFIG)
    ingest(database_url, corrected(HISTORY), tmp_path / "corrected.csv")

    rebuilt = embed_symbol.fn(database_url, SYMBOL, CONFIG)

    assert rebuilt["embedded"] == len(HISTORY) - CHANGED
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert_same_memory(vectors_by_observation(database_url), embedded_from_scratch(scratch, corrected(HISTORY)))


def test_a_back_filled_bar_rebuilds_every_later_window(database_url: str, tmp_path: Path) -> None:
    with_gap = HISTORY.drop(index=CHANGED)
    ingest(database_url, with_gap, tmp_path / "gap.csv")
    embed_symbol.fn(database_url, SYMBOL, CONFIG)

    report = ingest(database_url, HISTORY.iloc[[CHANGED]], tmp_path / "missing.csv")
    embed_symbol.fn(database_url, SYMBOL, CONFIG)

    assert report["vectors_invalidated"] == len(HISTORY) - 1 - CHANGED
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert_same_memory(vectors_by_observation(database_url), embedded_from_scratch(scratch, HISTORY))


def test_appending_new_bars_drops_nothing(database_url: str, tmp_path: Path) -> None:
    ingest(database_url, HISTORY.iloc[:150], tmp_path / "early.csv")
    embed_symbol.fn(database_url, SYMBOL, CONFIG)

    report = ingest(database_url, HISTORY.iloc[150:], tmp_path / "late.csv")
    embedded = embed_symbol.fn(database_url, SYMBOL, CONFIG)

    assert report["vectors_invalidated"] == 0
    assert embedded["embedded"] == 50
