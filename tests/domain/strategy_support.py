"""Histories and an honest in-memory vector memory for the strategy specifications."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from neuraltrade.market.history import PriceHistory
from neuraltrade.market.ingest import read_bars
from neuraltrade.memory.collection import distances
from neuraltrade.memory.embedding import WindowEmbedder, WindowEmbedderConfig
from neuraltrade.memory.query import Filter, Query, SearchResult
from neuraltrade.strategies.indicators import bar_frame
from neuraltrade.strategies.needs import MemoryRead
from tests.conftest import DAILY_DATA

DAILY = DAILY_DATA
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@cache
def real_history(symbol: str = "NVDA") -> PriceHistory:
    """The whole daily history of `symbol` from the shared data."""
    return PriceHistory.from_frame(read_bars(Path(DAILY / f"{symbol}.csv")).frame)


def moment(microseconds: int | np.integer[Any]) -> datetime:
    return EPOCH + timedelta(microseconds=int(microseconds))


def periodic_history(count: int, period: int = 16, symbol: str = "WAVE", noise: float = 0.0) -> PriceHistory:
    """A price that swings in a fixed cycle: what comes next is written in the recent past."""
    rng = np.random.default_rng(3)
    bars = np.arange(count)
    close = 100.0 * np.exp(0.05 * np.sin(2 * np.pi * bars / period) + noise * rng.standard_normal(count))
    opens = np.concatenate(([close[0]], close[:-1]))
    start = datetime(2020, 1, 1, tzinfo=UTC)
    stamps = np.array([int((start + timedelta(days=int(bar)) - EPOCH) / timedelta(microseconds=1)) for bar in bars])
    return PriceHistory(
        symbol=symbol,
        timestamps=stamps,
        open=opens,
        high=np.maximum(opens, close) * 1.002,
        low=np.minimum(opens, close) * 0.998,
        close=close,
        volume=np.full(count, 1e6) * (1.0 + 0.1 * np.cos(2 * np.pi * bars / period)),
    )


@dataclass
class BruteForceMemory:
    """A vector memory answering as the store does, by brute force: cosine, metadata filter, strict as_of.

    `queries` records every query asked, so tests can check what the strategy asked for.
    """

    keys: list[str] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    metadata: list[dict[str, Any]] = field(default_factory=list)
    timestamps: list[datetime] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    _stamps: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    _fields: dict[str, np.ndarray] = field(default_factory=dict)

    def add_history(self, history: PriceHistory, config: WindowEmbedderConfig) -> None:
        """Store the market state of every full window of `history`, as the nightly embed task does."""
        vectors = WindowEmbedder(config).embed(bar_frame(history))
        for row, stamp in enumerate(history.timestamps[config.window - 1 :]):
            observation = history.observation_id(row + config.window - 1)
            self.keys.append(str(observation))
            self.metadata.append({"symbol": history.symbol, "observation_id": str(observation)})
            self.timestamps.append(moment(stamp))
        self.vectors = vectors if not len(self.vectors) else np.concatenate([self.vectors, vectors])
        self._stamps = np.array([(stamp - EPOCH) // timedelta(microseconds=1) for stamp in self.timestamps])
        names = {name for metadata in self.metadata for name in metadata}
        self._fields = {name: np.array([item.get(name) for item in self.metadata], dtype=object) for name in names}

    def search(self, query: Query) -> list[SearchResult]:
        self.queries.append(query)
        allowed = self._where(query.where)
        if query.as_of is not None:
            allowed &= self._stamps < (query.as_of - EPOCH) // timedelta(microseconds=1)
        rows = np.flatnonzero(allowed)
        if not len(rows):
            return []
        found = distances("cosine", query.vector, self.vectors[rows])
        order = np.argsort(found, kind="stable")[: query.k]
        return [
            SearchResult(self.keys[rows[i]], float(found[i]), self.metadata[rows[i]], self.timestamps[rows[i]])
            for i in order
        ]

    def _where(self, where: Filter | None) -> np.ndarray:
        if where is None:
            return np.ones(len(self.keys), dtype=bool)
        if where.operator == "and":
            masks = [self._where(operand) for operand in where.operands]
            return np.logical_and.reduce(masks)
        if where.operator == "eq":
            return np.asarray(self._fields[where.name or ""] == where.value, dtype=bool)
        raise NotImplementedError(f"the brute-force memory does not evaluate {where.describe()}")


@dataclass
class MemoryContext:
    """A strategy context that supplies one in-memory vector memory, and records what it was asked for."""

    memory: Any
    digest: str = "ab" * 32
    asked: list[tuple[str, ...]] = field(default_factory=list)

    def memory_searcher(self, symbols: Sequence[str]) -> MemoryRead:
        self.asked.append(tuple(symbols))
        items = len(self.memory.keys)
        return MemoryRead(searcher=self.memory, collection="test_memory", items=items, digest=self.digest)
