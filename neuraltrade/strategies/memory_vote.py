"""Strategy `memory_vote`: find the past market states most like today's and vote by what followed them.

On bar i the strategy embeds the window ending at i (the same `WindowEmbedder` that fills the nightly
``market_state`` collection) and asks the vector memory for the `k` nearest states of the same symbol.
Point in time matters twice: the memory answers only with items stamped strictly before bar
``i - horizon`` (``Query.as_of``), so that every neighbour's outcome, its return over the `horizon` bars
after it, is already known on bar i; and that outcome is read from the history's own closes.

The vote is the distance-weighted mean of the neighbours' outcome signs (weight ``1 / (distance +
0.01)``); its confidence is the agreement, the weighted share of neighbours on the winning side. An
opinion needs at least `min_neighbours` neighbours with a known outcome and an agreement of at least
`min_confidence`; a target is emitted when the opinion changes (a repeated target would make the engine
enter again), linked to the observations of the neighbours it was decided on. `MemoryVote.products`
turns those links into one `Retrieval` record per decision, each neighbour with the moment its outcome
became known (its bar's time `horizon` bars later), which the stored run signs.

The domain never imports the store: anything with ``search(Query) -> list[SearchResult]`` will do
(`neuraltrade.strategies.needs.MemorySearcher`), e.g. ``models.vector_store.VectorDB`` opened on the
``market_state`` collection; the registry takes it from a context (`Strategy.needs`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

from neuraltrade.canonical import stable_id
from neuraltrade.errors import ConfigError, FingerprintMismatch, ValidationError
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.embedding import EmbedderFingerprint, WindowEmbedder, WindowEmbedderConfig
from neuraltrade.memory.query import Filter, Query, SearchResult
from neuraltrade.provenance.records import retrievals_of
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig
from neuraltrade.strategies.indicators import decide_on_change, market_state_vectors
from neuraltrade.strategies.needs import MemorySearcher, Need, Products, Supplies
from neuraltrade.strategies.parameters import require_integer, require_number
from neuraltrade.timestamps import from_microseconds, to_microseconds
from neuraltrade.types import Observation

#: Keeps a neighbour at distance 0 (the same state stored twice) from outweighing all the others.
DISTANCE_FLOOR = 0.01


@dataclass(frozen=True, kw_only=True)
class MemoryVoteConfig(StrategyConfig):
    """Parameters of `memory_vote`.

    Parameters
    ----------
    k
        Neighbours asked for.
    horizon
        Bars after a neighbour over which its outcome is measured.
    min_neighbours
        Neighbours with a known outcome needed for an opinion.
    min_confidence
        Agreement (weighted share on the winning side, 0.5 to 1) needed for an opinion.
    window, dimension, embedder_seed
        The `WindowEmbedder` of the collection searched (the nightly one: 32 bars, 512 dimensions).
    """

    k: int = 10
    horizon: int = 5
    min_neighbours: int = 5
    min_confidence: float = 0.7
    window: int = 32
    dimension: int = 512
    embedder_seed: int = 20_240_601

    def __post_init__(self) -> None:
        for name, minimum in (
            ("k", 1),
            ("horizon", 1),
            ("min_neighbours", 1),
            ("window", 8),
            ("dimension", 8),
            ("embedder_seed", 0),
        ):
            require_integer("memory_vote", name, getattr(self, name), minimum)
        if self.min_neighbours > self.k:
            raise ConfigError(
                f"memory_vote parameter min_neighbours ({self.min_neighbours}) must not exceed k ({self.k})"
            )
        require_number("memory_vote", "min_confidence", self.min_confidence, at_least=0.5, at_most=1.0)
        WindowEmbedderConfig(window=self.window, dimension=self.dimension, seed=self.embedder_seed)

    @property
    def embedder_config(self) -> WindowEmbedderConfig:
        """The configuration of the embedder whose vectors the memory holds."""
        return WindowEmbedderConfig(window=self.window, dimension=self.dimension, seed=self.embedder_seed)


class MemoryVote(Strategy):
    """Vote of the `k` nearest past market states of the same symbol, each known `horizon` bars later.

    Parameters
    ----------
    config
        The strategy's parameters.
    searcher
        The vector memory. If it tells its collection's embedder (``searcher.spec.fingerprint``, as
        ``VectorDB`` does), that must be the configuration's embedder.
    """

    name: ClassVar[str] = "memory_vote"
    needs: ClassVar[frozenset[Need]] = frozenset({Need.MEMORY_SEARCHER})
    config: MemoryVoteConfig

    @classmethod
    def from_supplies(cls, config: StrategyConfig, supplies: Supplies) -> MemoryVote:
        """Build the strategy on the memory its context supplied."""
        assert isinstance(config, MemoryVoteConfig) and supplies.memory is not None  # the registry filled `needs`
        return cls(config, supplies.memory.searcher)

    def __init__(self, config: MemoryVoteConfig, searcher: MemorySearcher) -> None:
        super().__init__(config)
        spec = getattr(searcher, "spec", None)
        stored = getattr(spec, "fingerprint", None)
        expected = WindowEmbedder(config.embedder_config).fingerprint
        if isinstance(stored, EmbedderFingerprint) and stored.digest != expected.digest:
            raise FingerprintMismatch(str(getattr(spec, "name", "?")), stored.describe(), expected.describe())
        self.searcher = searcher

    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return the memory's votes; `links` name the neighbours each decision was taken on."""
        config = self.config
        count = len(history)
        vectors = market_state_vectors(history, config.embedder_config)
        where = Filter.eq("symbol", history.symbol)
        vote = np.full(count, np.nan)
        agreement = np.full(count, np.nan)
        neighbours = np.zeros(count)
        opinion = np.full(count, np.nan)
        used: dict[int, list[SearchResult]] = {}
        warmup = config.window - 1 + config.horizon + config.min_neighbours
        for bar in range(warmup, count):
            as_of = _moment(history.timestamps[bar - config.horizon])
            results = self.searcher.search(Query(vectors[bar], k=config.k, where=where, as_of=as_of))
            outcomes, weights, kept = self._outcomes(history, bar, as_of, results)
            neighbours[bar] = len(outcomes)
            if not len(outcomes):
                continue
            signs = np.sign(outcomes)
            total = weights.sum()
            vote[bar] = float(np.dot(weights, signs) / total)
            side = float(np.sign(vote[bar]))
            agreement[bar] = float(weights[signs == side].sum() / total) if side else 0.5
            if side and len(outcomes) >= config.min_neighbours and agreement[bar] >= config.min_confidence:
                opinion[bar] = side
                used[bar] = kept
        target = decide_on_change(opinion)
        decided = np.flatnonzero(~np.isnan(target))
        return SignalFrame(
            target=target,
            confidence=np.where(np.isnan(target), 0.0, np.nan_to_num(agreement, nan=0.0)),
            links={int(bar): tuple(_recalled(result) for result in used[int(bar)]) for bar in decided},
            features={"vote": vote, "agreement": agreement, "neighbours": neighbours},
            warmup=warmup,
        )

    def products(self, history: PriceHistory, frame: SignalFrame) -> Products:
        """Return what each decision of `frame` (this strategy's signals over `history`) read from memory: one
        `Retrieval` per decided bar, naming every market state it recalled and when that state's outcome
        became known (the bar `horizon` bars after the state's own).

        A recalled state is placed by its observation id among the bars of `history`; one that is no bar
        of it (an item without an observation id) cannot be placed, and is left out.
        """
        recalled = {
            int(bar): [
                link
                for link in links
                if link.cause_kind is CauseKind.MEMORY_ITEM and link.relation is Relation.RECALLED
            ]
            for bar, links in frame.links.items()
        }
        if not any(recalled.values()):
            return Products()
        horizon = self.config.horizon
        timestamps = history.timestamps
        position_of = {
            observation: position
            for position, observation in enumerate(Observation.ids_for(history.symbol, timestamps.tolist()))
        }

        def known_at(link: CausalLink) -> datetime | None:
            position = position_of.get(link.cause_id)
            if position is None or position + horizon >= len(history):
                return None
            return _moment(timestamps[position + horizon])

        retrievals = retrievals_of(
            strategy_id=self.strategy_id,
            symbol=history.symbol,
            timestamps=timestamps,
            links=recalled,
            known_at=known_at,
            horizon_bars=horizon,
        )
        return Products(retrievals=retrievals)

    def _outcomes(
        self, history: PriceHistory, bar: int, as_of: datetime, results: list[SearchResult]
    ) -> tuple[np.ndarray, np.ndarray, list[SearchResult]]:
        """Return the outcomes and weights of the neighbours whose bars lie in `history`, and those neighbours."""
        for result in results:
            if result.timestamp >= as_of:
                raise ValidationError(
                    f"memory_vote on {history.symbol}: the memory returned item {result.id!r} of "
                    f"{result.timestamp.isoformat()}, not before the query's as_of {as_of.isoformat()}"
                )
        moments = np.array([_microseconds(result.timestamp) for result in results], dtype=np.int64)
        positions = np.searchsorted(history.timestamps[:bar], moments)
        # A state of a bar this history lacks (another symbol, bars since deleted) has no outcome here.
        inside = positions < bar
        inside[inside] = history.timestamps[positions[inside]] == moments[inside]
        inside &= positions + self.config.horizon <= bar
        neighbours = positions[inside]
        outcomes = history.close[neighbours + self.config.horizon] / history.close[neighbours] - 1.0
        found = np.array([result.distance for result in results], dtype=np.float64)[inside]
        weights = 1.0 / (np.maximum(found, 0.0) + DISTANCE_FLOOR)
        return outcomes, weights, [result for result, kept in zip(results, inside, strict=True) if kept]


def _recalled(result: SearchResult) -> CausalLink:
    """The typed edge from a decision to a neighbour it recalled."""
    return CausalLink(cause_id=_item_uuid(result), cause_kind=CauseKind.MEMORY_ITEM, relation=Relation.RECALLED)


def _item_uuid(result: SearchResult) -> uuid.UUID:
    """The neighbour's observation id if its metadata holds one, else a UUID derived from its item key."""
    observation = result.metadata.get("observation_id")
    if isinstance(observation, str):
        try:
            return uuid.UUID(observation)
        except ValueError:
            pass
    return stable_id("memory_item", result.id)


def _moment(microseconds: int | np.integer[Any]) -> datetime:
    return from_microseconds(int(microseconds))


def _microseconds(moment: datetime) -> int:
    return to_microseconds(moment)
