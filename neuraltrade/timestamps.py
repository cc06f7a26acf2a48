"""Aware UTC datetimes: the one aware-datetime check, the one epoch-microsecond pair, the one text form.

Every timestamp the platform keeps is an aware datetime in UTC. Stores and arrays hold it as whole
microseconds since the Unix epoch (`to_microseconds`, `from_microseconds`: integer arithmetic, exact both
ways); canonical JSON writes it as ISO 8601 UTC with exactly six fractional digits and a ``Z``
(`format_timestamp`, and `format_microseconds` for many epoch-microsecond values at once).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from neuraltrade.errors import NeuralTradeError, SerializationError, ValidationError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def require_aware(name: str, moment: datetime, *, error: type[NeuralTradeError] = ValidationError) -> datetime:
    """Return `moment` in UTC; raise `error` naming `name` unless it is an aware datetime in range."""
    if not isinstance(moment, datetime):
        raise error(f"{name} must be a datetime, was {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise error(f"{name} {moment.isoformat()} is naive; give it a time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError as overflow:
        raise error(f"{name} {moment.isoformat()} lies outside the years 1-9999 in UTC") from overflow


def from_microseconds(microseconds: int) -> datetime:
    """The aware UTC datetime `microseconds` after the Unix epoch (exact: integer arithmetic)."""
    return EPOCH + timedelta(microseconds=int(microseconds))


def to_microseconds(moment: datetime) -> int:
    """Microseconds from the Unix epoch to the aware datetime `moment` (exact: no float rounding).

    Raises `ValidationError` naming `moment` if it is naive.
    """
    try:
        return (moment - EPOCH) // _MICROSECOND
    except TypeError:
        # Only a value that is not an aware datetime gets here; the check names it.
        require_aware("timestamp", moment)
        raise


def microseconds_of(name: str, value: datetime | int, *, error: type[NeuralTradeError] = ValidationError) -> int:
    """`value`, an aware datetime or already epoch microseconds (any integer but a bool), as epoch
    microseconds; raise `error` naming `name` for a naive datetime or a value of another type."""
    if isinstance(value, datetime):
        return to_microseconds(require_aware(name, value, error=error))
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):  # numpy integers too
        return int(value)
    raise error(f"{name} ({value!r}) is neither an aware datetime nor epoch microseconds")


def format_timestamp(moment: datetime) -> str:
    """Return `moment` as ISO 8601 UTC with microseconds, e.g. ``2024-01-02T03:04:05.000006Z``.

    Raises `SerializationError` naming `moment` if it is naive.
    """
    utc = require_aware("timestamp", moment, error=SerializationError)
    # strftime's %Y drops leading zeros of years before 1000 on some platforms; ISO 8601 wants four digits.
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}Z"


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp with an offset into an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except (TypeError, ValueError, AttributeError) as error:
        raise SerializationError(f"timestamp {text!r} is not ISO 8601") from error
    if moment.tzinfo is None:
        raise SerializationError(f"timestamp {text!r} has no time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError as overflow:  # 0001-01-01T00:00+01:00 is a year before 1 in UTC
        raise SerializationError(f"timestamp {text!r} lies outside the years 1-9999 in UTC") from overflow


def format_microseconds(values: Sequence[int]) -> list[str]:
    """Return epoch-microsecond `values` formatted as `format_timestamp` formats datetimes (vectorised)."""
    import numpy as np

    stamps = np.datetime_as_string(np.asarray(values, dtype="int64").astype("datetime64[us]"), unit="us")
    return [f"{stamp}Z" for stamp in stamps.tolist()]
