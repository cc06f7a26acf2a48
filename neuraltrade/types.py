"""The platform's domain records: bars, observations, signals, orders and fills.

Observations, signals, orders and fills are `neuraltrade.records.Record`s: frozen, each with a kind, a
schema version and a canonical form (RFC 8785 JSON of its named fields, `neuraltrade.canonical`) that
round-trips losslessly to the microsecond: ``Signal.from_canonical(signal.canonical_bytes()) == signal``.
Their mappings (an observation's metadata, a signal's features) are read-only, and what caused a signal
is a tuple of typed `CausalLink` edges. A bar is a frozen dataclass with a plain canonical JSON form.
"""

from __future__ import annotations

import enum
import functools
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from neuraltrade.canonical import canonical_json, parse_json, stable_id, stable_ids_at
from neuraltrade.errors import SerializationError, ValidationError
from neuraltrade.records import CausalLink, Record, unique_links
from neuraltrade.timestamps import parse_timestamp, require_aware

__all__ = [
    "Bar",
    "Direction",
    "Fill",
    "Observation",
    "Order",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "Signal",
    "TimeInForce",
]


def _require_finite(name: str, value: float, *, minimum: float | None = None, strict: bool = False) -> float:
    """Return `value` as a float; raise `ValidationError` naming `name` unless it is a finite number in range."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number, was {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise ValidationError(f"{name} must be {relation} {minimum}, was {value!r}")
    return float(value)


def _require_text(name: str, value: object, *, empty: bool = True) -> str:
    """Return `value`; raise `ValidationError` naming `name` unless it is a string a database can store.

    PostgreSQL's text cannot hold U+0000, so no record holds it, on any database: a record stored on one
    reads back the same from the other.
    """
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be text, was {value!r}")
    if not empty and not value:
        raise ValidationError(f"{name} must not be empty")
    if "\x00" in value:
        raise ValidationError(f"{name} holds a NUL character (U+0000) at {value.index(chr(0))}, which is not stored")
    return value


def _require_uuid(name: str, value: object) -> None:
    if not isinstance(value, uuid.UUID):
        raise ValidationError(f"{name} must be a UUID, was {value!r}")


def _enum_member(kind: type[enum.Enum], name: str, value: object) -> Any:
    """`value` as a member of `kind` (given as a member or its value); `ValidationError` naming it otherwise."""
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError as error:
        choices = ", ".join(str(member.value) for member in kind)
        raise ValidationError(f"{name} {value!r} is not one of {choices}") from error


def _frozen(value: Any) -> Any:
    """`value` with every mapping read-only and every list a tuple, so a record cannot change under a digest."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(item) for item in value)
    return value


@dataclass(frozen=True, kw_only=True)
class Bar:
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

    def to_json(self) -> str:
        """Return the canonical JSON text of this bar."""
        return canonical_json(self).decode("utf-8")

    @classmethod
    def from_json(cls, text: str | bytes) -> Bar:
        """Read a bar from its JSON form."""
        plain = parse_json(text)
        if not isinstance(plain, dict):
            raise SerializationError(f"bar JSON must be an object, was {type(plain).__name__}")
        try:
            plain["timestamp"] = parse_timestamp(plain["timestamp"])
            return cls(**plain)
        except (KeyError, TypeError) as error:  # a field missing or unknown
            raise SerializationError(f"bar JSON is malformed: {error!r}") from error


@dataclass(frozen=True, kw_only=True)
class Observation(Record):
    """The market state of one symbol at one moment, as the memory stores it.

    `spread` is the relative bid-ask spread; where the source has no quotes it is the high-low range
    relative to the close, a documented proxy (see docs/design.md). `metadata` is read-only.
    """

    KIND = "observation"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    timestamp: datetime
    symbol: str
    price: float
    volume: float
    spread: float
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    embedding: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _require_uuid("observation id", self.id)
        if not self.symbol:
            raise ValidationError("observation symbol must not be empty")
        object.__setattr__(self, "timestamp", require_aware("observation timestamp", self.timestamp))
        object.__setattr__(self, "price", _require_finite("observation price", self.price, minimum=0.0, strict=True))
        object.__setattr__(self, "volume", _require_finite("observation volume", self.volume, minimum=0.0))
        object.__setattr__(self, "spread", _require_finite("observation spread", self.spread, minimum=0.0))
        if not isinstance(self.metadata, Mapping):
            raise ValidationError(f"observation {self.id} metadata must be a mapping, was {self.metadata!r}")
        object.__setattr__(self, "metadata", _frozen(self.metadata))
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
    def ids_for(symbol: str, timestamps: Iterable[int]) -> list[uuid.UUID]:
        """Return `id_for` of `symbol` at each of `timestamps` (epoch microseconds), fast, for bulk work."""
        return stable_ids_at(("observation", symbol), timestamps)

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Observation:
        embedding = plain.get("embedding")
        return cls(
            **{
                **plain,
                "id": uuid.UUID(plain["id"]),
                "timestamp": parse_timestamp(plain["timestamp"]),
                "embedding": None if embedding is None else tuple(embedding),
            }
        )


class Direction(enum.Enum):
    """Which way a signal points."""

    LONG = "long"
    SHORT = "short"
    NEUTRAL = "neutral"


@dataclass(frozen=True, kw_only=True)
class Signal(Record):
    """A strategy's view on one symbol at one moment, with the records that caused it.

    `causal_links` are typed edges to the observation the decision was taken on and to the memory items,
    model versions and patterns it used; given as any iterable, they are kept as a tuple, each edge once,
    in first-seen order. `features` is read-only.
    """

    KIND = "signal"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    strategy_id: str
    timestamp: datetime
    symbol: str
    direction: Direction
    confidence: float
    features: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    reasoning: str = ""
    causal_links: tuple[CausalLink, ...] = ()

    def __post_init__(self) -> None:
        _require_uuid("signal id", self.id)
        _require_text("signal strategy_id", self.strategy_id, empty=False)
        _require_text("signal symbol", self.symbol, empty=False)
        _require_text("signal reasoning", self.reasoning)
        object.__setattr__(self, "timestamp", require_aware("signal timestamp", self.timestamp))
        if not isinstance(self.direction, Direction):
            raise ValidationError(f"signal direction must be a Direction, was {self.direction!r}")
        if (
            not isinstance(self.confidence, (int, float))
            or isinstance(self.confidence, bool)
            or not 0.0 <= self.confidence <= 1.0
        ):
            raise ValidationError(f"signal confidence must lie in [0, 1], was {self.confidence!r}")
        object.__setattr__(self, "confidence", float(self.confidence))
        features = {name: _require_finite(f"signal feature {name!r}", value) for name, value in self.features.items()}
        object.__setattr__(self, "features", MappingProxyType(features))
        links = unique_links(self._links(self.causal_links))
        object.__setattr__(self, "causal_links", links)

    def _links(self, links: Iterable[CausalLink]) -> Iterable[CausalLink]:
        for link in links:
            if not isinstance(link, CausalLink):
                raise ValidationError(f"signal {self.id} causal link must be a CausalLink, was {link!r}")
            yield link

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Signal:
        return cls(
            **{
                **plain,
                "id": uuid.UUID(plain["id"]),
                "timestamp": parse_timestamp(plain["timestamp"]),
                "direction": Direction(plain["direction"]),
                "causal_links": tuple(CausalLink.from_plain(link) for link in plain["causal_links"]),
            }
        )


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
class Order(Record):
    """An instruction to trade, identified by `id` and, idempotently, by `client_order_id`."""

    KIND = "order"
    SCHEMA_VERSION = 1

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
        quantity = _require_finite(f"order {self.client_order_id} quantity", self.quantity, minimum=0.0, strict=True)
        object.__setattr__(self, "quantity", quantity)
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
                price = _require_finite(f"order {self.client_order_id} {name}", value, minimum=0.0, strict=True)
                object.__setattr__(self, name, price)

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Order:
        return cls(
            **{
                **plain,
                "id": uuid.UUID(plain["id"]),
                "side": OrderSide(plain["side"]),
                "type": OrderType(plain["type"]),
                "time_in_force": TimeInForce(plain["time_in_force"]),
                "status": OrderStatus(plain["status"]),
            }
        )


@functools.lru_cache(maxsize=4_096)
def _fill_id(order_id: uuid.UUID, sequence: int) -> uuid.UUID:
    # Cached: the engine derives a fill's id and then builds the fill, which checks it.
    return stable_id("fill", order_id, sequence)


@dataclass(frozen=True, kw_only=True)
class Fill(Record):
    """One execution of an order: `quantity` units at `price`, paying `commission`.

    `sequence` counts the order's fills from 0 in the order they happen; the fill's `id` is
    ``Fill.id_for(order_id, sequence)``.
    """

    KIND = "fill"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    order_id: uuid.UUID
    sequence: int
    timestamp: datetime
    symbol: str
    side: OrderSide
    quantity: float
    price: float
    commission: float = 0.0

    def __post_init__(self) -> None:
        _require_uuid("fill order_id", self.order_id)
        if isinstance(self.sequence, bool) or not isinstance(self.sequence, int) or self.sequence < 0:
            raise ValidationError(
                f"fill sequence of order {self.order_id} must be an integer >= 0, was {self.sequence!r}"
            )
        name = f"fill {self.sequence} of order {self.order_id}"
        expected = Fill.id_for(self.order_id, self.sequence)
        if self.id != expected:
            raise ValidationError(f"{name} has id {self.id!r}; its id is {expected}")
        object.__setattr__(self, "timestamp", require_aware(f"{name} timestamp", self.timestamp))
        if not self.symbol:
            raise ValidationError(f"{name} symbol must not be empty")
        object.__setattr__(self, "side", _enum_member(OrderSide, f"{name} side", self.side))
        object.__setattr__(
            self, "quantity", _require_finite(f"{name} quantity", self.quantity, minimum=0.0, strict=True)
        )
        object.__setattr__(self, "price", _require_finite(f"{name} price", self.price, minimum=0.0, strict=True))
        object.__setattr__(self, "commission", _require_finite(f"{name} commission", self.commission, minimum=0.0))

    @staticmethod
    def id_for(order_id: uuid.UUID, sequence: int) -> uuid.UUID:
        """The id of fill `sequence` (from 0) of order `order_id`: ``stable_id("fill", order_id, sequence)``."""
        return _fill_id(order_id, sequence)

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Fill:
        return cls(
            **{
                **plain,
                "id": uuid.UUID(plain["id"]),
                "order_id": uuid.UUID(plain["order_id"]),
                "timestamp": parse_timestamp(plain["timestamp"]),
                "side": OrderSide(plain["side"]),
            }
        )
