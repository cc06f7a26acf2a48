"""Injected time, so every run can be replayed exactly (randomness is injected as seeds in configs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from neuraltrade.errors import ConfigError
from neuraltrade.timestamps import require_aware


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
        self._now = require_aware("FixedClock start", start, error=ConfigError)

    def now(self) -> datetime:
        return self._now

    def advance(self, step: timedelta) -> None:
        self._now += step
