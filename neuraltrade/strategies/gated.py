"""Strategy ``gated:<base>``: any strategy, its entries vetoed by what the learning loop knows (a meta-labeler).

The base strategy decides as it always does. Before each of its entries (a long or a short from flat, or a
flip), the gate asks the learning memory of the base strategy how such entries turned out:

- the episodes of the base strategy nearest to the current market state on the same side
  (`neuraltrade.learning.retrieval.retrieve`: similarity, recency and reliability, diversified by maximal
  marginal relevance), each judged (`neuraltrade.learning.judge`) and known strictly before the decision;
- the pattern of the latest distillation made strictly before the decision whose state region holds the
  current state (`neuraltrade.learning.patterns.match_pattern`).

Their evidence updates a Beta prior centred on the base strategy's success rate among the episodes known
at the decision, with the weight of `prior_strength` episodes: the probability of success is
``(s * base_rate + pattern wins + sum of neighbour similarities x successes) / (s + pattern trials + sum of
neighbour similarities)``, pattern counts being the distillation's decayed counts. With at least
`min_evidence` episodes behind it and a probability below `veto_below`, the entry is vetoed: no new
decision on that bar (or, for a flip, a flat target: the old position is still closed, as the base
wanted). An entry kept carries the probability as its confidence and links to every episode recalled
(`Relation.RECALLED`) and to the pattern (`Relation.GATED_BY`); a veto is counted in the frame's details
and features, not stored as a signal. `GatedStrategy.products` adds to the base's products one
`Retrieval` record per kept entry: each episode and pattern it read, with the moment it became known.

Nothing the gate reads can have become known after the decision: episodes are filtered on their
`outcome_known_at` and distillations on their `as_of`, both strictly before the decision bar's time,
whatever order runs or nights happen in. No language model anywhere: every number is computed.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple

import numpy as np

from neuraltrade.errors import ConfigError
from neuraltrade.learning.patterns import match_pattern
from neuraltrade.learning.regime import state_feature_matrix
from neuraltrade.learning.retrieval import LearningMemory, RetrievalConfig, Retrieved, retrieve
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.embedding import WindowEmbedderConfig
from neuraltrade.provenance.records import Retrieval, retrievals_of
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig
from neuraltrade.strategies.indicators import market_state_vectors
from neuraltrade.strategies.needs import Products
from neuraltrade.strategies.parameters import require_integer, require_number
from neuraltrade.timestamps import from_microseconds

#: The prefix of a gated strategy's name: ``gated:sma_cross`` gates ``sma_cross``.
GATED_PREFIX = "gated:"
#: The prefix of a gate parameter on the command line (``--param gate_veto_below=0.4``); others go to the base.
GATE_PARAMETER_PREFIX = "gate_"


@dataclass(frozen=True, kw_only=True)
class GatedConfig(StrategyConfig):
    """Parameters of ``gated:<base>``: the base strategy and its parameters, and the gate's own.

    Parameters
    ----------
    base, base_parameters
        The gated strategy's name and its configuration's plain values (defaults filled in).
    veto_below
        An entry whose probability of success is below this is vetoed.
    min_evidence
        Episodes (neighbours recalled plus the matched pattern's raw trials) needed before the gate vetoes.
    prior_strength
        Weight, in episodes, of the base rate the evidence updates.
    k, candidates, similarity_weight, recency_weight, reliability_weight, recency_half_life_days, diversity
        Retrieval (`neuraltrade.learning.retrieval.RetrievalConfig`).
    window, dimension, embedder_seed
        The market-state embedder whose vectors the episodes carry (the nightly one).
    """

    base: str
    base_parameters: Mapping[str, Any] = field(default_factory=dict)
    veto_below: float = 0.45
    min_evidence: int = 5
    prior_strength: float = 10.0
    k: int = 10
    candidates: int = 50
    similarity_weight: float = 0.6
    recency_weight: float = 0.2
    reliability_weight: float = 0.2
    recency_half_life_days: float = 365.0
    diversity: float = 0.3
    window: int = 32
    dimension: int = 512
    embedder_seed: int = 20_240_601

    def __post_init__(self) -> None:
        name = f"{GATED_PREFIX}{self.base}"
        if not self.base or self.base.startswith(GATED_PREFIX):
            raise ConfigError(f"strategy {name!r}: the gated strategy must be a base strategy, was {self.base!r}")
        require_number(name, "veto_below", self.veto_below, at_least=0.0, at_most=1.0)
        require_integer(name, "min_evidence", self.min_evidence, 0)
        require_number(name, "prior_strength", self.prior_strength, at_least=0.0)
        _ = self.retrieval_config  # validates the retrieval fields
        WindowEmbedderConfig(window=self.window, dimension=self.dimension, seed=self.embedder_seed)

    @property
    def retrieval_config(self) -> RetrievalConfig:
        """The retrieval the gate asks the memory with."""
        return RetrievalConfig(
            k=self.k,
            candidates=self.candidates,
            similarity_weight=self.similarity_weight,
            recency_weight=self.recency_weight,
            reliability_weight=self.reliability_weight,
            recency_half_life_days=self.recency_half_life_days,
            diversity=self.diversity,
        )

    @property
    def embedder_config(self) -> WindowEmbedderConfig:
        """The embedder of the episodes' entry states."""
        return WindowEmbedderConfig(window=self.window, dimension=self.dimension, seed=self.embedder_seed)


class GateDecision(NamedTuple):
    """What the gate made of one entry: the probability of success, the evidence behind it, whether it is
    vetoed, and the episodes and pattern it was decided on."""

    probability: float
    evidence: float
    veto: bool
    recalled: tuple[Retrieved, ...]
    pattern_id: uuid.UUID | None


class GatedStrategy(Strategy):
    """A base strategy whose entries the learning memory of that strategy may veto (see the module)."""

    name: ClassVar[str] = "gated"
    config: GatedConfig

    def __init__(self, config: GatedConfig, base: Strategy, memory: LearningMemory) -> None:
        super().__init__(config)
        if base.name != config.base:
            raise ConfigError(f"gated strategy configured for {config.base!r} was given {base.name!r}")
        self.base = base
        self.memory = memory

    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return the base's decisions with vetoed entries removed; links name the episodes and patterns used."""
        frame = self.base.signals(history)
        count = len(history)
        target = frame.target.copy()
        confidence = frame.confidence.copy()
        probability = np.full(count, np.nan)
        evidence = np.zeros(count)
        vetoed = np.zeros(count)
        links = dict(frame.links)
        decided = frame.decisions()
        entries = [int(bar) for bar in decided if target[bar] != 0.0]
        vectors = features = None
        if entries:
            # Rows before a full window are zero: nothing is similar to them.
            vectors = np.nan_to_num(market_state_vectors(history, self.config.embedder_config))
            features = state_feature_matrix(history)
        position = 0.0
        assessed = hits = 0
        for bar in (int(bar) for bar in decided):
            wanted = float(target[bar])
            if wanted == position:
                target[bar] = np.nan  # a vetoed entry's repeat, or the base leaving a position the gate never took
                continue
            if wanted == 0.0:
                position = 0.0
                continue
            assert vectors is not None and features is not None
            assessed += 1
            decision = self.assess(history, bar, int(wanted), vectors[bar], np.nan_to_num(features[bar]))
            probability[bar], evidence[bar] = decision.probability, decision.evidence
            hits += bool(decision.recalled)
            gate_links = _links(decision)
            links[bar] = tuple(links.get(bar, ())) + gate_links
            if decision.veto:
                vetoed[bar] = 1.0
                # A vetoed flip still closes the old position; a vetoed entry from flat is no decision.
                target[bar] = 0.0 if position != 0.0 else np.nan
                position = 0.0
                continue
            if decision.evidence > 0:
                confidence[bar] = decision.probability
            position = wanted
        decisions_left = ~np.isnan(target)
        return SignalFrame(
            target=target,
            confidence=np.where(decisions_left, confidence, 0.0),
            stop_loss=frame.stop_loss,
            take_profit=frame.take_profit,
            trailing_stop=frame.trailing_stop,
            entry_limit=frame.entry_limit,
            entry_stop=frame.entry_stop,
            valid_bars=frame.valid_bars,
            links={bar: edges for bar, edges in links.items() if decisions_left[bar]},
            features={
                **frame.features,
                "gate_probability": probability,
                "gate_evidence": evidence,
                "gate_vetoed": vetoed,
            },
            warmup=frame.warmup,
            details={
                **frame.details,
                "gate": {
                    "entries": len(entries),
                    "retrievals": assessed,
                    "retrievals_with_hits": hits,
                    "vetoes": int(vetoed.sum()),
                    "memory": self.memory.digest,
                },
            },
        )

    def products(self, history: PriceHistory, frame: SignalFrame) -> Products:
        """Return the base strategy's products over `history` (its model versions, details and retrievals,
        the latter under this strategy's id, whose signals they are), and one `Retrieval` per decision of
        `frame` (this strategy's signals) the gate read its memory for: every episode recalled, known when
        its outcome was (as the memory holds it), and the pattern matched, known when its distillation was
        made (``as_of``)."""
        made = self.base.products(history, frame)
        own = [
            Retrieval.of(
                strategy_id=self.strategy_id,
                symbol=retrieval.symbol,
                decision_time=retrieval.decision_time,
                horizon_bars=retrieval.horizon_bars,
                items=retrieval.items,
            )
            for retrieval in made.retrievals
        ]
        own.extend(self._gate_retrievals(history, frame))
        return replace(made, retrievals=tuple(own))

    def _gate_retrievals(self, history: PriceHistory, frame: SignalFrame) -> list[Retrieval]:
        """One `Retrieval` per decided bar of `frame` linked to episodes recalled or a pattern gated by."""
        gate_links = {
            int(bar): [link for link in links if (link.cause_kind, link.relation) in _GATE_EDGES]
            for bar, links in frame.links.items()
        }
        if not any(gate_links.values()):
            return []
        episodes = self.memory.episodes
        known_at = {
            **{
                (CauseKind.EPISODE, episode): from_microseconds(int(moment))
                for episode, moment in zip(episodes.ids, episodes.known_at, strict=True)
            },
            **{
                (CauseKind.PATTERN, pattern.id): distillation.as_of
                for distillation, patterns in self.memory.distillations
                for pattern in patterns
            },
        }
        return list(
            retrievals_of(
                strategy_id=self.strategy_id,
                symbol=history.symbol,
                timestamps=history.timestamps,
                links=gate_links,
                known_at=lambda link: known_at.get((link.cause_kind, link.cause_id)),
            )
        )

    def assess(
        self, history: PriceHistory, bar: int, side: int, vector: np.ndarray, features: np.ndarray
    ) -> GateDecision:
        """Return the gate's decision on an entry to `side` after bar `bar` of `history`, in market state
        `vector` (the embedder's) with state `features` (`neuraltrade.learning.regime`)."""
        config = self.config
        moment = from_microseconds(int(history.timestamps[bar]))
        memory = self.memory
        recalled: tuple[Retrieved, ...] = ()
        # A bar before the first full window has no market state (a zero vector): nothing is recalled for it.
        if len(memory.episodes) and bool(np.any(vector)):
            recalled = tuple(
                retrieve(memory.episodes, vector, decision_time=moment, side=side, config=config.retrieval_config)
            )
        # The base strategy's success rate on this side among episodes known before the decision (any side
        # without one yet; even odds without any episode).
        found = memory.base_rate_at(moment, side)
        found = memory.base_rate_at(moment) if found is None else found
        base_rate = 0.5 if found is None else found
        wins = trials = 0.0
        raw_trials = 0.0
        pattern_id: uuid.UUID | None = None
        visible = memory.visible_patterns(moment)
        if visible is not None:
            distillation, patterns = visible
            pattern = match_pattern(distillation, patterns, features, side)
            if pattern is not None:
                wins, trials, raw_trials = pattern.decayed_wins, pattern.decayed_trials, float(pattern.trials)
                pattern_id = pattern.id
        similarities = np.array([max(item.similarity, 0.0) for item in recalled])
        successes = np.array([1.0 if item.success else 0.0 for item in recalled])
        wins += float(np.dot(similarities, successes)) if len(recalled) else 0.0
        trials += float(similarities.sum()) if len(recalled) else 0.0
        strength = config.prior_strength
        total = strength + trials
        probability = (strength * base_rate + wins) / total if total > 0 else base_rate
        evidence = len(recalled) + raw_trials
        veto = evidence >= config.min_evidence and probability < config.veto_below
        return GateDecision(probability, evidence, veto, recalled, pattern_id)


#: The edges the gate adds to a decision: the episodes it recalled and the pattern it was gated by.
_GATE_EDGES = frozenset({(CauseKind.EPISODE, Relation.RECALLED), (CauseKind.PATTERN, Relation.GATED_BY)})


def _links(decision: GateDecision) -> tuple[CausalLink, ...]:
    edges = [
        CausalLink(cause_id=item.episode_id, cause_kind=CauseKind.EPISODE, relation=Relation.RECALLED)
        for item in decision.recalled
    ]
    if decision.pattern_id is not None:
        edges.append(CausalLink(cause_id=decision.pattern_id, cause_kind=CauseKind.PATTERN, relation=Relation.GATED_BY))
    return tuple(edges)


@functools.cache
def gated_class(base: str) -> type[GatedStrategy]:
    """The class of ``gated:<base>``: `GatedStrategy` under that name (one class per base, so that a run and
    its id carry the gated strategy's full name)."""
    return type(f"Gated_{base}", (GatedStrategy,), {"name": f"{GATED_PREFIX}{base}", "__module__": __name__})


def is_gated(name: str) -> bool:
    """Whether `name` names a gated strategy (``gated:<base>``)."""
    return name.startswith(GATED_PREFIX)


def base_name(name: str) -> str:
    """The base strategy of the gated strategy `name`."""
    return name[len(GATED_PREFIX) :]


def split_parameters(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split parameters given to ``gated:<base>`` into the base's and the gate's (``gate_`` prefix removed)."""
    base: dict[str, Any] = {}
    gate: dict[str, Any] = {}
    for key, value in params.items():
        if key.startswith(GATE_PARAMETER_PREFIX):
            gate[key[len(GATE_PARAMETER_PREFIX) :]] = value
        else:
            base[key] = value
    return base, gate
