"""Canonical serialisation: one byte string per value, so that hashes and signatures are stable.

Rules: UTF-8 JSON, keys sorted, no insignificant white space, datetimes as ISO 8601 UTC with exactly six
fractional digits and a ``Z``, UUIDs in lower-case hyphenated form, enums by value, floats by ``repr``
(shortest round-tripping form), NaN and infinity refused. Dataclasses serialise as their fields.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from neuraltrade.errors import SerializationError

#: Namespace of every deterministic (version 5) id the platform derives.
NAMESPACE = uuid.UUID("5f0c7a4e-2b4b-4d5e-9a51-6e6575726174")


def format_timestamp(moment: datetime) -> str:
    """Return `moment` as ISO 8601 UTC with microseconds, e.g. ``2024-01-02T03:04:05.000006Z``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise SerializationError(f"naive datetime {moment.isoformat()} has no time zone")
    utc = moment.astimezone(UTC)
    # strftime's %Y drops leading zeros of years before 1000 on some platforms; ISO 8601 wants four digits.
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}Z"


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp with an offset into an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as error:
        raise SerializationError(f"timestamp {text!r} is not ISO 8601") from error
    if moment.tzinfo is None:
        raise SerializationError(f"timestamp {text!r} has no time zone")
    return moment.astimezone(UTC)


def to_plain(value: Any) -> Any:
    """Convert `value` into JSON-ready plain data under the canonical rules."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f"{value!r} has no canonical JSON form")
        return value
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(f"mapping key {key!r} is not a string")
            plain[key] = to_plain(item)
        return plain
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [to_plain(item) for item in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return to_plain(value.item())
    raise SerializationError(f"{type(value).__name__} value {value!r} has no canonical JSON form")


def canonical_json(value: Any) -> bytes:
    """Return the canonical UTF-8 JSON bytes of `value`."""
    text = json.dumps(to_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise SerializationError(
            f"text {error.object[error.start : error.end]!r} cannot be encoded as UTF-8"
        ) from error


def digest(value: Any) -> str:
    """Return the SHA-256 hex digest of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def format_microseconds(values: Sequence[int]) -> list[str]:
    """Return epoch-microsecond `values` formatted as `format_timestamp` formats datetimes (vectorised)."""
    import numpy as np

    stamps = np.datetime_as_string(np.asarray(values, dtype="int64").astype("datetime64[us]"), unit="us")
    return [f"{stamp}Z" for stamp in stamps.tolist()]


def uuid5_many(namespace: uuid.UUID, prefix: str, suffixes: Sequence[str]) -> list[uuid.UUID]:
    """Return ``uuid.uuid5(namespace, prefix + suffix)`` for every suffix, several times faster.

    The SHA-1 state of namespace and prefix is computed once and copied for each suffix.
    """
    base = hashlib.sha1(namespace.bytes + prefix.encode("utf-8"), usedforsecurity=False)
    ids = []
    for suffix in suffixes:
        state = base.copy()
        state.update(suffix.encode("utf-8"))
        raw = bytearray(state.digest()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        ids.append(uuid.UUID(bytes=bytes(raw)))
    return ids


def stable_id(*parts: object) -> uuid.UUID:
    """Return a deterministic UUID for the natural key `parts`, so a re-run writes the same ids."""
    return uuid.uuid5(NAMESPACE, "\x1f".join(str(to_plain(part)) for part in parts))
