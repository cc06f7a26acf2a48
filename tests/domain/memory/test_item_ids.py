"""Specification of item ids (`neuraltrade.memory.collection.normalise_item_id`): str, int or UUID in, str out."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuraltrade.errors import InvalidItemId, NeuralTradeError
from neuraltrade.memory.collection import MAX_ITEM_ID_LENGTH, normalise_item_id

# PostgreSQL stores no NUL character, so an id holding one is refused (the "nul" case below).
texts = st.text(alphabet=st.characters(exclude_characters="\x00"), min_size=1, max_size=MAX_ITEM_ID_LENGTH)
#: Every int whose decimal form fits in an id: up to 255 digits and a sign.
integers = st.integers(min_value=-(10**255) + 1, max_value=10**256 - 1)
uuids = st.uuids()


@given(texts)
def test_a_str_id_is_kept_as_it_is(value: str) -> None:
    assert normalise_item_id(value) == value


@given(integers)
def test_an_int_id_becomes_its_decimal_form_and_names_the_same_item_as_that_text(value: int) -> None:
    text = normalise_item_id(value)

    assert text == str(value)
    assert int(text) == value
    assert normalise_item_id(text) == text


@given(uuids)
def test_a_uuid_id_becomes_its_hyphenated_form_and_reads_back_as_the_same_uuid(value: uuid.UUID) -> None:
    text = normalise_item_id(value)

    assert text == str(value)
    assert uuid.UUID(text) == value
    assert normalise_item_id(text) == text


@given(st.one_of(texts, integers, uuids))
def test_normalising_is_idempotent_and_always_gives_a_plain_str(value: str | int | uuid.UUID) -> None:
    text = normalise_item_id(value)

    assert type(text) is str
    assert 1 <= len(text) <= MAX_ITEM_ID_LENGTH
    assert normalise_item_id(text) == text


def test_numpy_integers_and_str_count_as_int_and_str() -> None:
    assert normalise_item_id(np.int64(42)) == "42"
    assert type(normalise_item_id(np.str_("AAPL-1"))) is str


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (4.0, "is not a str, an int or a uuid.UUID"),
        (b"AAPL", "is not a str, an int or a uuid.UUID"),
        (None, "is not a str, an int or a uuid.UUID"),
        (True, "is not a str, an int or a uuid.UUID"),
        (np.bool_(True), "is not a str, an int or a uuid.UUID"),
        (("AAPL", 1), "is not a str, an int or a uuid.UUID"),
        ("", "is empty"),
        ("x" * (MAX_ITEM_ID_LENGTH + 1), "is longer than 256 characters (257)"),
        (10**MAX_ITEM_ID_LENGTH, "is longer than 256 characters (257)"),
        ("AAPL\x00-1", "holds a NUL character (U+0000)"),
    ],
    ids=["float", "bytes", "none", "bool", "numpy-bool", "tuple", "empty", "long-str", "long-int", "nul"],
)
def test_anything_else_is_an_invalid_item_id_naming_the_value_and_its_type(value: object, reason: str) -> None:
    with pytest.raises(InvalidItemId) as raised:
        normalise_item_id(value)

    message = str(raised.value)
    assert isinstance(raised.value, NeuralTradeError)
    assert reason in message
    assert f"of type {type(value).__name__}" in message
    assert repr(value)[:40] in message
    assert "\n" not in message and len(message) < 200
    assert raised.value.value is value


def test_an_int_too_large_to_write_out_is_an_invalid_item_id_too() -> None:
    with pytest.raises(InvalidItemId, match="<int too large to print> of type int is longer than 256"):
        normalise_item_id(10**5000)
