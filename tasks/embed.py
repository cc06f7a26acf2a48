"""Embedding tasks: turn a symbol's bars that have no vector yet into observations and vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task

from models import repositories, vector_store
from models.engine import session_scope
from neuraltrade.bars import timestamps_to_microseconds
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.embedding import WindowEmbedder, WindowEmbedderConfig, relative_spreads
from neuraltrade.memory import CollectionSpec
from neuraltrade.types import Observation
from tasks import progress
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient

clock: Clock = SystemClock()

#: The collection the nightly pipeline fills with market-state vectors.
MARKET_STATE_COLLECTION = "market_state"


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def list_symbols(database_url: str) -> list[str]:
    """Return every symbol that has bars."""
    with session_scope(database_url) as session:
        return repositories.symbols(session)


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def embed_symbol(
    database_url: str,
    symbol: str,
    embedder_config: WindowEmbedderConfig,
    collection: str = MARKET_STATE_COLLECTION,
) -> dict[str, Any]:
    """Embed every bar of `symbol` that has a full window and no vector yet, in one transaction.

    Returns ``{"symbol", "embedded", "skipped_history"}``: vectors stored now, and bars too early in
    the history to have a full window.
    """
    embedder = WindowEmbedder(embedder_config)
    spec = CollectionSpec(name=collection, fingerprint=embedder.fingerprint)
    now = clock.now()
    with session_scope(database_url, write=True) as session:
        record = vector_store.ensure_collection(session, spec, now)
        timestamps = repositories.bar_timestamps(session, symbol)
        eligible = timestamps[embedder.window - 1 :]
        missing = eligible[~np.isin(eligible, repositories.embedded_timestamps(session, record.id, symbol))]
        skipped = min(len(timestamps), embedder.window - 1)
        if len(missing) == 0:
            progress.report("embed", symbol, 0)
            return {"symbol": symbol, "embedded": 0, "skipped_history": skipped}
        first = int(np.searchsorted(timestamps, missing[0]))
        frame, bar_ids = repositories.load_bars(session, symbol, since=int(timestamps[first - embedder.window + 1]))
        vectors = embedder.embed(frame)
        # Row i of `vectors` embeds the window ending at bar i + window - 1 of `frame`.
        ends = timestamps_to_microseconds(frame["timestamp"])[embedder.window - 1 :]
        wanted = np.isin(ends, missing)
        positions = np.flatnonzero(wanted) + embedder.window - 1
        spreads = relative_spreads(frame)
        quoted = ~np.isnan(frame["spread"].to_numpy())
        moments = ends[positions - embedder.window + 1].tolist()
        observation_ids = Observation.ids_for(symbol, moments)
        closes = frame["close"].to_numpy()
        volumes = frame["volume"].to_numpy()
        repositories.upsert_observations(
            session,
            [
                {
                    "id": observation_ids[n],
                    "bar_id": int(bar_ids[i]),
                    "symbol": symbol,
                    "timestamp": moments[n],
                    "price": float(closes[i]),
                    "volume": float(volumes[i]),
                    "spread": float(spreads[i]),
                    "metadata": {"spread_source": "quoted" if quoted[i] else "high_low_range"},
                    "created_at": now,
                }
                for n, i in enumerate(positions)
            ],
        )
        vector_store.insert_vectors(
            session,
            record,
            embedder.fingerprint,
            observation_ids=observation_ids,
            symbols=[symbol] * len(positions),
            timestamps=moments,
            vectors=vectors[wanted],
            now=now,
        )
    progress.report("embed", symbol, len(positions))
    return {"symbol": symbol, "embedded": len(positions), "skipped_history": skipped}
