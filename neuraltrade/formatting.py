"""Numbers for people: one function per kind of figure, shared by the command line's tables and the report.

Each function takes a number (or None) and returns text; none reads or writes anything. A figure that is
undefined (None, NaN) is `MISSING`; an infinite one is ``∞`` or ``-∞``.

- `format_quantity`: units and counts, whole when whole (``12``, never ``12.0000``), else up to 4 decimals;
- `format_money`: cash, equity, P&L, commissions: thousands separators and 2 decimals;
- `format_price`: a quote: 2 decimals, more (up to 6 significant digits) when the price is below 1;
- `format_percent`: a figure already in percent, 2 decimals; `format_fraction_as_percent` for 0.001 -> 0.10%;
- `format_ratio`: Sharpe, Sortino, profit factor...: 2 decimals, 3 below 1 in size;
- `format_days`: durations in days, whole when whole, else 1 decimal;
- `format_setting`: a configuration value without float noise (``0.9999999999999998`` -> ``1``);
- `format_time`: an instant in UTC, the date alone at midnight (``2024-03-14``, ``2024-03-14 15:30``).

`format_statistic` picks the kind of a statistic of docs/statistics.md from its name.
"""

from __future__ import annotations

import enum
import functools
import math
import numbers
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from neuraltrade.canonical import parse_timestamp
from neuraltrade.errors import SerializationError

#: What an undefined figure shows.
MISSING = "n/a"
#: Significant digits a setting keeps: far more than anyone types, fewer than float noise needs.
_SETTING_DIGITS = 12

#: Statistics in currency units; every ``*_pct`` statistic is a percent and every ``*_days`` one a duration.
MONEY_STATISTICS = frozenset({"equity_final", "equity_peak", "commissions"})
#: Statistics that are pure ratios.
RATIO_STATISTICS = frozenset({"sharpe", "sortino", "calmar", "beta", "profit_factor", "sqn", "kelly"})
#: Statistics that count things.
COUNT_STATISTICS = frozenset({"trades", "bars"})


def _real(value: Any) -> float | None:
    """`value` as a float, or None when it is not a real number (None, text, a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _special(number: float | None) -> str | None:
    """The text of an undefined or infinite figure; None for a finite one."""
    if number is None or math.isnan(number):
        return MISSING
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    return None


def _finite(format_number: Callable[[float], str]) -> Callable[[Any], str]:
    """Make `format_number` (of a finite float) a formatter of anything: undefined and infinite figures
    as `_special` writes them, the rest by `format_number`."""

    @functools.wraps(format_number)
    def format_value(value: Any) -> str:
        number = _real(value)
        special = _special(number)
        if special is not None or number is None:
            return special or MISSING
        return format_number(number)

    return format_value


def _trimmed(text: str) -> str:
    """``1.2500`` as ``1.25`` and ``3.000`` as ``3``; text without a decimal point as it is."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def _zero_as_unsigned(number: float) -> float:
    # A value rounded to zero would otherwise print as "-0.00".
    return 0.0 if number == 0 else number


@_finite
def format_quantity(number: float) -> str:
    """Units or a count: ``1,234`` when whole, else up to 4 decimals without trailing zeros (``0.5``)."""
    if number.is_integer():
        return f"{int(number):,}"
    return _trimmed(f"{_zero_as_unsigned(round(number, 4)):,.4f}")


@_finite
def format_money(number: float) -> str:
    """An amount of money: thousands separators and 2 decimals (``12,345.60``)."""
    return f"{_zero_as_unsigned(round(number, 2)):,.2f}"


@_finite
def format_price(number: float) -> str:
    """A quote: 2 decimals (``1,234.50``); below 1 in size, 4 significant digits (``0.01234``), so a penny
    stock's moves stay visible."""
    if number == 0 or abs(number) >= 1:
        return f"{_zero_as_unsigned(round(number, 2)):,.2f}"
    return f"{number:.4g}"


@_finite
def format_percent(number: float) -> str:
    """A figure already in percent, with 2 decimals (``-12.35``); the unit is the caller's label."""
    return f"{_zero_as_unsigned(round(number, 2)):,.2f}"


@_finite
def format_fraction_as_percent(number: float) -> str:
    """A fraction as a percent with its sign: 0.001 as ``0.10%``, 0.00025 as ``0.025%`` (no digit lost)."""
    percent = float(f"{number * 100:.{_SETTING_DIGITS}g}")
    text = f"{percent:.2f}"
    if float(text) != percent:
        text = _trimmed(f"{percent:.{_SETTING_DIGITS}f}")
    return f"{text}%"


@_finite
def format_ratio(number: float) -> str:
    """A ratio: 2 decimals (``1.87``), 3 when it is below 1 in size (``0.812``)."""
    decimals = 2 if abs(number) >= 1 else 3
    return f"{_zero_as_unsigned(round(number, decimals)):,.{decimals}f}"


@_finite
def format_days(number: float) -> str:
    """A duration in days: whole when whole (``1,234``), else 1 decimal (``0.3``)."""
    if number.is_integer():
        return f"{int(number):,}"
    return f"{_zero_as_unsigned(round(number, 1)):,.1f}"


def format_setting(value: Any) -> str:
    """A configuration value as typed: floats without noise (``0.9999999999999998`` as ``1``, ``0.001``),
    booleans as ``true``/``false``, None as ``none``, enums by value, mappings as ``name=value, ...``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return format_setting(value.value)
    if isinstance(value, Mapping):
        return ", ".join(f"{name}={format_setting(item)}" for name, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(format_setting(item) for item in value)
    number = _real(value)
    if number is None:
        return str(value)
    special = _special(number)
    if special is not None:
        return special
    return repr(setting_number(number))


def setting_number(value: float) -> int | float:
    """`value` rid of float noise: 12 significant digits, an int when whole (``0.9999999999999998`` -> ``1``)."""
    number = float(f"{value:.{_SETTING_DIGITS}g}")
    return int(number) if number.is_integer() and abs(number) < 1e15 else number


def plain_setting(value: Any) -> Any:
    """`value` (JSON-like data) with every float rid of noise (`setting_number`), for showing a configuration."""
    if isinstance(value, Mapping):
        return {str(name): plain_setting(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_setting(item) for item in value]
    if isinstance(value, float) and math.isfinite(value):
        return setting_number(value)
    return value


def format_time(value: Any) -> str:
    """An ISO timestamp or aware datetime as ``2024-03-14 15:30`` UTC, the date alone at midnight, seconds
    only when there are some; None as `MISSING`; other text as it is."""
    if value is None:
        return MISSING
    try:
        moment = value if isinstance(value, datetime) else parse_timestamp(str(value))
    except SerializationError:
        return str(value)
    if moment.tzinfo is None:
        return moment.isoformat(sep=" ")
    if (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0):
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%d %H:%M}" + (f":{moment:%S}" if moment.second or moment.microsecond else "")


def statistic_kind(name: str) -> str:
    """The kind of statistic `name`: ``money``, ``percent``, ``ratio``, ``count``, ``days``, ``time`` or ``other``."""
    if name in MONEY_STATISTICS:
        return "money"
    if name in RATIO_STATISTICS:
        return "ratio"
    if name in COUNT_STATISTICS:
        return "count"
    if name.endswith("_pct"):
        return "percent"
    if name.endswith("_days"):
        return "days"
    if name in ("start", "end"):
        return "time"
    return "other"


def format_statistic(name: str, value: Any) -> str:
    """Statistic `name`'s `value` formatted for its kind."""
    kind = statistic_kind(name)
    if kind == "time" or isinstance(value, (str, datetime)):
        return format_time(value)
    formatter = {
        "money": format_money,
        "percent": format_percent,
        "ratio": format_ratio,
        "count": format_quantity,
        "days": format_days,
    }.get(kind, format_ratio)
    return formatter(value)
