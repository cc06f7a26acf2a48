"""The records provenance adds to the chain: memory retrievals, retractions, and key introductions.

- `Retrieval`: what a decision read from memory (market states, episodes, patterns), each item with the
  moment its outcome became known by the strategy's own account. The auditor recomputes those moments from
  the stored items and checks none is after the decision.
- `Retraction`: a record deliberately removed (a corrected bar drops the observations after it); without
  one, a logged record missing from the database is a deletion.
- `KeyIntroduction`: a key joining the log, signed by the key it follows (rotation) or by itself (the
  first key).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.canonical import parse_timestamp, stable_id
from neuraltrade.errors import ValidationError
from neuraltrade.records import CausalLink, CauseKind, Record
from neuraltrade.timestamps import from_microseconds, require_aware


@dataclass(frozen=True, kw_only=True, slots=True)
class RetrievedItem:
    """One item a retrieval returned: what kind of record, which, and when its outcome was known."""

    cause_kind: CauseKind
    cause_id: uuid.UUID
    known_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "cause_kind", CauseKind(self.cause_kind))
        object.__setattr__(self, "known_at", require_aware("retrieved item known_at", self.known_at))


@dataclass(frozen=True, kw_only=True)
class Retrieval(Record):
    """The memory a decision of `strategy_id` on `symbol` at `decision_time` read.

    `horizon_bars` is how many bars after a market state's own bar its outcome is known (0 where no item
    is a market state).
    """

    KIND = "retrieval"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    strategy_id: str
    symbol: str
    decision_time: datetime
    horizon_bars: int
    items: tuple[RetrievedItem, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision_time", require_aware("retrieval decision_time", self.decision_time))
        if self.horizon_bars < 0:
            raise ValidationError(f"retrieval {self.id} horizon_bars must be >= 0, was {self.horizon_bars}")

    @classmethod
    def of(
        cls,
        *,
        strategy_id: str,
        symbol: str,
        decision_time: datetime,
        horizon_bars: int,
        items: tuple[RetrievedItem, ...],
    ) -> Retrieval:
        """A retrieval with its stable id: what it read, by whom, where and when (so a re-run names it alike)."""
        key = [(item.cause_kind.value, str(item.cause_id)) for item in items]
        return cls(
            id=stable_id("retrieval", strategy_id, symbol, decision_time, horizon_bars, key),
            strategy_id=strategy_id,
            symbol=symbol,
            decision_time=decision_time,
            horizon_bars=horizon_bars,
            items=items,
        )

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Retrieval:
        return cls(
            **{
                **plain,
                "id": uuid.UUID(plain["id"]),
                "decision_time": parse_timestamp(plain["decision_time"]),
                "items": tuple(
                    RetrievedItem(
                        cause_kind=CauseKind(item["cause_kind"]),
                        cause_id=uuid.UUID(item["cause_id"]),
                        known_at=parse_timestamp(item["known_at"]),
                    )
                    for item in plain["items"]
                ),
            }
        )


def retrievals_of(
    *,
    strategy_id: str,
    symbol: str,
    timestamps: Sequence[int] | np.ndarray,
    links: Mapping[int, Sequence[CausalLink]],
    known_at: Callable[[CausalLink], datetime | None],
    horizon_bars: int = 0,
) -> tuple[Retrieval, ...]:
    """One `Retrieval` per bar of `links` (bar -> the edges its decision took to memory), its decision at
    that bar's timestamp (epoch microseconds); an edge whose `known_at` is None is not an item, and a bar
    left with no item has no retrieval."""
    retrievals = []
    for bar in sorted(links):
        items = []
        for link in links[bar]:
            moment = known_at(link)
            if moment is not None:
                items.append(RetrievedItem(cause_kind=link.cause_kind, cause_id=link.cause_id, known_at=moment))
        if items:
            retrievals.append(
                Retrieval.of(
                    strategy_id=strategy_id,
                    symbol=symbol,
                    decision_time=from_microseconds(int(timestamps[bar])),
                    horizon_bars=horizon_bars,
                    items=tuple(items),
                )
            )
    return tuple(retrievals)


@dataclass(frozen=True, kw_only=True)
class Retraction(Record):
    """Record `record_id` of kind `record_kind`, logged at `position` with `digest` (hex), was removed on purpose."""

    KIND = "retraction"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    record_kind: str
    record_id: uuid.UUID
    position: int
    digest: str
    reason: str
    retracted_at: datetime

    @staticmethod
    def id_for(record_kind: str, record_id: uuid.UUID, position: int) -> uuid.UUID:
        """The id of the retraction of the entry at `position` (one retraction per entry)."""
        return stable_id("retraction", record_kind, record_id, position)

    @classmethod
    def of(
        cls, *, record_kind: str, record_id: uuid.UUID, position: int, digest: str, reason: str, retracted_at: datetime
    ) -> Retraction:
        return cls(
            id=cls.id_for(record_kind, record_id, position),
            record_kind=record_kind,
            record_id=record_id,
            position=position,
            digest=digest,
            reason=reason,
            retracted_at=require_aware("retracted_at", retracted_at),
        )

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Retraction:
        return cls(
            **{
                **plain,
                "id": uuid.UUID(plain["id"]),
                "record_id": uuid.UUID(plain["record_id"]),
                "retracted_at": parse_timestamp(plain["retracted_at"]),
            }
        )


@dataclass(frozen=True, kw_only=True)
class KeyIntroduction(Record):
    """Key `key_id` (raw public key, base64) signs this log from `introduced_at`, after `previous_key_id`."""

    KIND = "signing_key"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    key_id: str
    public_key: str
    previous_key_id: str | None
    introduced_at: datetime

    @classmethod
    def of(
        cls, *, key_id: str, public_key: str, previous_key_id: str | None, introduced_at: datetime
    ) -> KeyIntroduction:
        return cls(
            id=stable_id("signing_key", key_id),
            key_id=key_id,
            public_key=public_key,
            previous_key_id=previous_key_id,
            introduced_at=require_aware("introduced_at", introduced_at),
        )

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> KeyIntroduction:
        return cls(**{**plain, "id": uuid.UUID(plain["id"]), "introduced_at": parse_timestamp(plain["introduced_at"])})
