"""Injected sources of time, randomness and identity, so every run can be replayed exactly."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from neuraltrade.errors import ConfigError


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


IdFactory = Callable[[], uuid.UUID]
"""A function that returns a fresh id; `uuid.uuid4` by default, a counter in tests."""


def sequential_ids(start: int = 1) -> IdFactory:
    """Return an id factory that yields UUIDs 1, 2, 3, ... for reproducible tests."""
    counter = iter(range(start, 2**63))
    return lambda: uuid.UUID(int=next(counter))
