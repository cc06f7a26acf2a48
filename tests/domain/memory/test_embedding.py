"""Behaviour of the window embedder (`neuraltrade.memory.embedding`) and the vector memory's rules
(`neuraltrade.memory.collection`)."""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuraltrade.memory.embedding
from neuraltrade.errors import (
    ConfigError,
    DimensionMismatch,
    FingerprintMismatch,
    InvalidVector,
    NotEnoughHistory,
)
from neuraltrade.market.ingest import read_bars
from neuraltrade.market.synthetic import MarketConfig, generate_market
from neuraltrade.memory.collection import METRICS, CollectionSpec, check_vectors
from neuraltrade.memory.embedding import (
    EmbedderFingerprint,
    WindowEmbedder,
    WindowEmbedderConfig,
    relative_spreads,
)
from tests.conftest import DAILY_DATA

DAILY = DAILY_DATA
PROPERTY = settings(max_examples=50, deadline=None)
SAMPLED_WINDOWS = 200


@cache
def real_bars(symbol: str) -> pd.DataFrame:
    return read_bars(DAILY / f"{symbol}.csv").frame.drop(columns="line")


@cache
def synthetic_bars(symbol: str, bars: int = 3_000) -> pd.DataFrame:
    market = generate_market(MarketConfig(symbols=2, bars_per_symbol=bars, seed=5))
    return market[market["symbol"] == symbol].reset_index(drop=True)


def small_market(bars: int, seed: int = 0) -> pd.DataFrame:
    return generate_market(MarketConfig(symbols=1, bars_per_symbol=bars, seed=seed))


def perturbed(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """`frame` with every price moved by about 0.1 % and every volume by about 1 %, OHLC kept valid."""
    rng = np.random.default_rng(seed)
    moved = frame.copy()
    prices = ["open", "high", "low", "close"]
    for column in prices:
        moved[column] = moved[column] * (1.0 + 0.001 * rng.standard_normal(len(moved)))
    moved["high"] = moved[prices].max(axis=1)
    moved["low"] = moved[prices].min(axis=1)
    moved["volume"] = moved["volume"] * (1.0 + 0.01 * rng.standard_normal(len(moved)))
    return moved


def cosine_distance(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return 1.0 - np.sum(first.astype(np.float64) * second.astype(np.float64), axis=1)


# --- fingerprint --------------------------------------------------------------------------------------------

configs = st.builds(
    WindowEmbedderConfig,
    window=st.integers(min_value=8, max_value=64),
    dimension=st.integers(min_value=8, max_value=256),
    seed=st.integers(min_value=0, max_value=2**32),
    clip=st.floats(min_value=0.5, max_value=10.0),
)


@PROPERTY
@given(config=configs, other=configs)
def test_the_fingerprint_digest_is_stable_and_changes_with_any_parameter(
    config: WindowEmbedderConfig, other: WindowEmbedderConfig
) -> None:
    fingerprint = WindowEmbedder(config).fingerprint
    assert fingerprint.digest == WindowEmbedder(replace(config)).fingerprint.digest
    assert fingerprint == WindowEmbedder(replace(config)).fingerprint
    assert (fingerprint.digest == WindowEmbedder(other).fingerprint.digest) == (config == other)


@pytest.mark.parametrize("change", [{"window": 33}, {"seed": 20_240_602}, {"dimension": 256}, {"clip": 3.5}], ids=repr)
def test_changing_one_parameter_changes_the_fingerprint_digest(change: dict[str, object]) -> None:
    default = WindowEmbedder().fingerprint
    changed = WindowEmbedder(WindowEmbedderConfig(**change)).fingerprint  # type: ignore[arg-type]
    assert changed.digest != default.digest
    assert changed.describe() != default.describe()


def test_the_default_fingerprint_names_the_embedder_and_its_parameters() -> None:
    fingerprint = WindowEmbedder().fingerprint
    assert (fingerprint.name, fingerprint.version, fingerprint.dimension) == ("window", "1", 512)
    assert fingerprint.parameters == {"window": 32, "seed": 20_240_601, "clip": 4.0}
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint.digest)
    assert fingerprint.describe() == f"window/1 (512-d, {fingerprint.digest[:8]})"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"window": 7}, "was 7"),
        ({"window": 8.0}, "was 8.0"),
        ({"dimension": 7}, "was 7"),
        ({"dimension": 8193}, "was 8193"),
        ({"clip": 0.0}, "was 0.0"),
        ({"clip": float("nan")}, "was nan"),
        ({"seed": -1}, "was -1"),
    ],
)
def test_an_invalid_embedder_configuration_is_refused_naming_the_value(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        WindowEmbedder(WindowEmbedderConfig(**fields))  # type: ignore[arg-type]


# --- vectors ------------------------------------------------------------------------------------------------


@PROPERTY
@given(
    window=st.integers(min_value=8, max_value=40),
    dimension=st.integers(min_value=8, max_value=96),
    extra=st.integers(min_value=0, max_value=60),
    seed=st.integers(min_value=0, max_value=1_000),
)
def test_vectors_are_one_per_full_window_float32_unit_length_and_finite(
    window: int, dimension: int, extra: int, seed: int
) -> None:
    frame = small_market(window + extra, seed)
    vectors = WindowEmbedder(WindowEmbedderConfig(window=window, dimension=dimension)).embed(frame)
    assert vectors.shape == (extra + 1, dimension)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_real_daily_bars_embed_to_unit_vectors() -> None:
    frame = real_bars("NVDA")
    vectors = WindowEmbedder().embed(frame)
    assert vectors.shape == (len(frame) - 31, 512)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embedding_is_deterministic_across_embedder_instances() -> None:
    frame = synthetic_bars("SYN000", 500)
    first = WindowEmbedder(WindowEmbedderConfig(window=16, dimension=64)).embed(frame)
    second = WindowEmbedder(WindowEmbedderConfig(window=16, dimension=64)).embed(frame.copy())
    np.testing.assert_array_equal(first, second)


def test_another_seed_projects_the_same_bars_to_other_vectors() -> None:
    frame = synthetic_bars("SYN000", 200)
    first = WindowEmbedder(WindowEmbedderConfig(window=16, dimension=64, seed=1)).embed(frame)
    second = WindowEmbedder(WindowEmbedderConfig(window=16, dimension=64, seed=2)).embed(frame)
    assert np.abs(first - second).max() > 0.1


def test_constant_bars_still_embed_to_finite_unit_vectors() -> None:
    frame = small_market(20)
    for column in ("open", "high", "low", "close"):
        frame[column] = 10.0
    frame["volume"] = 0.0
    vectors = WindowEmbedder(WindowEmbedderConfig(window=8, dimension=16)).embed(frame)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# --- nearness -----------------------------------------------------------------------------------------------


def _nearness(frame: pd.DataFrame, other_symbol: pd.DataFrame, seed: int) -> tuple[np.ndarray, ...]:
    """Distances from sampled windows to their perturbed copies, to far windows, and to another symbol."""
    embedder = WindowEmbedder()
    original = embedder.embed(frame)
    moved = embedder.embed(perturbed(frame, seed))
    elsewhere = embedder.embed(other_symbol)
    rng = np.random.default_rng(seed)
    sampled = rng.choice(len(original), SAMPLED_WINDOWS, replace=False)
    far = (sampled + len(original) // 2) % len(original)  # half the history away in time
    other = rng.choice(len(elsewhere), SAMPLED_WINDOWS, replace=False)
    return (
        cosine_distance(original[sampled], moved[sampled]),
        cosine_distance(original[sampled], original[far]),
        cosine_distance(original[sampled], elsewhere[other]),
    )


@pytest.mark.parametrize(
    ("source", "symbol", "other"),
    [("real", "NVDA", "ORCL"), ("real", "YHOO", "NVDA"), ("synthetic", "SYN000", "SYN001")],
)
def test_a_slightly_perturbed_window_embeds_nearer_than_an_unrelated_window(
    source: str, symbol: str, other: str
) -> None:
    bars = real_bars if source == "real" else synthetic_bars
    to_perturbed, to_far, to_other = _nearness(bars(symbol), bars(other), seed=11)
    assert np.mean(to_perturbed < to_far) >= 0.95
    assert np.mean(to_perturbed < to_other) >= 0.95
    assert np.median(to_perturbed / to_far) < 0.05
    assert np.median(to_perturbed / to_other) < 0.05


# --- causality and blocks -----------------------------------------------------------------------------------


@PROPERTY
@given(
    changed_bar=st.integers(min_value=0, max_value=119),
    factor=st.floats(min_value=0.5, max_value=2.0).filter(lambda f: abs(f - 1.0) > 1e-3),
    column=st.sampled_from(["close", "volume"]),
)
def test_changing_a_bar_changes_only_the_vectors_of_the_windows_that_hold_it(
    changed_bar: int, factor: float, column: str
) -> None:
    window = 8
    frame = small_market(120, seed=3)
    embedder = WindowEmbedder(WindowEmbedderConfig(window=window, dimension=32))
    before = embedder.embed(frame)
    changed = frame.copy()
    changed.loc[changed_bar, column] *= factor
    changed["high"] = changed[["open", "high", "close"]].max(axis=1)
    changed["low"] = changed[["open", "low", "close"]].min(axis=1)
    after = embedder.embed(changed)
    # Row r of the vectors embeds the window ending at bar r + window - 1.
    untouched = max(0, changed_bar - window + 1)
    np.testing.assert_array_equal(after[:untouched], before[:untouched])  # no look-ahead
    np.testing.assert_array_equal(after[changed_bar + 1 :], before[changed_bar + 1 :])  # no look-back
    if changed_bar >= window - 1:
        assert not np.array_equal(after[changed_bar - window + 1], before[changed_bar - window + 1])


def test_appending_bars_leaves_every_earlier_vector_as_it_was() -> None:
    frame = real_bars("ORCL").iloc[:600].reset_index(drop=True)
    embedder = WindowEmbedder()
    shorter = embedder.embed(frame.iloc[:400])
    longer = embedder.embed(frame)
    np.testing.assert_allclose(longer[: len(shorter)], shorter, atol=1e-6)


@pytest.mark.parametrize("start", [1, 100, 1_000])
def test_a_window_embeds_the_same_whether_or_not_the_frame_starts_with_it(start: int) -> None:
    frame = real_bars("NVDA")
    embedder = WindowEmbedder(WindowEmbedderConfig(window=16, dimension=64))
    whole = embedder.embed(frame)
    # An incremental run embeds from the first bar of the first window it lacks.
    suffix = embedder.embed(frame.iloc[start:].reset_index(drop=True))
    np.testing.assert_allclose(suffix, whole[start:], atol=1e-6)


@pytest.mark.parametrize("block_rows", [1, 5, 64, 999])
def test_a_frame_longer_than_one_block_embeds_as_if_it_were_one_block(
    block_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = real_bars("YHOO").iloc[:1_000].reset_index(drop=True)
    embedder = WindowEmbedder(WindowEmbedderConfig(window=16, dimension=64))
    whole = embedder.embed(frame)
    monkeypatch.setattr(neuraltrade.memory.embedding, "BLOCK_ROWS", block_rows)
    blocked = embedder.embed(frame)
    assert blocked.shape == whole.shape
    np.testing.assert_allclose(blocked, whole, atol=1e-6)


# --- history ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 7, 31])
def test_a_frame_shorter_than_one_window_raises_not_enough_history_naming_the_symbol(count: int) -> None:
    frame = real_bars("NVDA").iloc[:count]
    with pytest.raises(NotEnoughHistory) as raised:
        WindowEmbedder().embed(frame)
    assert "NVDA" in str(raised.value) and f"{count} bars" in str(raised.value) and "32" in str(raised.value)


def test_an_empty_frame_raises_not_enough_history() -> None:
    with pytest.raises(NotEnoughHistory, match="0 bars"):
        WindowEmbedder().embed(real_bars("NVDA").iloc[:0])


def test_exactly_one_window_of_bars_gives_one_vector() -> None:
    assert WindowEmbedder().embed(real_bars("NVDA").iloc[:32]).shape == (1, 512)


def test_relative_spread_is_the_quote_where_known_and_the_high_low_range_over_close_elsewhere() -> None:
    frame = pd.DataFrame({"high": [11.0, 11.0], "low": [9.0, 9.0], "close": [10.0, 10.0], "spread": [0.001, np.nan]})
    np.testing.assert_allclose(relative_spreads(frame), [0.001, 0.2])
    assert np.isnan(frame["spread"].iloc[1])  # the caller's frame is left alone


# --- memory rules -------------------------------------------------------------------------------------------


def fingerprint(dimension: int = 16, seed: int = 1) -> EmbedderFingerprint:
    return WindowEmbedder(WindowEmbedderConfig(window=8, dimension=dimension, seed=seed)).fingerprint


def collection(dimension: int = 16) -> CollectionSpec:
    return CollectionSpec(name="market_state", fingerprint=fingerprint(dimension))


def test_vectors_from_the_collections_embedder_are_accepted_as_contiguous_float32() -> None:
    vectors = np.asfortranarray(np.random.default_rng(0).standard_normal((5, 16)))
    accepted = check_vectors(collection(), fingerprint(), vectors)
    assert accepted.dtype == np.float32 and accepted.flags.c_contiguous
    np.testing.assert_allclose(accepted, vectors, rtol=1e-6)


def test_a_single_flat_vector_is_accepted_as_a_one_row_matrix() -> None:
    assert check_vectors(collection(), fingerprint(), np.ones(16)).shape == (1, 16)


def test_real_embeddings_pass_the_collection_check() -> None:
    embedder = WindowEmbedder()
    vectors = embedder.embed(real_bars("NVDA").iloc[:100])
    spec = CollectionSpec(name="market_state", fingerprint=embedder.fingerprint)
    np.testing.assert_array_equal(check_vectors(spec, embedder.fingerprint, vectors), vectors)


def test_vectors_of_another_embedder_raise_fingerprint_mismatch_naming_both() -> None:
    spec, other = collection(), fingerprint(seed=2)
    with pytest.raises(FingerprintMismatch) as raised:
        check_vectors(spec, other, np.zeros((2, 16)))
    message = str(raised.value)
    assert "'market_state'" in message
    assert spec.fingerprint.describe() in message and other.describe() in message
    assert (raised.value.expected, raised.value.was) == (spec.fingerprint.describe(), other.describe())


def test_a_fingerprint_of_another_dimension_is_another_embedder() -> None:
    with pytest.raises(FingerprintMismatch):
        check_vectors(collection(16), fingerprint(32), np.zeros((2, 32)))


@pytest.mark.parametrize("width", [8, 15, 17, 512])
def test_vectors_of_another_width_raise_dimension_mismatch_naming_both_dimensions(width: int) -> None:
    with pytest.raises(DimensionMismatch) as raised:
        check_vectors(collection(16), fingerprint(16), np.zeros((3, width)))
    assert str(raised.value) == f"collection 'market_state' holds 16-d vectors, was given {width}-d"
    assert (raised.value.expected, raised.value.was) == (16, width)


@PROPERTY
@given(
    rows=st.integers(min_value=1, max_value=20),
    data=st.data(),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_a_vector_holding_nan_or_infinity_raises_invalid_vector_naming_the_first_bad_row(
    rows: int, data: st.DataObject, bad: float
) -> None:
    vectors = np.ones((rows, 16))
    first = data.draw(st.integers(min_value=0, max_value=rows - 1), label="first bad row")
    vectors[first, data.draw(st.integers(min_value=0, max_value=15))] = bad
    for later in data.draw(st.lists(st.integers(min_value=first, max_value=rows - 1), max_size=3)):
        vectors[later, 0] = np.nan
    with pytest.raises(InvalidVector) as raised:
        check_vectors(collection(), fingerprint(), vectors)
    assert f"vector {first} of {rows}" in str(raised.value)
    assert "'market_state'" in str(raised.value)


def test_a_float64_too_large_for_float32_is_refused_as_infinite() -> None:
    vectors = np.ones((2, 16))
    vectors[1, 3] = 1e300
    with pytest.raises(InvalidVector, match="vector 1 of 2"), np.errstate(over="ignore"):
        check_vectors(collection(), fingerprint(), vectors)


@pytest.mark.parametrize(
    ("vectors", "named"),
    [
        (np.zeros((2, 2, 16)), "was given 3-d"),
        (np.full((2, 16), "x"), "dtype <U1"),
        (np.zeros((2, 16), dtype=bool), "dtype bool"),
    ],
    ids=["three_dimensional", "strings", "booleans"],
)
def test_an_array_that_is_not_a_matrix_of_numbers_raises_invalid_vector(vectors: np.ndarray, named: str) -> None:
    with pytest.raises(InvalidVector, match=re.escape(named)):
        check_vectors(collection(), fingerprint(), vectors)


@pytest.mark.parametrize("name", ["a", "market_state", "m2", "x_" + "y" * 46])
def test_a_collection_name_of_lower_case_letters_digits_and_underscores_is_accepted(name: str) -> None:
    assert CollectionSpec(name=name, fingerprint=fingerprint()).dimension == 16


@pytest.mark.parametrize(
    "name",
    [
        "x; drop table",
        "x; DROP TABLE vectors; --",
        'x"',
        "x'",
        "vec(x)",
        "a b",
        "a-b",
        "Market",
        "1abc",
        "_abc",
        "",
        "x" * 49,
        "é",
        "market_state\n",
        None,
    ],
    ids=repr,
)
def test_a_collection_name_that_is_not_a_plain_identifier_is_refused_naming_it(name: object) -> None:
    with pytest.raises(ConfigError) as raised:
        CollectionSpec(name=name, fingerprint=fingerprint())  # type: ignore[arg-type]
    assert repr(name) in str(raised.value)


@pytest.mark.parametrize("metric", METRICS)
def test_every_supported_metric_is_accepted(metric: str) -> None:
    assert CollectionSpec(name="m", fingerprint=fingerprint(), metric=metric).metric == metric


def test_an_unknown_metric_is_refused_naming_it_and_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="'hamming' is not one of cosine, l2, inner_product"):
        CollectionSpec(name="m", fingerprint=fingerprint(), metric="hamming")


def test_a_zero_vector_is_refused_by_a_cosine_collection_only() -> None:
    # It has no direction: its cosine distance is undefined, and stored it would break every exact search.
    vectors = np.ones((3, 16))
    vectors[2] = 0.0
    with pytest.raises(InvalidVector, match="vector 2 of 3: it is zero"):
        check_vectors(collection(), fingerprint(), vectors)
    euclidean = CollectionSpec(name="market_state", fingerprint=fingerprint(), metric="l2")
    assert check_vectors(euclidean, fingerprint(), vectors).shape == (3, 16)
