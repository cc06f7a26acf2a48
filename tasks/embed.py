"""Embedding tasks: turn a symbol's bars that have no vector yet into observations and vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import task

from models import repositories
from models.engine import session_scope
from models.vector_store import VectorDB
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.errors import UnknownSymbol
from neuraltrade.market.bars import timestamps_to_microseconds
from neuraltrade.memory.embedding import WindowEmbedder, WindowEmbedderConfig, relative_spreads
from neuraltrade.types import Observation
from tasks import progress
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient

clock: Clock = SystemClock()

#: The collection the nightly pipeline fills with market-state vectors.
MARKET_STATE_COLLECTION = "market_state"
_SPREAD_SOURCES = {True: {"spread_source": "quoted"}, False: {"spread_source": "high_low_range"}}


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def list_symbols(database_url: str) -> list[str]:
    """Return every symbol that has bars."""
    with session_scope(database_url) as session:
        return repositories.list_symbols(session)


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def embed_symbol(
    database_url: str,
    symbol: str,
    embedder_config: WindowEmbedderConfig,
    collection: str = MARKET_STATE_COLLECTION,
) -> dict[str, Any]:
    """Embed every bar of `symbol` that has a full window and no vector yet; store the observation (the
    market state) of every bar, those before the first full window included, which have no vector.

    Reads, computes, then writes in one short write transaction, so that several symbols embed in
    parallel while SQLite's single writer is busy with another. A re-run writes the same ids: what
    another run stored in between is replaced by identical rows, never doubled.

    Returns ``{"symbol", "embedded", "skipped_history"}``: vectors stored now, and bars too early in
    the history to have a full window.
    """
    embedder = WindowEmbedder(embedder_config)
    memory = VectorDB(
        embedder.fingerprint.dimension,
        name=collection,
        fingerprint=embedder.fingerprint,
        database_url=database_url,
        clock=clock,
    )
    collection_id = memory.collection_id
    window = embedder.window
    with session_scope(database_url) as session:
        timestamps = repositories.bar_timestamps(session, symbol)
        if len(timestamps) == 0:
            raise UnknownSymbol(symbol)
        eligible = timestamps[window - 1 :]
        missing = eligible[~np.isin(eligible, repositories.embedded_timestamps(session, collection_id, symbol))]
        skipped = min(len(timestamps), window - 1)
        # The bars before the first full window have a market state too (a strategy may decide on them, and
        # its signal links their observation), only no vector. A database embedded before they were stored
        # gets them here, once.
        unobserved = timestamps[:0]
        if len(eligible):
            early = timestamps[: window - 1]
            observed = repositories.observation_timestamps(session, symbol, before=int(eligible[0]))
            unobserved = early[~np.isin(early, observed)]
        if len(missing) == 0 and len(unobserved) == 0:
            progress.report("embed", symbol, 0)
            return {"symbol": symbol, "embedded": 0, "skipped_history": skipped}
        first = int(np.searchsorted(timestamps, missing[0])) if len(missing) else 0
        start = 0 if len(unobserved) else first - window + 1
        frame, bar_ids = repositories.load_bars(session, symbol, since=int(timestamps[start]))

    vectors = embedder.embed(frame) if len(missing) else None
    # Row r of `vectors` embeds the window that ends at bar r + window - 1 of `frame`.
    stamps = timestamps_to_microseconds(frame["timestamp"])
    ends = stamps[window - 1 :]
    wanted = np.isin(ends, missing)
    positions = np.flatnonzero(wanted) + window - 1
    warmup = np.flatnonzero(np.isin(stamps, unobserved))
    stored = np.concatenate([warmup, positions])
    moments = stamps[stored].tolist()
    observation_ids = Observation.ids_for(symbol, moments)
    quoted = ~np.isnan(frame["spread"].to_numpy()[stored])
    now = clock.now()
    count = len(positions)
    observations: dict[str, list[Any]] = {
        "id": observation_ids,
        "bar_id": bar_ids[stored].tolist(),
        "symbol": [symbol] * len(stored),
        "timestamp": moments,
        "price": frame["close"].to_numpy()[stored].tolist(),
        "volume": frame["volume"].to_numpy()[stored].tolist(),
        "spread": relative_spreads(frame)[stored].tolist(),
        "metadata": [_SPREAD_SOURCES[bool(flag)] for flag in quoted],
        "created_at": [now] * len(stored),
    }
    embedded_ids = observation_ids[len(warmup) :]
    with session_scope(database_url, write=True) as session:
        repositories.upsert_observations(session, observations)
        if vectors is None:  # only early bars' observations were missing
            progress.report("embed", symbol, 0)
            return {"symbol": symbol, "embedded": 0, "skipped_history": skipped}
        keys = [str(observation) for observation in embedded_ids]
        memory.upsert_many(
            keys,
            vectors[wanted],
            [{"symbol": symbol, "observation_id": key} for key in keys],
            timestamps=moments[len(warmup) :],
            observation_ids=embedded_ids,
            session=session,
        )
    progress.report("embed", symbol, count)
    return {"symbol": symbol, "embedded": count, "skipped_history": skipped}
