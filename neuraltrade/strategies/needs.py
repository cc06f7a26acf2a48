"""What a strategy needs besides its bars, and what it produces besides its signals.

A strategy class declares its needs (`Strategy.needs`, a set of `Need`); the registry
(`neuraltrade.strategies.registry.build_strategy`) fills them from a `StrategyContext` and hands the
strategy what it was given (`Supplies`), which the strategy keeps (`Strategy.supplies`): a run's
specification names the memory read by its digest, and the stored run records what was read. After a
backtest, `Strategy.products` returns what the strategy made of a symbol's history besides its signals:
the model versions its signals link to (`ModelVersion`), what the run records of them, and what each
decision read from memory (`neuraltrade.provenance.records.Retrieval`).

The caller that runs and stores backtests therefore never asks which strategy it runs: a strategy with a
new dependency adds a `Need`, a method of `StrategyContext` and its adapter (``tasks.strategy_context``),
and no branch anywhere else.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from neuraltrade.canonical import digest, stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.memory.query import Query, SearchResult
from neuraltrade.provenance.records import Retrieval

if TYPE_CHECKING:
    from neuraltrade.learning.retrieval import LearningMemory

_HEX = frozenset("0123456789abcdef")


class Need(enum.Enum):
    """Something a strategy needs besides its bars, which a `StrategyContext` supplies."""

    #: A vector memory to search (`MemorySearcher`), with what a run records of it (`MemoryRead`).
    MEMORY_SEARCHER = "memory_searcher"
    #: What the learning loop knows of a strategy: its judged episodes and distilled patterns (`LearningRead`).
    LEARNING_MEMORY = "learning_memory"


class MemorySearcher(Protocol):
    """What a strategy asks of a vector memory: the nearest items to a query."""

    def search(self, query: Query) -> list[SearchResult]:
        """Return up to ``query.k`` items nearest to ``query.vector`` that satisfy its filter and ``as_of``."""
        ...


@dataclass(frozen=True, kw_only=True)
class MemoryRead:
    """A vector memory a strategy searches, and what a run records of it: collection, size and digest.

    The digest is part of the run's specification: a run on another memory is another run.
    """

    searcher: MemorySearcher
    collection: str
    items: int
    digest: str

    def record(self) -> dict[str, Any]:
        """What a stored run keeps of the memory read."""
        return {"collection": self.collection, "items": self.items, "digest": self.digest}


@dataclass(frozen=True, kw_only=True)
class LearningRead:
    """What the learning loop knows of one strategy (`LearningMemory`), and what a run records of it.

    The digest is part of the run's specification: a gated run on another night's memory is another run.
    """

    memory: LearningMemory
    strategy: str
    episodes: int
    distillations: int
    digest: str

    def record(self) -> dict[str, Any]:
        """What a stored run keeps of the learning memory read."""
        return {
            "strategy": self.strategy,
            "episodes": self.episodes,
            "distillations": self.distillations,
            "digest": self.digest,
        }


class StrategyContext(Protocol):
    """What fills a strategy's needs: implemented against the database by the adapter layer."""

    def memory_searcher(self, symbols: Sequence[str]) -> MemoryRead:
        """Return the vector memory of `symbols` (every symbol's when empty) and what a run records of it."""
        ...

    def learning_memory(self, strategy: str) -> LearningRead:
        """Return what the learning loop knows of the strategy of id `strategy` (its episodes and patterns)."""
        ...


@dataclass(frozen=True, kw_only=True)
class Supplies:
    """What a strategy was given for its needs (nothing, for a strategy that needs nothing)."""

    memory: MemoryRead | None = None
    learning: LearningRead | None = None

    @property
    def memory_digest(self) -> str | None:
        """The digest of the memories read, which a run's specification names (None without any): the vector
        memory's own digest alone, or with a learning memory the digest of both."""
        if self.learning is None:
            return None if self.memory is None else self.memory.digest
        return digest({"memory": None if self.memory is None else self.memory.digest, "learning": self.learning.digest})

    def record(self) -> dict[str, Any]:
        """What a stored run keeps of the supplies (by name; empty without any)."""
        kept: dict[str, Any] = {}
        if self.memory is not None:
            kept["memory"] = self.memory.record()
        if self.learning is not None:
            kept["learning"] = self.learning.record()
        return kept


def supply(strategy: str, needs: Iterable[Need], context: StrategyContext | None, symbols: Sequence[str]) -> Supplies:
    """Fill `needs` of `strategy` (its name) run on `symbols` from `context`.

    Raises
    ------
    ConfigError
        If the strategy needs something and no context is given.
    """
    wanted = frozenset(needs)
    if not wanted:
        return Supplies()
    if context is None:
        names = ", ".join(sorted(need.value for need in wanted))
        raise ConfigError(f"strategy {strategy!r} needs {names}; build it with a context that supplies it (context=)")
    memory = context.memory_searcher(tuple(symbols)) if Need.MEMORY_SEARCHER in wanted else None
    return Supplies(memory=memory)


def model_version_uuid(version_id: str) -> uuid.UUID:
    """Return the UUID that signals use to link to the model version `version_id` (its record id)."""
    return stable_id("model_version", version_id)


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """A model a strategy trained: its id (a hex digest of what trained it), what it learned from, how it fared.

    `trained_from` and `trained_to` are the times of its first and last training samples. `test_samples`
    counts the out-of-sample calls it is judged on and `out_of_sample_hit_rate` is the share it got right
    (None without any). `model` holds the trained model's bytes, or None when only its description is
    kept (a walk-forward refit whose decisions a run's signals name, not the model used from now on).
    """

    id: str
    strategy: str
    symbol: str
    trained_from: datetime
    trained_to: datetime
    train_samples: int
    test_samples: int
    out_of_sample_hit_rate: float | None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    model: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not 0 < len(self.id) <= 64 or not set(self.id) <= _HEX:
            raise ValidationError(f"model version id must be 1 to 64 lower-case hex digits, was {self.id!r}")
        if not self.strategy or not self.symbol:
            raise ValidationError(f"model version {self.id} needs a strategy and a symbol")
        for name in ("trained_from", "trained_to"):
            moment = getattr(self, name)
            if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
                raise ValidationError(f"model version {self.id} {name} {moment!r} is not an aware datetime")
        if self.trained_to < self.trained_from:
            raise ValidationError(f"model version {self.id} is trained to {self.trained_to}, before its start")
        for name in ("train_samples", "test_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"model version {self.id} {name} must be a non-negative integer, was {value!r}")
        rate = self.out_of_sample_hit_rate
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValidationError(f"model version {self.id} out_of_sample_hit_rate must lie in [0, 1], was {rate!r}")

    @property
    def record_id(self) -> uuid.UUID:
        """The UUID signals link to (`model_version_uuid`)."""
        return model_version_uuid(self.id)


@dataclass(frozen=True, kw_only=True)
class Products:
    """What a strategy made of one symbol's history besides its signals.

    `model_versions` holds every model version the signals link to, and the model to use from now on
    (the one with bytes); `details` is what the run records of them (e.g. that model's id, or why there
    is none). `retrievals` holds one `Retrieval` per decision that read memory (the market states,
    episodes or patterns it recalled, each with the moment its outcome became known), which the stored
    run signs and logs so that an auditor can check none was known only after its decision.
    """

    model_versions: tuple[ModelVersion, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    retrievals: tuple[Retrieval, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_versions", tuple(self.model_versions))
        object.__setattr__(self, "retrievals", tuple(self.retrievals))
