"""What every record of the audit chain shares: a kind, a schema version, a canonical form, typed causes.

A record (observation, signal, order, fill, closed trade, backtest run) is immutable once built. Its
canonical form is the canonical JSON (`neuraltrade.canonical`, RFC 8785) of one object holding ``kind``,
``schema_version`` and its named fields; `from_canonical` reads that form back and refuses another kind or
schema version by name. What caused a record is a tuple of `CausalLink` edges: the cause's id, what kind
of record the cause is, and how it contributed.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from neuraltrade.canonical import canonical_json, parse_json, to_plain
from neuraltrade.errors import SerializationError, ValidationError

RecordT = TypeVar("RecordT", bound="Record")


class CauseKind(enum.Enum):
    """What kind of record a cause is."""

    OBSERVATION = "observation"
    MEMORY_ITEM = "memory_item"
    MODEL_VERSION = "model_version"
    SIGNAL = "signal"
    ORDER = "order"
    FILL = "fill"
    PATTERN = "pattern"
    EPISODE = "episode"


class Relation(enum.Enum):
    """How a cause contributed to the record it is linked from."""

    #: The market state the decision was taken on (its bar's observation).
    OBSERVED = "observed"
    #: A memory the decision recalled (a neighbour of the state in the vector memory).
    RECALLED = "recalled"
    #: The trained model whose prediction the decision followed.
    PREDICTED_BY = "predicted_by"
    #: A learned pattern that gated or shaped the decision.
    GATED_BY = "gated_by"


@dataclass(frozen=True, kw_only=True, slots=True)
class CausalLink:
    """A typed edge from a record to one of its causes."""

    cause_id: uuid.UUID
    cause_kind: CauseKind
    relation: Relation

    def __post_init__(self) -> None:
        if not isinstance(self.cause_id, uuid.UUID):
            raise ValidationError(f"a causal link's cause_id must be a UUID, was {self.cause_id!r}")
        for name, kind in (("cause_kind", CauseKind), ("relation", Relation)):
            value = getattr(self, name)
            if not isinstance(value, kind):
                try:
                    object.__setattr__(self, name, kind(value))
                except ValueError as error:
                    choices = ", ".join(item.value for item in kind)
                    raise ValidationError(f"causal link {name} {value!r} is not one of {choices}") from error

    @classmethod
    def from_plain(cls, plain: Any) -> CausalLink:
        """Read a link from its plain form ``{"cause_id", "cause_kind", "relation"}``."""
        if not isinstance(plain, dict) or set(plain) != {"cause_id", "cause_kind", "relation"}:
            raise SerializationError(f"a causal link needs cause_id, cause_kind and relation, was {plain!r}")
        try:
            cause = uuid.UUID(plain["cause_id"])
        except (TypeError, ValueError, AttributeError) as error:
            raise SerializationError(f"causal link cause_id {plain['cause_id']!r} is not a UUID") from error
        try:
            return cls(cause_id=cause, cause_kind=plain["cause_kind"], relation=plain["relation"])
        except ValidationError as error:
            raise SerializationError(str(error)) from error


def unique_links(links: Any) -> tuple[CausalLink, ...]:
    """Return `links` as a tuple, each edge once, in first-seen order."""
    return tuple(dict.fromkeys(links))


class Record:
    """Mixin of the audit chain's records: `KIND`, `SCHEMA_VERSION` and the canonical form.

    Subclasses are frozen dataclasses (or named tuples) and implement `from_fields`, which builds the
    record from the plain values of its fields (the canonical form without ``kind`` and
    ``schema_version``).
    """

    # No instance dictionary of its own: a named-tuple record stays as light as the tuple.
    __slots__ = ()

    KIND: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int]

    def canonical_plain(self) -> dict[str, Any]:
        """The record as plain data: ``kind``, ``schema_version`` and every field by name."""
        fields = to_plain(self.field_values())
        return {"kind": self.KIND, "schema_version": self.SCHEMA_VERSION, **fields}

    def field_values(self) -> dict[str, Any]:
        """The record's fields by name (a dataclass's fields, or a named tuple's)."""
        if isinstance(self, tuple) and hasattr(self, "_asdict"):
            return dict(self._asdict())
        assert dataclasses.is_dataclass(self)
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def canonical_bytes(self) -> bytes:
        """The canonical JSON bytes of `canonical_plain`: what a digest or a signature covers."""
        return canonical_json(self.canonical_plain())

    def to_json(self) -> str:
        """The canonical JSON text of this record."""
        return self.canonical_bytes().decode("utf-8")

    @classmethod
    def from_canonical(cls: type[RecordT], data: str | bytes) -> RecordT:
        """Read a record of this kind from its canonical form (or any JSON of the same content)."""
        try:
            plain = parse_json(data)
        except SerializationError as error:
            raise SerializationError(f"{cls.KIND} {error}") from error
        if not isinstance(plain, dict):
            raise SerializationError(f"{cls.KIND} JSON must be an object, was {type(plain).__name__}")
        kind, version = plain.pop("kind", None), plain.pop("schema_version", None)
        if kind != cls.KIND:
            raise SerializationError(f"expected a {cls.KIND} record, was given kind {kind!r}")
        if version != cls.SCHEMA_VERSION:
            raise SerializationError(
                f"{cls.KIND} schema version {version!r} is not the supported version {cls.SCHEMA_VERSION}"
            )
        try:
            return cls.from_fields(plain)
        # AttributeError: a field of the wrong JSON type, such as a number where a UUID's text belongs.
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise SerializationError(f"{cls.KIND} record is malformed: {error!r}") from error

    from_json = from_canonical

    @classmethod
    def from_fields(cls: type[RecordT], plain: dict[str, Any]) -> RecordT:
        """Build the record from the plain values of its fields."""
        raise NotImplementedError
