"""Behaviour of the synthetic market generator: `neuraltrade.market.synthetic`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.errors import ConfigError
from neuraltrade.market.bars import BAR_COLUMNS, TIMESTAMP_DTYPE, conform_bar_frame
from neuraltrade.market.synthetic import (
    MarketConfig,
    generate_market,
    generate_regimes,
    write_market_csv,
)

CALM, VOLATILE = 0, 1


def _by_symbol(frame: pd.DataFrame, column: str, symbols: int) -> np.ndarray:
    return frame[column].to_numpy().reshape(symbols, -1)


@pytest.fixture(scope="module")
def large() -> tuple[MarketConfig, pd.DataFrame, np.ndarray]:
    config = MarketConfig(symbols=20, bars_per_symbol=5_000, seed=7)
    return config, generate_market(config), generate_regimes(config)


def test_the_same_config_gives_the_identical_frame_and_regimes() -> None:
    config = MarketConfig(symbols=3, bars_per_symbol=200, seed=11)
    pd.testing.assert_frame_equal(generate_market(config), generate_market(replace(config)))
    np.testing.assert_array_equal(generate_regimes(config), generate_regimes(config))
    assert config.digest == MarketConfig(symbols=3, bars_per_symbol=200, seed=11).digest


def test_another_seed_gives_another_frame_and_digest() -> None:
    first, second = MarketConfig(seed=1, bars_per_symbol=50), MarketConfig(seed=2, bars_per_symbol=50)
    assert not generate_market(first)["close"].equals(generate_market(second)["close"])
    assert first.digest != second.digest
    assert first.digest != replace(first, interval=timedelta(hours=1)).digest


def test_frame_has_one_row_per_symbol_and_bar_with_bar_frame_dtypes() -> None:
    frame = generate_market(MarketConfig(symbols=4, bars_per_symbol=25))
    assert frame.shape == (100, len(BAR_COLUMNS))
    assert tuple(frame.columns) == BAR_COLUMNS
    pd.testing.assert_series_equal(frame.dtypes, conform_bar_frame(frame).dtypes)
    assert str(frame["timestamp"].dtype) == TIMESTAMP_DTYPE
    assert list(frame["symbol"].unique()) == ["SYN000", "SYN001", "SYN002", "SYN003"]
    assert (frame["symbol"].value_counts() == 25).all()
    assert frame.index.equals(pd.RangeIndex(100))


def test_explicit_symbol_names_are_used_in_order() -> None:
    frame = generate_market(MarketConfig(symbols=2, symbol_names=("ZZZ", "AAA"), bars_per_symbol=3))
    assert frame["symbol"].tolist() == ["ZZZ"] * 3 + ["AAA"] * 3


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    symbols=st.integers(min_value=1, max_value=4),
    bars=st.integers(min_value=1, max_value=80),
    volatility=st.floats(min_value=0.001, max_value=0.3),
)
def test_bars_are_ohlc_consistent_with_positive_prices(seed: int, symbols: int, bars: int, volatility: float) -> None:
    config = MarketConfig(
        seed=seed, symbols=symbols, bars_per_symbol=bars, volatility=(volatility / 3, volatility, volatility / 2)
    )
    frame = generate_market(config)
    prices = frame[["open", "high", "low", "close"]]
    assert np.isfinite(prices.to_numpy()).all()
    assert (frame["low"] > 0).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["volume"] > 0).all() and (frame["spread"] > 0).all()


def test_timestamps_step_by_the_interval_from_start_in_utc_for_every_symbol() -> None:
    start = datetime(2021, 6, 1, 9, 30, tzinfo=timezone(timedelta(hours=-4)))
    config = MarketConfig(symbols=3, bars_per_symbol=50, start=start, interval=timedelta(minutes=5))
    frame = generate_market(config)
    assert str(frame["timestamp"].dt.tz) == "UTC"
    for _, times in frame.groupby("symbol")["timestamp"]:
        assert times.is_monotonic_increasing and times.is_unique
        assert times.iloc[0] == pd.Timestamp("2021-06-01T13:30:00Z")
        assert (times.diff().dropna() == pd.Timedelta(minutes=5)).all()


def test_volatile_regime_moves_more_trades_more_and_quotes_wider_than_calm(
    large: tuple[MarketConfig, pd.DataFrame, np.ndarray],
) -> None:
    config, frame, regimes = large
    returns = np.diff(np.log(_by_symbol(frame, "close", config.symbols)), axis=1)
    later = regimes[:, 1:]
    calm, volatile = later == CALM, later == VOLATILE
    assert calm.sum() > 10_000 and volatile.sum() > 2_000
    assert returns[volatile].std() > 2 * returns[calm].std()
    spread = _by_symbol(frame, "spread", config.symbols)[:, 1:]
    volume = _by_symbol(frame, "volume", config.symbols)[:, 1:]
    assert spread[volatile].mean() > 2 * spread[calm].mean()
    assert volume[volatile].mean() > 1.5 * volume[calm].mean()


def test_volume_rises_with_the_size_of_the_move_within_a_regime(
    large: tuple[MarketConfig, pd.DataFrame, np.ndarray],
) -> None:
    config, frame, regimes = large
    returns = np.diff(np.log(_by_symbol(frame, "close", config.symbols)), axis=1)
    volume = _by_symbol(frame, "volume", config.symbols)[:, 1:]
    calm = regimes[:, 1:] == CALM
    assert np.corrcoef(np.abs(returns[calm]), np.log(volume[calm]))[0, 1] > 0.2


def test_regime_switches_follow_the_transition_matrix(large: tuple[MarketConfig, pd.DataFrame, np.ndarray]) -> None:
    config, _, regimes = large
    counts = np.zeros((3, 3))
    np.add.at(counts, (regimes[:, :-1].ravel(), regimes[:, 1:].ravel()), 1)
    observed = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(observed, np.asarray(config.transition_matrix), atol=0.015)


def test_a_chain_that_always_switches_alternates_and_one_that_never_does_stays() -> None:
    two_regimes = MarketConfig(
        bars_per_symbol=101,
        regime_names=("a", "b"),
        transition_matrix=((0.0, 1.0), (1.0, 0.0)),
        drift=(0.0, 0.0),
        volatility=(0.01, 0.02),
        volume_multiplier=(1.0, 1.0),
        spread_multiplier=(1.0, 1.0),
    )
    flipping = generate_regimes(two_regimes)
    assert (np.diff(flipping, axis=1) != 0).all()
    assert set(flipping[:, 0]) == {0, 1}  # starts are drawn from the stationary (1/2, 1/2)
    staying = generate_regimes(replace(two_regimes, transition_matrix=((1.0, 0.0), (0.0, 1.0))))
    assert (staying == staying[:, :1]).all()


def test_a_common_market_factor_correlates_symbols() -> None:
    def mean_correlation(share: float) -> float:
        config = MarketConfig(symbols=8, bars_per_symbol=3_000, market_correlation=share, seed=3)
        returns = np.diff(np.log(_by_symbol(generate_market(config), "close", 8)), axis=1)
        return float(np.corrcoef(returns)[np.triu_indices(8, 1)].mean())

    assert mean_correlation(0.6) > 0.4
    assert abs(mean_correlation(0.0)) < 0.05


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"start": datetime(2020, 1, 1)}, "2020-01-01T00:00:00"),
        ({"symbols": 0}, "was 0"),
        ({"bars_per_symbol": -5}, "was -5"),
        ({"interval": timedelta(days=-1)}, repr(timedelta(days=-1))),
        ({"interval": timedelta(0)}, repr(timedelta(0))),
        ({"transition_matrix": ((0.9, 0.05, 0.0), (0.1, 0.8, 0.1), (0.0, 0.1, 0.9))}, "row 0"),
        ({"transition_matrix": ((0.9, 0.1), (0.1, 0.9))}, "2 distinct strings"),
        ({"volatility": (0.01, -0.02, 0.01)}, "-0.02"),
        ({"drift": (0.0, 0.0)}, "(0.0, 0.0)"),
        ({"market_correlation": 1.5}, "1.5"),
        ({"seed": -1}, "was -1"),
        ({"symbols": 3, "symbol_names": ("A", "B")}, "('A', 'B')"),
        ({"bars_per_symbol": 10**9, "interval": timedelta(days=365)}, "year 9999"),
    ],
)
def test_invalid_configuration_is_refused_naming_the_value(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        MarketConfig(**fields)  # type: ignore[arg-type]
    assert named in str(raised.value)


def test_rates_that_carry_prices_out_of_float_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="float64 range"):
        generate_market(MarketConfig(symbols=1, bars_per_symbol=2_000, drift=(1.0, 1.0, 1.0)))


def test_csv_reads_back_as_the_same_frame_to_the_microsecond(tmp_path: Path) -> None:
    config = MarketConfig(
        symbols=3,
        bars_per_symbol=40,
        start=datetime(2021, 3, 4, 5, 6, 7, 891_011, tzinfo=UTC),
        interval=timedelta(seconds=1, microseconds=7),
    )
    frame = generate_market(config)
    path = tmp_path / "market.csv"
    write_market_csv(frame, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,symbol,open,high,low,close,volume,spread"
    assert lines[1].startswith("2021-03-04T05:06:07.891011Z,SYN000,")
    read = pd.read_csv(path)
    read["timestamp"] = pd.to_datetime(read["timestamp"], utc=True, format="ISO8601")
    pd.testing.assert_frame_equal(conform_bar_frame(read), frame, check_exact=True)
