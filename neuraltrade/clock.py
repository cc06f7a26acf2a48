"""Injected time, so every run can be replayed exactly (randomness is injected as seeds in configs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from neuraltrade.errors import ConfigError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def from_microseconds(microseconds: int) -> datetime:
    """The aware UTC datetime `microseconds` after the Unix epoch (exact: integer arithmetic)."""
    return EPOCH + timedelta(microseconds=int(microseconds))


def to_microseconds(moment: datetime) -> int:
    """Microseconds from the Unix epoch to the aware datetime `moment` (exact: no float rounding)."""
    return (moment - EPOCH) // _MICROSECOND


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock for tests and replays: it starts at `start` and moves only when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ConfigError(f"FixedClock start {start.isoformat()} is naive; give it a time zone")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, step: timedelta) -> None:
        self._now += step
