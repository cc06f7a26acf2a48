"""The canonical form (`neuraltrade.canonical`): RFC 8785 bytes, the plain form, and typed, injective ids.

`rfc8785` (the package) is the reference: our encoder must write exactly its bytes.
"""

from __future__ import annotations

import json
import re
import struct
import uuid
from collections import namedtuple
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.canonical import (
    MAX_SAFE_INTEGER,
    NAMESPACE,
    canonical_json,
    digest,
    legacy_stable_id,
    parse_json,
    recanonicalise,
    stable_id,
    stable_ids_at,
    to_plain,
)
from neuraltrade.errors import SerializationError
from neuraltrade.records import CauseKind, Relation
from neuraltrade.timestamps import EPOCH, format_timestamp, to_microseconds
from neuraltrade.types import Observation, OrderSide
from tests.domain.record_support import MOMENT, a_link, a_signal, floats, json_values, safe_integers

PROPERTY = settings(max_examples=200, deadline=None)

# --- values ---------------------------------------------------------------------------------------------------


def _bits(text: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(text))[0]
    return value


# --- RFC 8785 bytes -------------------------------------------------------------------------------------------


@PROPERTY
@given(value=json_values)
def test_canonical_json_writes_the_bytes_the_rfc8785_reference_writes(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@PROPERTY
@given(number=floats)
def test_every_float_is_written_as_the_reference_writes_it_and_reads_back_as_itself(number: float) -> None:
    text = canonical_json(number)
    assert text == rfc8785.dumps(number)
    assert float(text) == number


# RFC 8785, appendix B: IEEE 754 bit patterns and their canonical text.
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC_NUMBERS, ids=[text for _, text in RFC_NUMBERS])
def test_numbers_are_written_as_rfc_8785_appendix_b_writes_them(bits: str, text: str) -> None:
    assert canonical_json(_bits(bits)) == text.encode()


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1.0, "1"),
        (10000, "10000"),
        (10000.0, "10000"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (2.0**60, "1152921504606847000"),
        (123456789012345680000.0, "123456789012345680000"),
        (MAX_SAFE_INTEGER, "9007199254740991"),
        (-MAX_SAFE_INTEGER, "-9007199254740991"),
        (np.float64(0.1), "0.1"),
        (np.int64(3), "3"),
    ],
    ids=repr,
)
def test_numbers_follow_ecmascript_number_to_string(number: float, text: str) -> None:
    assert canonical_json(number) == text.encode()


def test_the_rfc_8785_example_canonicalises_to_its_published_bytes() -> None:
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert recanonicalise(source) == expected.encode("utf-8")


def test_keys_are_sorted_by_their_utf16_code_units_as_in_rfc_8785() -> None:
    # RFC 8785 3.2.3: the astral emoji (a surrogate pair, 0xD83D...) sorts before U+FB33, not after it.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_strings_escape_only_quotes_backslashes_and_control_characters() -> None:
    text = '"\\\b\f\n\r\t\x00\x1f\x7f\u2028é𝄞/'
    assert canonical_json(text) == '"\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\u2028é𝄞/"'.encode()


@pytest.mark.parametrize("number", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 2**64, -(10**30)], ids=repr)
def test_an_integer_a_double_cannot_hold_exactly_is_refused_naming_it(number: int) -> None:
    with pytest.raises(SerializationError, match=re.escape(str(number))):
        canonical_json({"n": [number]})
    with pytest.raises(SerializationError, match=re.escape(str(number))):
        stable_id("x", number)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), [1.0, float("nan")], {"a": {"b": float("inf")}}, np.float32("inf")],
    ids=repr,
)
def test_nan_and_infinity_are_refused_wherever_they_hide(value: Any) -> None:
    with pytest.raises(SerializationError, match=r"nan|inf"):
        canonical_json(value)


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {OrderSide.BUY: 1}, b"bytes", object(), "\ud800"],
    ids=["int_key", "enum_key", "bytes", "object", "surrogate"],
)
def test_values_without_a_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(SerializationError):
        canonical_json(value)


@PROPERTY
@given(value=json_values, order_seed=st.randoms(use_true_random=False))
def test_one_value_has_one_byte_string_whatever_its_key_order(value: Any, order_seed: Any) -> None:
    def shuffled(item: Any) -> Any:
        if isinstance(item, dict):
            keys = list(item)
            order_seed.shuffle(keys)
            return {key: shuffled(item[key]) for key in keys}
        if isinstance(item, list):
            return [shuffled(element) for element in item]
        return item

    assert canonical_json(shuffled(value)) == canonical_json(value)
    assert digest(shuffled(value)) == digest(value)


# --- re-canonicalising stored JSON ----------------------------------------------------------------------------


@PROPERTY
@given(value=json_values)
def test_canonical_bytes_are_a_fixed_point_of_recanonicalise(value: Any) -> None:
    data = canonical_json(value)
    assert recanonicalise(data) == data
    assert recanonicalise(data.decode("utf-8")) == data


@PROPERTY
@given(value=json_values)
def test_any_json_of_a_value_recanonicalises_to_its_canonical_bytes(value: Any) -> None:
    pretty = json.dumps(value, indent=2, ensure_ascii=True)
    assert recanonicalise(pretty) == canonical_json(value)


@pytest.mark.parametrize("number", [2.0**53, 2.0**60, 1e20, -1e21, 1.5e300], ids=repr)
def test_a_large_integral_double_reads_back_as_that_double(number: float) -> None:
    # Written without a fraction or exponent (1152921504606847000), it is still a double, not an integer.
    data = canonical_json([number])
    assert parse_json(data) == [number] and type(parse_json(data)[0]) is float
    assert recanonicalise(data) == data


@pytest.mark.parametrize(
    ("text", "named"),
    [('{"a": 1, "a": 2}', "'a'"), ("[NaN]", "NaN"), ('{"x": Infinity}', "Infinity"), ("{", "malformed")],
)
def test_stored_json_with_a_repeated_key_a_non_finite_number_or_bad_syntax_is_refused(text: str, named: str) -> None:
    with pytest.raises(SerializationError, match=re.escape(named)):
        recanonicalise(text)
    with pytest.raises(SerializationError):
        parse_json(text)


# --- plain form -----------------------------------------------------------------------------------------------


def test_plain_forms_of_rich_values() -> None:
    value = {
        "b": [1, 2.5],
        "a": {"z": None, "y": True},
        "when": datetime(2024, 1, 2, 8, 4, 5, 6, tzinfo=timezone(timedelta(hours=5))),
        "id": uuid.UUID("5F0C7A4E-2B4B-4D5E-9A51-6E6575726174"),
        "side": OrderSide.SELL,
        "é": "ü",
        "tuple": (np.int64(3), np.float32(0.5)),
        "array": np.array([1.5, 2.0]),
        "proxy": MappingProxyType({"k": 1}),
    }
    assert (
        canonical_json(value)
        == (
            '{"a":{"y":true,"z":null},"array":[1.5,2],"b":[1,2.5],"id":"5f0c7a4e-2b4b-4d5e-9a51-6e6575726174",'
            '"proxy":{"k":1},"side":"sell","tuple":[3,0.5],"when":"2024-01-02T03:04:05.000006Z","é":"ü"}'
        ).encode()
    )
    assert canonical_json(value) == canonical_json(to_plain(value))


def test_a_named_tuple_is_an_object_of_its_named_fields_never_a_positional_array() -> None:
    Point = namedtuple("Point", ["x", "y"])
    assert to_plain(Point(1, 2)) == {"x": 1, "y": 2}
    assert canonical_json([Point(1, 2)]) == b'[{"x":1,"y":2}]'


def test_a_record_is_written_through_its_canonical_form_with_kind_and_schema_version() -> None:
    signal = a_signal(causal_links=[a_link(5, CauseKind.OBSERVATION, Relation.OBSERVED)])
    plain = to_plain({"signal": signal})["signal"]
    assert plain == signal.canonical_plain()
    assert plain["kind"] == "signal" and plain["schema_version"] == 1
    assert plain["causal_links"] == [
        {"cause_id": str(uuid.UUID(int=5)), "cause_kind": "observation", "relation": "observed"}
    ]
    assert canonical_json(signal) == signal.canonical_bytes()


def test_to_plain_writes_non_finite_numbers_as_null_only_when_asked() -> None:
    statistics = {"sharpe": float("nan"), "trades": np.array([1.0, np.inf]), "win": np.float64("nan")}
    assert to_plain(statistics, non_finite_as_null=True) == {"sharpe": None, "trades": [1.0, None], "win": None}
    with pytest.raises(SerializationError):
        to_plain(statistics)


# --- stable ids -----------------------------------------------------------------------------------------------

aware = st.datetimes(
    min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | st.timezones()
)
separators = st.sampled_from(["\x1f", '","', '"', ",", "[", "]", "\\", "", "1", "None", "True"])
# Text glued from characters and the pieces a joined or hand-written encoding would confuse.
glued = st.lists(st.one_of(st.characters(exclude_categories=["Cs"]), separators), max_size=6).map("".join)
typed_parts = st.one_of(glued, separators, safe_integers, st.booleans(), st.none(), st.uuids(), aware)
part_tuples = st.lists(typed_parts, max_size=4).map(tuple)


def _typed_plain(parts: tuple[Any, ...]) -> list[tuple[str, Any]]:
    """The plain form of each part with its JSON type: True and 1, equal in Python, are different parts."""
    return [(type(plain).__name__, plain) for plain in to_plain(list(parts))]


@settings(max_examples=500, deadline=None)
@given(first=part_tuples, second=part_tuples)
def test_stable_ids_of_parts_whose_plain_forms_differ_differ(first: tuple[Any, ...], second: tuple[Any, ...]) -> None:
    if _typed_plain(first) != _typed_plain(second):
        assert stable_id(*first) != stable_id(*second)
    else:  # the same key however it was given: a datetime in any zone, a UUID or its text
        assert stable_id(*first) == stable_id(*second)


@settings(max_examples=500, deadline=None)
@given(parts=part_tuples, data=st.data())
def test_stable_ids_of_a_tuple_and_of_a_near_miss_of_it_differ(parts: tuple[Any, ...], data: st.DataObject) -> None:
    # Two independent draws rarely come close; a near miss (one part changed, split, joined or retyped) does.
    candidates = [parts[:-1], (*parts, "")]
    for index, part in enumerate(parts):
        if isinstance(part, str):
            cut = data.draw(st.integers(min_value=0, max_value=len(part)))
            candidates.append((*parts[:index], part[:cut], part[cut:], *parts[index + 1 :]))
            if re.fullmatch(r"-?[0-9]{1,15}", part):
                candidates.append((*parts[:index], int(part), *parts[index + 1 :]))
        if index + 1 < len(parts) and isinstance(part, str) and isinstance(parts[index + 1], str):
            for glue in ("\x1f", '","', ""):
                candidates.append((*parts[:index], part + glue + parts[index + 1], *parts[index + 2 :]))
        candidates.append((*parts[:index], str(to_plain(part)), *parts[index + 1 :]))
    for other in candidates:
        if _typed_plain(other) != _typed_plain(parts):
            assert stable_id(*other) != stable_id(*parts), (parts, other)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("x", "1"), ("x", 1)),
        (("a\x1fb",), ("a", "b")),
        (("a", "b\x1fc"), ("a\x1fb", "c")),
        (('a","b',), ("a", "b")),
        (("x", True), ("x", 1)),
        (("x", None), ("x", "None")),
        (("x", "true"), ("x", True)),
        ((), ("",)),
        ((uuid.UUID(int=1), 1), (str(uuid.UUID(int=1)), "1")),
    ],
    ids=repr,
)
def test_parts_that_a_joined_string_would_confuse_get_different_ids(
    first: tuple[Any, ...], second: tuple[Any, ...]
) -> None:
    assert stable_id(*first) != stable_id(*second)


def test_a_stable_id_is_the_uuid5_of_the_canonical_json_of_its_parts() -> None:
    name = '["observation","NVDA","2024-03-01T14:30:00.123456Z"]'
    assert stable_id("observation", "NVDA", MOMENT) == uuid.uuid5(NAMESPACE, name)
    assert stable_id("x", 1) == stable_id("x", 1.0) == uuid.uuid5(NAMESPACE, '["x",1]')
    assert stable_id("observation", "NVDA", MOMENT).version == 5


def test_a_stable_id_depends_on_the_instant_not_on_the_time_zone() -> None:
    paris = MOMENT.astimezone(timezone(timedelta(hours=1)))
    assert stable_id("at", paris) == stable_id("at", MOMENT)


def test_the_legacy_stable_id_is_exactly_the_rule_stored_ids_were_derived_by() -> None:
    # Pinned from the previous `stable_id` (parts joined with U+001F), for the migration that re-keys them.
    assert legacy_stable_id("observation", "NVDA", MOMENT) == uuid.UUID("4c0f2560-7c7c-5298-b9a6-88ce1c35571f")
    assert legacy_stable_id("order", "abc123") == uuid.UUID("410f16e4-018b-5510-bbe7-3fc8e00f22bb")
    assert legacy_stable_id("fill", uuid.UUID(int=7), 3) == uuid.UUID("2b074e4c-1a5f-5f92-96f6-b7009211c22d")
    assert legacy_stable_id("x", 1.5, None, True) == uuid.UUID("77849688-b23c-5fe5-a7d3-4476dc118760")
    assert legacy_stable_id("x", "1") == legacy_stable_id("x", 1)  # why it was replaced
    assert legacy_stable_id("observation", "NVDA", MOMENT) != stable_id("observation", "NVDA", MOMENT)


# --- bulk ids -------------------------------------------------------------------------------------------------

microseconds = st.integers(
    min_value=to_microseconds(datetime(1, 1, 1, tzinfo=UTC)),
    max_value=to_microseconds(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
)
symbols = glued.filter(bool)


@PROPERTY
@given(symbol=symbols, stamps=st.lists(microseconds, max_size=6))
def test_bulk_observation_ids_equal_one_by_one_ids(symbol: str, stamps: list[int]) -> None:
    moments = [EPOCH + timedelta(microseconds=stamp) for stamp in stamps]
    assert Observation.ids_for(symbol, stamps) == [Observation.id_for(symbol, moment) for moment in moments]
    assert Observation.ids_for(symbol, np.asarray(stamps, dtype=np.int64)) == Observation.ids_for(symbol, stamps)


@PROPERTY
@given(parts=st.lists(typed_parts, max_size=3), stamps=st.lists(microseconds, min_size=1, max_size=3))
def test_stable_ids_at_equal_stable_ids_with_the_moment_last(parts: list[Any], stamps: list[int]) -> None:
    expected = [stable_id(*parts, EPOCH + timedelta(microseconds=stamp)) for stamp in stamps]
    assert stable_ids_at(parts, stamps) == expected


def test_observation_ids_differ_by_symbol_by_microsecond_and_by_how_a_symbol_would_join() -> None:
    ids = {
        Observation.id_for("NVDA", MOMENT),
        Observation.id_for("ORCL", MOMENT),
        Observation.id_for("NVDA", MOMENT + timedelta(microseconds=1)),
        Observation.id_for('NVDA","', MOMENT),
        Observation.id_for("NVDA\x1f", MOMENT),
    }
    assert len(ids) == 5
    assert format_timestamp(MOMENT) in canonical_json(["observation", "NVDA", MOMENT]).decode()
