"""Epoch microseconds and aware datetimes convert exactly, both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from neuraltrade.clock import from_microseconds, to_microseconds


@given(st.integers(min_value=-62_135_596_800_000_000, max_value=253_402_300_799_999_999))
def test_microseconds_round_trip_exactly(microseconds: int) -> None:
    moment = from_microseconds(microseconds)
    assert moment.tzinfo is UTC and to_microseconds(moment) == microseconds


def test_a_moment_in_another_zone_counts_from_the_same_epoch() -> None:
    paris = datetime(2024, 1, 2, 1, 0, 0, 7, tzinfo=timezone(timedelta(hours=1)))
    assert (
        to_microseconds(paris) == to_microseconds(datetime(2024, 1, 2, 0, 0, 0, 7, tzinfo=UTC)) == 1_704_153_600_000_007
    )
