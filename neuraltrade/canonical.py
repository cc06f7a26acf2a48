"""Canonical serialisation: one byte string per value, so that hashes and signatures are stable.

The canonical form is the JSON Canonicalization Scheme, RFC 8785 (JCS), of the value's plain form:

- Plain form (`to_plain`): datetimes as ISO 8601 UTC with exactly six fractional digits and a ``Z``
  (`neuraltrade.timestamps`), UUIDs in lower-case hyphenated form, enums by value, records
  (`neuraltrade.records.Record`) by ``canonical_plain()`` (``kind``, ``schema_version``, named fields),
  dataclasses and named tuples as objects of their named fields (never positional arrays), numpy values
  as Python ones.
- JCS bytes (`canonical_json`): UTF-8, no insignificant white space, object keys sorted by their UTF-16
  code units; strings escape only ``"``, ``\\`` and the control characters U+0000 to U+001F (``\\b``,
  ``\\t``, ``\\n``, ``\\f``, ``\\r`` short, the others as ``\\u00xx`` in lower-case hex), everything
  else literal. Numbers are written as ECMAScript's Number-to-String writes doubles: the shortest digits
  that round-trip, in fixed notation when the decimal exponent lies in [-6, 21) (``0.000001``,
  ``100000000000000000000``) and exponential outside it (``1e-7``, ``1e+21``), ``-0`` as ``0``, and
  ``1.0`` as ``1`` (so 10000 and 10000.0 are one value). Integers beyond ±(2**53 - 1) are refused, since
  a JSON number is a double and they would not read back as themselves; so are NaN and infinity, lone
  surrogates, non-string keys and values with no plain form (`SerializationError`, naming the value).

Stored canonical JSON re-canonicalises to the same bytes (`recanonicalise` is a fixed point on them), and
the ``rfc8785`` package, the reference, writes the same bytes (a property test compares them). The
encoder is our own because it is on hot paths (ids of every signal, order and fill).

`stable_id` derives a version-5 UUID from the canonical JSON of its typed parts, so it is injective over
them: ``("x", "1")`` and ``("x", 1)`` differ, and no separator inside a string can forge another split.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from neuraltrade.errors import SerializationError
from neuraltrade.timestamps import format_microseconds, format_timestamp, parse_timestamp

__all__ = [
    "NAMESPACE",
    "canonical_json",
    "digest",
    "format_microseconds",
    "format_timestamp",
    "legacy_stable_id",
    "parse_json",
    "parse_timestamp",
    "recanonicalise",
    "stable_id",
    "stable_ids_at",
    "to_plain",
    "uuid5_many",
]

#: Namespace of every deterministic (version 5) id the platform derives.
NAMESPACE = uuid.UUID("5f0c7a4e-2b4b-4d5e-9a51-6e6575726174")

#: The largest integer magnitude a JSON number (an IEEE 754 double) holds exactly, and so reads back.
MAX_SAFE_INTEGER = 2**53 - 1

# json's C string escaper writes exactly what RFC 8785 asks once ensure_ascii is off (control characters
# as \b \t \n \f \r or \u00xx in lower case, '"' and '\' escaped, everything else literal).
_quote = json.encoder.encode_basestring


# -- plain form ------------------------------------------------------------------------------------------


def _unwrap(value: Any) -> Any:
    """One step from a value that is not plain JSON data toward it (records, enums, datetimes, ...)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if callable(getattr(value, "canonical_plain", None)):  # a neuraltrade.records.Record
        return value.canonical_plain()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # numpy.float64 is a float
        return float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # a named tuple: by name, never by position
        return dict(value._asdict())
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return list(value)
    if callable(getattr(value, "tolist", None)):  # numpy scalars and arrays
        return value.tolist()
    raise SerializationError(f"{type(value).__name__} value {value!r} has no canonical JSON form")


def _key(key: Any) -> str:
    if not isinstance(key, str) or isinstance(key, enum.Enum):
        raise SerializationError(f"mapping key {key!r} is not a string")
    return str(key)


def to_plain(value: Any, *, non_finite_as_null: bool = False) -> Any:
    """Convert `value` into JSON-ready plain data under the canonical rules (see the module docstring).

    NaN and infinity are refused, or with `non_finite_as_null` written as None: for stores whose JSON
    type refuses them, such as the statistics of a run without trades.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return _checked_integer(value)
    if kind is float:
        if math.isfinite(value):
            return value
        if non_finite_as_null:
            return None
        raise SerializationError(f"{value!r} has no canonical JSON form")
    if kind is dict:
        return {_key(key): to_plain(item, non_finite_as_null=non_finite_as_null) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [to_plain(item, non_finite_as_null=non_finite_as_null) for item in value]
    return to_plain(_unwrap(value), non_finite_as_null=non_finite_as_null)


# -- JCS text --------------------------------------------------------------------------------------------


def _checked_integer(number: int) -> int:
    if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return number
    raise SerializationError(
        f"integer {number} lies beyond ±(2**53 - 1): a JSON number is a double and would not read it back"
    )


def _number(number: float) -> str:
    """ECMAScript's Number-to-String of a double (RFC 8785 3.2.2.3)."""
    if number == 0.0:
        return "0"  # and -0
    if not math.isfinite(number):
        raise SerializationError(f"{number!r} has no canonical JSON form")
    text = float.__repr__(number)  # the shortest digits that round-trip, as ECMAScript's
    if "e" not in text:  # repr is fixed for 1e-4 <= |x| < 1e16, inside ECMAScript's fixed range
        return text[:-2] if text.endswith(".0") else text
    mantissa, exponent = text.split("e")
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    point = int(exponent) + 1  # the value is 0.<digits> * 10**point
    if len(digits) <= point <= 21:
        return sign + digits + "0" * (point - len(digits))
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    fraction = "." + digits[1:] if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{fraction}e{point - 1:+d}"


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _object_text(value: dict[Any, Any]) -> str:
    names = list(value)
    if not all(type(name) is str for name in names):
        names = [_key(name) for name in names]
    names.sort()
    joined = "".join(names)
    # Code-point order is UTF-16 order unless a key holds a character beyond the BMP (a surrogate pair
    # in UTF-16, which sorts below U+E000..U+FFFF).
    if not joined.isascii() and max(joined) > "\uffff":
        names.sort(key=_utf16)
    return "{" + ",".join([_quote(name) + ":" + _text(value[name]) for name in names]) + "}"


def _text(value: Any) -> str:
    """The RFC 8785 text of `value` (before UTF-8 encoding)."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is float:
        return _number(value)
    if kind is int:
        return int.__repr__(_checked_integer(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is dict:
        return _object_text(value)
    if kind is list or kind is tuple:
        return "[" + ",".join([_text(item) for item in value]) + "]"
    return _text(_unwrap(value))


def canonical_json(value: Any) -> bytes:
    """Return the canonical (RFC 8785) UTF-8 JSON bytes of `value`."""
    text = _text(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise SerializationError(
            f"text {error.object[error.start : error.end]!r} cannot be encoded as UTF-8"
        ) from error


def _refuse_constant(name: str) -> Any:
    raise SerializationError(f"JSON constant {name} has no canonical form")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for key, item in pairs:
        if key in plain:
            raise SerializationError(f"JSON object repeats the key {key!r}")
        plain[key] = item
    return plain


def _parse_integer(text: str) -> int | float:
    # A JSON number is a double: an integral double beyond 2**53 (canonical JSON writes 2.0**60 as
    # 1152921504606847000) reads back as that double.
    if len(text) > _MOST_INTEGER_DIGITS:  # no double has more digits; int() would refuse past 4300
        return _parse_float(text)
    number = int(text)
    return number if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else _parse_float(text)


#: Digits of the largest double's integer part (1.8e308), and a sign.
_MOST_INTEGER_DIGITS = 310


def _parse_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise SerializationError(f"JSON number {text[:40]!r} lies beyond the range of a double")
    return number


def parse_json(data: bytes | str) -> Any:
    """Read JSON strictly, numbers as RFC 8785 reads them (doubles; integers inside ±(2**53 - 1) as ints).

    Malformed text, a repeated key, NaN or Infinity (also written as a number too large for a double, such
    as ``1e999``) and nesting deeper than Python's recursion limit raise `SerializationError`.
    """
    try:
        return json.loads(
            data,
            parse_int=_parse_integer,
            parse_float=_parse_float,
            parse_constant=_refuse_constant,
            object_pairs_hook=_refuse_duplicates,
        )
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SerializationError(f"JSON is malformed: {error}") from error
    except RecursionError as error:
        raise SerializationError("JSON is malformed: it nests arrays or objects deeper than can be read") from error


def recanonicalise(data: bytes | str) -> bytes:
    """Parse stored JSON (`parse_json`) and return its canonical bytes: canonical input comes back byte for byte."""
    return canonical_json(parse_json(data))


def digest(value: Any) -> str:
    """Return the SHA-256 hex digest of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


# -- ids -------------------------------------------------------------------------------------------------


def _version_5(sha1: bytes) -> uuid.UUID:
    raw = bytearray(sha1[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(raw))


def uuid5_many(namespace: uuid.UUID, prefix: str, suffixes: Iterable[str]) -> list[uuid.UUID]:
    """Return ``uuid.uuid5(namespace, prefix + suffix)`` for every suffix, several times faster.

    The SHA-1 state of namespace and prefix is computed once and copied for each suffix.
    """
    base = hashlib.sha1(namespace.bytes + prefix.encode("utf-8"), usedforsecurity=False)
    ids = []
    for suffix in suffixes:
        state = base.copy()
        state.update(suffix.encode("utf-8"))
        ids.append(_version_5(state.digest()))
    return ids


def stable_id(*parts: object) -> uuid.UUID:
    """Return a deterministic UUID for the natural key `parts`, so a re-run writes the same ids.

    ``uuid5(NAMESPACE, canonical_json(list(parts)))``: typed and injective, parts whose plain forms
    differ give different ids (``("x", "1")`` is not ``("x", 1)``; 1 and 1.0 are one number).
    """
    return _version_5(hashlib.sha1(NAMESPACE.bytes + canonical_json(list(parts)), usedforsecurity=False).digest())


def stable_ids_at(parts: Sequence[object], microseconds: Iterable[int]) -> list[uuid.UUID]:
    """Return ``stable_id(*parts, moment)`` for each moment, given in epoch microseconds, fast (bulk work)."""
    head = canonical_json(list(parts)).decode("utf-8")
    prefix = head[:-1] + ("," if parts else "") + '"'
    return uuid5_many(NAMESPACE, prefix, [f'{stamp}"]' for stamp in format_microseconds(list(microseconds))])


def legacy_stable_id(*parts: object) -> uuid.UUID:
    """The stable id as derived before RFC 8785 ids: ``uuid5(NAMESPACE, "\\x1f".join(str(plain part)))``.

    Not injective (``("x", "1")`` and ``("x", 1)`` collide); kept only so that the migration of stored
    data can find the rows keyed by the old rule and re-key them with `stable_id`. Parts are str, int,
    float, bool, None, UUID, enum or aware datetime, as the old rule took them.
    """
    texts = []
    for part in parts:
        plain = to_plain(part) if isinstance(part, (enum.Enum, datetime, uuid.UUID)) else part
        texts.append(str(plain))
    return uuid.uuid5(NAMESPACE, "\x1f".join(texts))
