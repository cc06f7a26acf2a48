"""Bad input to the JSON loaders of every record (issue 14, point 7): any text given to
`Record.from_canonical` (and to `Bar.from_json`) is read as the record, or refused with the project's own
one-line error; nothing else escapes.

The record types are found by walking the domain package, so a new record type is covered the day it is
written: its fields are filled with arbitrary JSON, valid records are damaged field by field, and raw
bytes are read.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import neuraltrade
from neuraltrade.errors import NeuralTradeError, SerializationError
from neuraltrade.records import Record
from neuraltrade.types import Bar, Observation
from tests.bad_input import assert_refusal
from tests.domain.record_support import (
    closed_trades,
    fills,
    json_values,
    observations,
    orders,
    risk_rejections,
    run_specs,
    signals,
)


def _record_types() -> list[type[Record]]:
    # By file, not `pkgutil.walk_packages`, which skips folders without an __init__.py (provenance).
    root = Path(neuraltrade.__file__).parent
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    found: dict[str, type[Record]] = {}
    waiting: list[type] = [Record]
    while waiting:
        for subclass in waiting.pop().__subclasses__():
            waiting.append(subclass)
            if "KIND" in vars(subclass):
                found.setdefault(subclass.KIND, subclass)
    return [found[kind] for kind in sorted(found)]


RECORD_TYPES = _record_types()
#: Valid records of the types that have a strategy, to damage one field at a time.
VALID_RECORDS: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
    "observation": observations,
    "signal": signals,
    "order": orders,
    "fill": fills,
    "closed_trade": closed_trades,
    "backtest_run": run_specs,
    "risk_rejection": risk_rejections,
}
#: Values of the wrong kind for any field: every JSON type, near misses of ids, times and enums.
wrong_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            None,
            True,
            0,
            -1,
            2**53 - 1,
            1e308,
            -0.5,
            "",
            " ",
            "x",
            [],
            {},
            ["x"],
            {"a": 1},
            "00000000-0000-0000-0000-00000000000g",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59.999999-23:59",
            "long",
            "buy",
            "market",
        ]
    ),
)
BAR = {
    "symbol": "NVDA",
    "timestamp": "2024-01-02T00:00:00Z",
    "open": 1.0,
    "high": 2.0,
    "low": 0.5,
    "close": 1.5,
    "volume": 100.0,
}


def _field_names(record_type: type[Record]) -> list[str]:
    if dataclasses.is_dataclass(record_type):
        return [field.name for field in dataclasses.fields(record_type)]
    return list(record_type._fields)  # type: ignore[attr-defined]


def _texts(value: Any) -> list[str]:
    """Every text `value` (parsed JSON) holds: a refusal may quote any of them as it is."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in (key, *_texts(item))]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return []


def _read_or_refuse(record_type: type[Any], data: str | bytes, read: Callable[[str | bytes], Any]) -> None:
    """Read `data`: a record that writes and reads back as itself, or a one-line refusal; nothing else."""
    try:
        record = read(data)
    except Exception as error:
        assert_refusal(error, embedded=[str(data), *_texts(json.loads(data))])
        return
    assert isinstance(record, record_type)
    again = read(record.to_json())
    assert again == record
    assert again.to_json() == record.to_json()


def test_the_walk_finds_every_record_type_and_each_kind_once() -> None:
    kinds = [record_type.KIND for record_type in RECORD_TYPES]
    assert len(kinds) == len(set(kinds))
    assert {
        "observation",
        "signal",
        "order",
        "fill",
        "closed_trade",
        "backtest_run",
        "risk_rejection",
        "retrieval",
        "retraction",
        "signing_key",
        "checkpoint",
        "trial",
        "episode",
        "verdict",
        "critique",
        "pattern",
        "distillation",
        "counterfactual",
    } <= set(kinds)


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=[record_type.KIND for record_type in RECORD_TYPES])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_json_object_of_a_records_fields_is_the_record_or_a_one_line_refusal(
    record_type: type[Record], data: st.DataObject
) -> None:
    names = _field_names(record_type)
    plain: dict[str, Any] = {"kind": record_type.KIND, "schema_version": record_type.SCHEMA_VERSION}
    plain.update(data.draw(st.fixed_dictionaries({}, optional=dict.fromkeys(names, wrong_values))))
    if data.draw(st.booleans()):
        plain[data.draw(st.sampled_from(["extra", "Kind", names[0].upper()]))] = data.draw(wrong_values)
    _read_or_refuse(record_type, json.dumps(plain, ensure_ascii=False), record_type.from_canonical)


@pytest.mark.parametrize("kind", list(VALID_RECORDS))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_valid_record_with_one_field_damaged_or_dropped_is_read_or_refused_in_one_line(
    kind: str, data: st.DataObject
) -> None:
    record = data.draw(VALID_RECORDS[kind]())
    plain = record.canonical_plain()
    field = data.draw(st.sampled_from(sorted(set(plain) - {"kind", "schema_version"})))
    if data.draw(st.booleans()):
        del plain[field]
    else:
        plain[field] = data.draw(wrong_values)
    _read_or_refuse(type(record), json.dumps(plain, ensure_ascii=False), type(record).from_canonical)


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=[record_type.KIND for record_type in RECORD_TYPES])
@settings(max_examples=10, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64),
        st.sampled_from(["[" * 100_000, '{"a":' * 100_000, "1" * 5_000, "1e999", "-1e999", "NaN", '{"kind": 1}']),
    )
)
@example(data=b"\xff\xfe\x00")
def test_bytes_that_are_no_record_are_refused_as_malformed_naming_the_kind(
    record_type: type[Record], data: str | bytes
) -> None:
    with pytest.raises(NeuralTradeError) as raised:
        record_type.from_canonical(data)

    assert isinstance(raised.value, SerializationError)
    assert_refusal(raised.value, naming=[record_type.KIND], embedded=[str(data)])


def test_a_timestamp_beyond_the_years_of_utc_is_refused_naming_it() -> None:
    text = json.dumps(
        {
            "kind": "observation",
            "schema_version": 1,
            "id": "00000000-0000-0000-0000-000000000001",
            "timestamp": "0001-01-01T00:00:00+01:00",
            "symbol": "NVDA",
            "price": 1.0,
            "volume": 1.0,
            "spread": 0.0,
        }
    )

    with pytest.raises(SerializationError) as raised:
        Observation.from_canonical(text)

    assert_refusal(raised.value, naming=["'0001-01-01T00:00:00+01:00'", "outside the years 1-9999"])


@settings(max_examples=60, deadline=None)
@given(
    bar=st.fixed_dictionaries(
        {},
        optional={**dict.fromkeys(BAR, wrong_values), "spread": wrong_values, "extra": wrong_values},
    ),
    keep=st.sets(st.sampled_from(list(BAR))),
)
@example(bar={}, keep=set())
@example(bar={"extra": 1}, keep=set(BAR))
def test_any_json_object_given_as_a_bar_is_the_bar_or_a_one_line_refusal(bar: dict[str, Any], keep: set[str]) -> None:
    plain = {**{name: BAR[name] for name in keep}, **bar}
    _read_or_refuse(Bar, json.dumps(plain, ensure_ascii=False), Bar.from_json)
