"""Numbers for people: one function per kind of figure, shared by the command line and the report."""

from __future__ import annotations

import enum
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuraltrade.backtest.config import ALL_IN
from neuraltrade.formatting import (
    MISSING,
    format_days,
    format_fraction_as_percent,
    format_money,
    format_percent,
    format_price,
    format_quantity,
    format_ratio,
    format_setting,
    format_statistic,
    format_time,
    plain_setting,
    statistic_kind,
)

FORMATTERS = [
    format_quantity,
    format_money,
    format_price,
    format_percent,
    format_fraction_as_percent,
    format_ratio,
    format_days,
]
reasonable = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)


@pytest.mark.parametrize(
    ("value", "shown"), [(12.0, "12"), (12, "12"), (-1234.0, "-1,234"), (0.5, "0.5"), (2.123456, "2.1235")]
)
def test_a_quantity_is_whole_when_whole_and_never_padded_with_zeros(value: float, shown: str) -> None:
    assert format_quantity(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"), [(1234567.891, "1,234,567.89"), (-78.5, "-78.50"), (0, "0.00"), (-0.001, "0.00")]
)
def test_money_has_thousands_separators_two_decimals_and_no_negative_zero(value: float, shown: str) -> None:
    assert format_money(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(1234.5, "1,234.50"), (1.583333, "1.58"), (0.0123456, "0.01235")])
def test_a_price_below_one_keeps_four_significant_digits(value: float, shown: str) -> None:
    assert format_price(value) == shown


def test_percents_and_ratios_have_two_decimals_and_small_ratios_three() -> None:
    assert format_percent(-92.4567) == "-92.46"
    assert format_percent(1_234.5) == "1,234.50"
    assert format_ratio(1.8765) == "1.88"
    assert format_ratio(0.8123) == "0.812"
    assert format_ratio(-0.0004) == "0.000"


@pytest.mark.parametrize(("value", "shown"), [(0.001, "0.10%"), (0.002, "0.20%"), (0.00025, "0.025%"), (0, "0.00%")])
def test_a_fraction_shows_as_a_percent_without_losing_a_digit(value: float, shown: str) -> None:
    assert format_fraction_as_percent(value) == shown


def test_days_are_whole_when_whole_else_one_decimal() -> None:
    assert format_days(1461.0) == "1,461"
    assert format_days(0.25) == "0.2"  # rounded half to even: 0.25 is stored a hair below


class _Rule(enum.Enum):
    FIRST = "stop_loss_first"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (ALL_IN, "1"),
        (0.1 + 0.2, "0.3"),
        (0.001, "0.001"),
        (10_000.0, "10000"),
        (20, "20"),
        (True, "true"),
        (None, "none"),
        ("rolling", "rolling"),
        (_Rule.FIRST, "stop_loss_first"),
        ({"fast": 10, "slow": 20.0, "average": "rolling"}, "fast=10, slow=20, average=rolling"),
    ],
)
def test_a_setting_shows_as_typed_without_float_noise(value: object, shown: str) -> None:
    assert format_setting(value) == shown


def test_a_configuration_loses_its_float_noise_and_keeps_everything_else() -> None:
    config = {
        "backtest": {"order_size": ALL_IN, "cash": 10_000.0, "same_bar_exit": "stop_loss_first"},
        "k": [0.1 + 0.2],
    }
    assert plain_setting(config) == {
        "backtest": {"order_size": 1, "cash": 10_000, "same_bar_exit": "stop_loss_first"},
        "k": [0.3],
    }


@pytest.mark.parametrize("formatter", FORMATTERS)
@pytest.mark.parametrize("value", [None, math.nan, "text", True])
def test_an_undefined_figure_shows_as_missing(formatter: object, value: object) -> None:
    assert callable(formatter)
    assert formatter(value) == MISSING


@pytest.mark.parametrize("formatter", FORMATTERS)
def test_infinities_show_as_infinity_signs(formatter: object) -> None:
    assert callable(formatter)
    assert (formatter(math.inf), formatter(-math.inf)) == ("∞", "-∞")


@pytest.mark.parametrize(
    ("name", "kind", "value", "shown"),
    [
        ("equity_final", "money", 12_345.6, "12,345.60"),
        ("commissions", "money", 7.0, "7.00"),
        ("return_pct", "percent", -78.123, "-78.12"),
        ("sharpe", "ratio", 0.4567, "0.457"),
        ("profit_factor", "ratio", 1.5, "1.50"),
        ("trades", "count", 12, "12"),
        ("max_drawdown_duration_days", "days", 365.0, "365"),
    ],
)
def test_a_statistic_is_formatted_by_its_kind(name: str, kind: str, value: float, shown: str) -> None:
    assert statistic_kind(name) == kind
    assert format_statistic(name, value) == shown


@given(reasonable)
def test_money_reads_back_as_the_amount_to_the_cent(value: float) -> None:
    assert float(format_money(value).replace(",", "")) == pytest.approx(round(value, 2), abs=0.006)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_a_whole_quantity_never_shows_a_decimal_point(units: int) -> None:
    text = format_quantity(float(units))
    assert "." not in text and int(text.replace(",", "")) == units


@given(reasonable)
def test_a_setting_reads_back_as_the_value_to_twelve_significant_digits(value: float) -> None:
    assert float(format_setting(value)) == pytest.approx(value, rel=1e-11, abs=1e-300)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2024-03-14T00:00:00.000000Z", "2024-03-14"),
        ("2024-03-14T15:30:00Z", "2024-03-14 15:30"),
        ("2024-03-14T15:30:05.250000Z", "2024-03-14 15:30:05"),
        (None, MISSING),
        ("not a time", "not a time"),
    ],
)
def test_a_time_shows_in_utc_with_the_date_alone_at_midnight(value: object, shown: str) -> None:
    assert format_time(value) == shown
    if isinstance(value, str) and value[0].isdigit():
        assert format_statistic("start", value) == shown
