"""Time (`neuraltrade.timestamps`): epoch microseconds and aware datetimes convert exactly, both ways, and
naive datetimes are refused by the one aware-datetime check."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuraltrade.clock import FixedClock
from neuraltrade.errors import ConfigError, SerializationError, ValidationError
from neuraltrade.timestamps import (
    format_timestamp,
    from_microseconds,
    microseconds_of,
    require_aware,
    to_microseconds,
)

NAIVE = datetime(2024, 1, 2, 3, 4, 5)


@given(st.integers(min_value=-62_135_596_800_000_000, max_value=253_402_300_799_999_999))
def test_microseconds_round_trip_exactly(microseconds: int) -> None:
    moment = from_microseconds(microseconds)
    assert moment.tzinfo is UTC and to_microseconds(moment) == microseconds


def test_a_moment_in_another_zone_counts_from_the_same_epoch() -> None:
    paris = datetime(2024, 1, 2, 1, 0, 0, 7, tzinfo=timezone(timedelta(hours=1)))
    assert (
        to_microseconds(paris) == to_microseconds(datetime(2024, 1, 2, 0, 0, 0, 7, tzinfo=UTC)) == 1_704_153_600_000_007
    )


def test_the_one_aware_check_names_the_value_and_raises_the_callers_error() -> None:
    with pytest.raises(ValidationError, match=re.escape("bar timestamp 2024-01-02T03:04:05 is naive")):
        require_aware("bar timestamp", NAIVE)
    with pytest.raises(ConfigError, match="FixedClock start 2024-01-02T03:04:05 is naive"):
        FixedClock(NAIVE)
    with pytest.raises(SerializationError, match="2024-01-02T03:04:05"):
        format_timestamp(NAIVE)
    with pytest.raises(ValidationError, match="must be a datetime, was 'yesterday'"):
        require_aware("start", "yesterday")  # type: ignore[arg-type]
    assert require_aware("start", NAIVE.replace(tzinfo=timezone(timedelta(hours=2)))).tzinfo is UTC


def test_a_naive_datetime_has_no_epoch_microseconds() -> None:
    with pytest.raises(ValidationError, match="2024-01-02T03:04:05"):
        to_microseconds(NAIVE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(datetime(1970, 1, 1, 0, 0, 0, 7, tzinfo=UTC), 7), (7, 7), (np.int64(-3), -3)],
    ids=repr,
)
def test_a_moment_given_as_a_datetime_or_as_epoch_microseconds_is_read_as_microseconds(
    value: datetime | int, expected: int
) -> None:
    assert microseconds_of("timestamp", value) == expected


@pytest.mark.parametrize("value", [True, 1.5, "7", NAIVE], ids=repr)
def test_a_moment_that_is_naive_a_bool_or_not_a_number_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ConfigError, match=r"timestamp 3"):
        microseconds_of("timestamp 3", value, error=ConfigError)  # type: ignore[arg-type]
