"""The platform's domain records: bars, observations, signals and orders.

Every record is a frozen dataclass (signals keep a mutable list of causal links), with an aware UTC
timestamp and a canonical JSON form (`neuraltrade.canonical`) that round-trips losslessly to the
microsecond: ``Record.from_json(record.to_json()) == record``.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from neuraltrade.canonical import (
    NAMESPACE,
    canonical_json,
    format_microseconds,
    parse_timestamp,
    stable_id,
    uuid5_many,
)
from neuraltrade.errors import SerializationError, ValidationError

RecordT = TypeVar("RecordT")


def require_aware(name: str, moment: datetime) -> datetime:
    """Return `moment` in UTC; raise `ValidationError` naming `name` if it is not an aware datetime in range."""
    if not isinstance(moment, datetime):
        raise ValidationError(f"{name} must be a datetime, was {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(f"{name} {moment.isoformat()} is naive; give it a time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:
        raise ValidationError(f"{name} {moment.isoformat()} lies outside the years 1-9999 in UTC") from error


def _require_finite(name: str, value: float, *, minimum: float | None = None, strict: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number, was {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise ValidationError(f"{name} must be {relation} {minimum}, was {value!r}")


def _loads(text: str | bytes, kind: str) -> dict[str, Any]:
    try:
        plain = json.loads(text)
    except json.JSONDecodeError as error:
        raise SerializationError(f"{kind} JSON is malformed: {error}") from error
    if not isinstance(plain, dict):
        raise SerializationError(f"{kind} JSON must be an object, was {type(plain).__name__}")
    return plain


class _Record:
    """Mixin giving canonical JSON output; subclasses implement `from_plain`."""

    def to_json(self) -> str:
        """Return the canonical JSON text of this record."""
        return canonical_json(self).decode("utf-8")


@dataclass(frozen=True, kw_only=True)
class Bar(_Record):
    """One OHLCV bar of one symbol; `timestamp` is the bar's open time in UTC."""

    symbol: str
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    spread: float | None = None

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValidationError("bar symbol must not be empty")
        object.__setattr__(self, "timestamp", require_aware("bar timestamp", self.timestamp))
        for name in ("open", "high", "low", "close"):
            _require_finite(f"bar {name}", getattr(self, name), minimum=0.0, strict=True)
        _require_finite("bar volume", self.volume, minimum=0.0)
        if self.spread is not None:
            _require_finite("bar spread", self.spread, minimum=0.0)
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            raise ValidationError(
                f"bar {self.symbol} {self.timestamp.isoformat()} breaks low <= open, close <= high: "
                f"open={self.open} high={self.high} low={self.low} close={self.close}"
            )

    @classmethod
    def from_json(cls, text: str | bytes) -> Bar:
        """Read a bar from its JSON form."""
        plain = _loads(text, "bar")
        plain["timestamp"] = parse_timestamp(plain["timestamp"])
        return cls(**plain)


@dataclass(frozen=True, kw_only=True)
class Observation(_Record):
    """The market state of one symbol at one moment, as the memory stores it.

    `spread` is the relative bid-ask spread; where the source has no quotes it is the high-low range
    relative to the close, a documented proxy (see docs/design.md).
    """

    id: uuid.UUID
    timestamp: datetime
    symbol: str
    price: float
    volume: float
    spread: float
    metadata: dict[str, Any] = field(default_factory=dict)
    embedding: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, uuid.UUID):
            raise ValidationError(f"observation id must be a UUID, was {self.id!r}")
        if not self.symbol:
            raise ValidationError("observation symbol must not be empty")
        object.__setattr__(self, "timestamp", require_aware("observation timestamp", self.timestamp))
        _require_finite("observation price", self.price, minimum=0.0, strict=True)
        _require_finite("observation volume", self.volume, minimum=0.0)
        _require_finite("observation spread", self.spread, minimum=0.0)
        if self.embedding is not None:
            vector = tuple(float(value) for value in self.embedding)
            if not all(math.isfinite(value) for value in vector):
                raise ValidationError(f"observation {self.id} embedding holds NaN or infinity")
            object.__setattr__(self, "embedding", vector)

    @staticmethod
    def id_for(symbol: str, timestamp: datetime) -> uuid.UUID:
        """Return the stable id of the observation of `symbol` at `timestamp`."""
        return stable_id("observation", symbol, require_aware("observation timestamp", timestamp))

    @staticmethod
    def ids_for(symbol: str, timestamps: Sequence[int]) -> list[uuid.UUID]:
        """Return `id_for` of `symbol` at each of `timestamps` (epoch microseconds), fast, for bulk work."""
        return uuid5_many(NAMESPACE, f"observation\x1f{symbol}\x1f", format_microseconds(timestamps))

    @classmethod
    def from_json(cls, text: str | bytes) -> Observation:
        """Read an observation from its JSON form."""
        plain = _loads(text, "observation")
        plain["id"] = uuid.UUID(plain["id"])
        plain["timestamp"] = parse_timestamp(plain["timestamp"])
        if plain.get("embedding") is not None:
            plain["embedding"] = tuple(plain["embedding"])
        return cls(**plain)


class Direction(enum.Enum):
    """Which way a signal points."""

    LONG = "long"
    SHORT = "short"
    NEUTRAL = "neutral"


@dataclass(kw_only=True)
class Signal(_Record):
    """A strategy's view on one symbol at one moment, with the records that caused it.

    `causal_links` holds the ids of the observations, memory items and patterns the strategy used;
    it is the one mutable field, grown with `add_causal_link`.
    """

    id: uuid.UUID
    strategy_id: str
    timestamp: datetime
    symbol: str
    direction: Direction
    confidence: float
    features: dict[str, float] = field(default_factory=dict)
    reasoning: str = ""
    causal_links: list[uuid.UUID] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.strategy_id:
            raise ValidationError("signal strategy_id must not be empty")
        if not self.symbol:
            raise ValidationError("signal symbol must not be empty")
        self.timestamp = require_aware("signal timestamp", self.timestamp)
        if not isinstance(self.direction, Direction):
            raise ValidationError(f"signal direction must be a Direction, was {self.direction!r}")
        if (
            not isinstance(self.confidence, (int, float))
            or isinstance(self.confidence, bool)
            or not 0.0 <= self.confidence <= 1.0
        ):
            raise ValidationError(f"signal confidence must lie in [0, 1], was {self.confidence!r}")
        for name, value in self.features.items():
            _require_finite(f"signal feature {name!r}", value)

    def add_causal_link(self, cause: uuid.UUID) -> None:
        """Record that `cause` contributed to this signal (a repeated link is kept once)."""
        if not isinstance(cause, uuid.UUID):
            raise ValidationError(f"a causal link must be a UUID, was {cause!r}")
        if cause not in self.causal_links:
            self.causal_links.append(cause)

    @classmethod
    def from_json(cls, text: str | bytes) -> Signal:
        """Read a signal from its JSON form."""
        plain = _loads(text, "signal")
        plain["id"] = uuid.UUID(plain["id"])
        plain["timestamp"] = parse_timestamp(plain["timestamp"])
        plain["direction"] = Direction(plain["direction"])
        plain["causal_links"] = [uuid.UUID(link) for link in plain.get("causal_links", [])]
        return cls(**plain)


class OrderSide(enum.Enum):
    """Buy or sell."""

    BUY = "buy"
    SELL = "sell"


class OrderType(enum.Enum):
    """How an order's fill price is bounded."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(enum.Enum):
    """How long an order stays working."""

    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(enum.Enum):
    """Where an order is in its lifecycle."""

    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True, kw_only=True)
class Order(_Record):
    """An instruction to trade, identified by `id` and, idempotently, by `client_order_id`."""

    id: uuid.UUID
    client_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    quantity: float
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    status: OrderStatus = OrderStatus.NEW

    def __post_init__(self) -> None:
        if not self.client_order_id:
            raise ValidationError("order client_order_id must not be empty")
        if not self.symbol:
            raise ValidationError("order symbol must not be empty")
        _require_finite(f"order {self.client_order_id} quantity", self.quantity, minimum=0.0, strict=True)
        needs_limit = self.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.type in (OrderType.STOP, OrderType.STOP_LIMIT)
        for name, needed, value in (
            ("limit_price", needs_limit, self.limit_price),
            ("stop_price", needs_stop, self.stop_price),
        ):
            if needed and value is None:
                raise ValidationError(f"{self.type.value} order {self.client_order_id} needs a {name}")
            if not needed and value is not None:
                raise ValidationError(
                    f"{self.type.value} order {self.client_order_id} takes no {name}, was given {value!r}"
                )
            if value is not None:
                _require_finite(f"order {self.client_order_id} {name}", value, minimum=0.0, strict=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Order:
        """Read an order from its JSON form."""
        plain = _loads(text, "order")
        plain["id"] = uuid.UUID(plain["id"])
        plain["side"] = OrderSide(plain["side"])
        plain["type"] = OrderType(plain["type"])
        plain["time_in_force"] = TimeInForce(plain["time_in_force"])
        plain["status"] = OrderStatus(plain["status"])
        return cls(**plain)
