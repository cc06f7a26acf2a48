"""Data-quality checks of bar frames, run by Great Expectations 1.x.

Every check is a real GX expectation; this module only prepares a private, GX-friendly copy
of the frame (helper columns, missing-value normalisation) and maps the failing row indexes
GX reports back to row positions.

GX is imported lazily (it costs seconds) and its ephemeral context, data source and suite are
built once per process, then reused by every call.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from neuraltrade.errors import QualityCheckUnavailable
from neuraltrade.market.bars import PRICE_COLUMNS, TIMESTAMP_DTYPE

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation import Expectation

_NOT_NULL_COLUMNS: tuple[str, ...] = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
# (check name, column A, column B): each requires A >= B.
_ORDER_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("low_le_open", "open", "low"),
    ("low_le_close", "close", "low"),
    ("open_le_high", "high", "open"),
    ("close_le_high", "high", "close"),
)

CHECK_NAMES: tuple[str, ...] = (
    *(f"not_null:{column}" for column in _NOT_NULL_COLUMNS),
    *(f"positive:{column}" for column in PRICE_COLUMNS),
    "non_negative:volume",
    *(name for name, _, _ in _ORDER_PAIRS),
    "timestamp_increasing",
    "unique_symbol_timestamp",
)

# Where GX can find which check an expectation result belongs to.
_META_KEY = "neuraltrade_check"

# COMPLETE is the only format whose unexpected_index_list is not cut to partial_unexpected_count;
# the index query is a stringified copy of that list, so skip building it.
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "return_unexpected_index_query": False,
}


@dataclass(frozen=True)
class _Gx:
    batch_definition: BatchDefinition
    suite: ExpectationSuite


_gx: _Gx | None = None
# Guards the one-time GX set-up, and serialises validations: the data source has one execution
# engine whose "active batch" a concurrent call would replace.
_gx_lock = threading.Lock()


def _expectations() -> list[Expectation]:
    import great_expectations.expectations as gxe

    def tagged(name: str, expectation: Expectation) -> Expectation:
        expectation.meta = {_META_KEY: name}
        return expectation

    result: list[Expectation] = [
        tagged(f"not_null:{column}", gxe.ExpectColumnValuesToNotBeNull(column=column)) for column in _NOT_NULL_COLUMNS
    ]
    # Between-expectations skip nulls, so a NaN price is reported only by its not_null check.
    result += [
        tagged(
            f"positive:{column}",
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True),
        )
        for column in PRICE_COLUMNS
    ]
    result.append(tagged("non_negative:volume", gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0)))
    # Pair expectations compare NaN as "unexpected" unless the row is ignored.
    result += [
        tagged(
            name,
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=column_a,
                column_B=column_b,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
        )
        for name, column_a, column_b in _ORDER_PAIRS
    ]
    result.append(
        tagged(
            "timestamp_increasing",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="timestamp",
                column_B="previous_timestamp",
                or_equal=False,
                ignore_row_if="either_value_is_missing",
            ),
        )
    )
    # A row with a missing key already fails not_null; it cannot meaningfully duplicate another.
    result.append(
        tagged(
            "unique_symbol_timestamp",
            gxe.ExpectCompoundColumnsToBeUnique(
                column_list=["symbol", "timestamp"], ignore_row_if="any_value_is_missing"
            ),
        )
    )
    return result


def _get_gx() -> _Gx:
    global _gx
    if _gx is None:
        # Must be set before GX is imported; nothing here may try to reach the network.
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX sets some of its own loggers to INFO when imported; a night's output is not the place.
        for name in [*logging.root.manager.loggerDict, "great_expectations"]:
            if name.startswith("great_expectations"):
                logging.getLogger(name).setLevel(logging.WARNING)
        context = gx.get_context(mode="ephemeral")
        context.enable_analytics(enable=False)
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = context.data_sources.add_pandas(name="neuraltrade_quality").add_dataframe_asset(name="bars")
        suite = context.suites.add(gx.ExpectationSuite(name="bars", expectations=_expectations()))
        _gx = _Gx(asset.add_batch_definition_whole_dataframe("whole_frame"), suite)
    return _gx


def _exception_message(info: dict[str, Any] | None) -> str | None:
    # GX reports a failed expectation as an unsuccessful result, not an exception. The info is
    # flat when the expectation itself raised, but keyed by metric id when a metric raised.
    if not info:
        return None
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message"))
    return None


def _epoch_microseconds(timestamps: pd.Series) -> np.ndarray:
    # GX's pandas engine only vectorises float/int and ns datetimes, so timestamps become float
    # microseconds (exact below 2**53 us, i.e. until year 2255) with NaN where the input is NaT.
    as_utc = pd.to_datetime(timestamps, utc=True).astype(TIMESTAMP_DTYPE)
    values = np.asarray(as_utc.array.asi8, dtype="float64")
    values[as_utc.isna().to_numpy()] = np.nan
    return values


def _validation_frame(frame: pd.DataFrame) -> pd.DataFrame:
    # Positional index: GX's unexpected indexes then equal row positions.
    index = pd.RangeIndex(len(frame))
    # Categorical codes make GX's many row filters and the grouping below several times cheaper
    # than Arrow or object strings.
    symbol = frame["symbol"].astype("category").set_axis(index)
    # An empty symbol is how the readers spell "missing"; GX's not-null only knows NaN/None.
    if "" in symbol.cat.categories:
        symbol = symbol.cat.remove_categories([""])
    timestamp = pd.Series(_epoch_microseconds(frame["timestamp"]), index=index)
    # Last parsed timestamp of the same symbol in file order; unparsed rows and rows without a
    # symbol take no part, so they neither fail nor hide an out-of-order neighbour.
    previous = timestamp.groupby(symbol, sort=False, observed=True).ffill()
    previous = previous.groupby(symbol, sort=False, observed=True).shift(1)
    columns: dict[str, Any] = {
        "symbol": symbol,
        "timestamp": timestamp,
        "previous_timestamp": previous,
    }
    for column in (*PRICE_COLUMNS, "volume"):
        # float64 keeps GX on its vectorised path (float32 falls back to a per-value Python map).
        columns[column] = frame[column].to_numpy(dtype="float64", na_value=np.nan)
    return pd.DataFrame(columns, index=index)


def check_bars(frame: pd.DataFrame) -> dict[int, list[str]]:
    """Run the bar expectations over a bar frame and report the rows that fail.

    Parameters
    ----------
    frame : pandas.DataFrame
        Bar frame with columns ``symbol``, ``timestamp`` (``datetime64[us, UTC]``, NaT when
        missing), ``open``, ``high``, ``low``, ``close`` and ``volume`` (float64, NaN when
        missing). It is not modified.

    Returns
    -------
    dict[int, list[str]]
        Row position -> sorted names (from `CHECK_NAMES`) of the checks the row fails. Rows
        that pass every check are absent.

    Raises
    ------
    KeyError
        If a checked column is absent from `frame`.
    QualityCheckUnavailable
        If GX could not evaluate an expectation (naming the check).
    """
    if len(frame) == 0:
        return {}
    data = _validation_frame(frame)
    with _gx_lock:
        gx_state = _get_gx()
        batch = gx_state.batch_definition.get_batch(batch_parameters={"dataframe": data})
        suite_result = batch.validate(gx_state.suite, result_format=_RESULT_FORMAT)

    failing_rows: dict[str, list[int]] = {}
    for result in suite_result.results:
        if result.expectation_config is None or result.expectation_config.meta is None:
            raise QualityCheckUnavailable("(unknown)", "Great Expectations returned a result without its expectation")
        name = result.expectation_config.meta[_META_KEY]
        error = _exception_message(result.exception_info)
        if error is not None:
            raise QualityCheckUnavailable(name, f"Great Expectations raised {error}")
        if not result.success:
            failing_rows[name] = [int(row) for row in result.result["unexpected_index_list"]]

    report: dict[int, list[str]] = {row: [] for row in sorted(set().union(*failing_rows.values()))}
    # Visiting names in sorted order leaves every row's list sorted.
    for name in sorted(failing_rows):
        for row in failing_rows[name]:
            report[row].append(name)
    return report
