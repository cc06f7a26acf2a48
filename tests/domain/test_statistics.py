"""Behaviour of the backtest statistics: `neuraltrade.backtest.statistics`.

The golden cases in data/statistics_golden.json are runs of backtesting.py 0.6.6, the release matched;
regenerate them with ``.venv/bin/python bench/golden_statistics.py`` and review the diff.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.backtest.statistics import Statistics, compute_statistics
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.canonical import parse_timestamp
from neuraltrade.errors import ValidationError

GOLDEN = json.loads((Path(__file__).parent / "data" / "statistics_golden.json").read_text())
DAY_US = 86_400_000_000
START_US = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z, a Wednesday
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Ids of a trade's signal, orders and fills: statistics read none of them.
LINEAGE: dict[str, Any] = {
    "signal_id": None,
    **{name: uuid.UUID(int=number) for number, name in enumerate(("entry_order_id", "exit_order_id"), 1)},
    **{name: uuid.UUID(int=number) for number, name in enumerate(("entry_fill_id", "exit_fill_id"), 3)},
}


def _moment(microseconds: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(microseconds))


def _golden_trade(row: dict[str, Any]) -> ClosedTrade:
    return ClosedTrade(
        **{**row, "entry_time": parse_timestamp(row["entry_time"]), "exit_time": parse_timestamp(row["exit_time"])},
        **LINEAGE,
    )


def _golden_value(value: Any) -> Any:
    if value is None:
        return math.nan
    if value in ("inf", "-inf"):
        return float(value)
    return value


def _daily(bars: int) -> np.ndarray:
    return START_US + DAY_US * np.arange(bars, dtype=np.int64)


def _trade(timestamps: np.ndarray, prices: np.ndarray, entry: int, exit: int, size: float = 10.0) -> ClosedTrade:
    return ClosedTrade(
        symbol="TEST",
        entry_bar=entry,
        exit_bar=exit,
        entry_time=_moment(timestamps[entry]),
        exit_time=_moment(timestamps[exit]),
        size=size,
        entry_price=float(prices[entry]),
        exit_price=float(prices[exit]),
        commission=0.5,
        **LINEAGE,
    )


def _statistics(equity: np.ndarray, trades: list[ClosedTrade] | None = None, **options: Any) -> Statistics:
    timestamps = options.pop("timestamps", _daily(len(equity)))
    prices = options.pop("prices", np.linspace(10.0, 20.0, len(equity)))
    return compute_statistics(equity=equity, timestamps=timestamps, trades=trades or [], prices=prices, **options)


def _golden_statistics(case: dict[str, Any]) -> Any:
    """Our statistics of a golden case's run."""
    return compute_statistics(
        equity=np.array(case["equity"]),
        timestamps=np.array(case["timestamps"], dtype=np.int64),
        trades=[_golden_trade(row) for row in case["trades"]],
        prices=np.array(case["prices"]),
        warmup_bars=case["warmup_bars"],
    )


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[case["name"] for case in GOLDEN["cases"]])
def test_every_statistic_equals_backtesting_py_on_its_own_runs(case: dict[str, Any]) -> None:
    statistics = _golden_statistics(case)
    computed = statistics.to_dict()
    assert set(case["expected"]) == set(computed)
    assert computed["start"] == case["expected"]["start"] and computed["end"] == case["expected"]["end"]
    for name, value in case["expected"].items():
        if name in ("start", "end"):
            continue
        expected, actual = _golden_value(value), getattr(statistics, name)
        if math.isnan(expected):
            assert math.isnan(actual), f"{name}: {actual} where backtesting.py has NaN"
        else:
            assert actual == pytest.approx(expected, rel=1e-9, abs=0), name


def test_the_golden_runs_are_of_the_matched_release() -> None:
    assert GOLDEN["backtesting_version"] == "0.6.6"


@pytest.mark.parametrize("case", GOLDEN["cases"][:4], ids=[case["name"] for case in GOLDEN["cases"][:4]])
def test_cagr_counts_calendar_years_so_it_agrees_with_the_annualised_return(case: dict[str, Any]) -> None:
    statistics = _golden_statistics(case)
    growth = statistics.equity_final / case["equity"][0]
    assert statistics.cagr_pct == pytest.approx((growth ** (365.25 / statistics.duration_days) - 1) * 100)
    # 252 trading days a year compound the daily returns; calendar years compound the whole run: the two
    # rates differ by the calendar's irregularity only (0.6.5 divided calendar days by 252: 30 % apart).
    assert statistics.cagr_pct == pytest.approx(statistics.return_ann_pct, rel=0.01)


def test_the_annualised_return_compounds_the_mean_of_the_day_returns_that_exist() -> None:
    statistics = _statistics(np.array([100.0, 110.0, 121.0]))  # Wednesday to Friday: 252 trading days a year
    # two returns of 10 %; the first day has none and does not count as a zero return
    assert statistics.return_ann_pct == pytest.approx((1.1**252 - 1) * 100)
    assert math.isnan(statistics.calmar) and statistics.sortino == math.inf  # no drawdown, no losing day


def test_a_run_within_one_day_has_no_day_return_and_no_annualised_figures() -> None:
    hourly = START_US + 3_600_000_000 * np.arange(12, dtype=np.int64)
    statistics = _statistics(np.linspace(100.0, 90.0, 12), timestamps=hourly)
    for name in ("return_ann_pct", "volatility_ann_pct", "sharpe", "sortino", "calmar"):
        assert math.isnan(getattr(statistics, name)), name
    assert statistics.cagr_pct == pytest.approx((0.9 ** (365.25 * 24 / 11) - 1) * 100)


def test_returns_after_the_equity_reached_zero_are_missing_not_zero() -> None:
    statistics = _statistics(np.array([100.0, 110.0, 0.0, 0.0, 0.0, 0.0]))  # a weekend inside: 365 days a year
    variance = np.var([0.1, -1.0], ddof=1)  # the returns 0 / 0 after the second day are left out
    assert statistics.return_ann_pct == 0.0  # a total loss makes the geometric mean 0, as in backtesting.py
    assert statistics.volatility_ann_pct == pytest.approx(math.sqrt((variance + 1) ** 365 - 1) * 100)
    assert statistics.sharpe == 0.0 and statistics.sortino == 0.0


def test_a_run_without_trades_has_no_trade_figures_and_no_commissions() -> None:
    case = next(case for case in GOLDEN["cases"] if case["name"] == "nvda_no_trades")
    statistics = _statistics(np.full(len(case["equity"]), 10_000.0), prices=np.array(case["prices"]))
    assert statistics.trades == 0 and statistics.commissions == 0.0 and statistics.exposure_pct == 0.0
    for name in ("win_rate_pct", "best_trade_pct", "avg_trade_pct", "profit_factor", "sqn", "kelly"):
        assert math.isnan(getattr(statistics, name)), name
    assert math.isnan(statistics.max_trade_duration_days) and math.isnan(statistics.avg_drawdown_duration_days)
    assert statistics.return_pct == 0.0 and statistics.max_drawdown_pct == 0.0 and statistics.beta == 0.0


def test_a_single_bar_gives_a_zero_length_run_with_undefined_ratios() -> None:
    statistics = _statistics(np.array([10_000.0]), prices=np.array([5.0]))
    assert statistics.start == statistics.end == _moment(START_US)
    assert statistics.duration_days == 0.0 and statistics.return_pct == 0.0 and statistics.buy_hold_return_pct == 0.0
    assert math.isnan(statistics.cagr_pct) and math.isnan(statistics.beta) and math.isnan(statistics.sharpe)
    assert math.isnan(statistics.var_95_pct) and math.isnan(statistics.volatility_ann_pct)


def test_constant_equity_has_no_drawdown_volatility_or_tail_loss() -> None:
    statistics = _statistics(np.full(300, 5_000.0))
    assert statistics.max_drawdown_pct == 0.0 and math.isnan(statistics.avg_drawdown_pct)
    assert statistics.volatility_ann_pct == 0.0 and math.isnan(statistics.sharpe)
    assert statistics.var_95_pct == 0.0 and statistics.cvar_95_pct == 0.0 and statistics.return_ann_pct == 0.0


def test_a_drawdown_spans_from_one_equity_high_to_the_next() -> None:
    equity = np.array([100.0, 110.0, 99.0, 88.0, 105.0, 120.0, 114.0, 126.0, 130.0])
    statistics = _statistics(equity)
    assert statistics.max_drawdown_pct == pytest.approx(20.0)  # 110 -> 88
    assert statistics.avg_drawdown_pct == pytest.approx((20.0 + 5.0) / 2)  # 120 -> 114 is the other one
    assert statistics.max_drawdown_duration_days == 4.0  # from bar 1 to the new high at bar 5
    assert statistics.avg_drawdown_duration_days == 3.0  # (4 + 2) / 2


def test_position_bars_define_the_exposure_so_an_open_position_counts() -> None:
    timestamps, prices = _daily(10), np.linspace(10.0, 19.0, 10)
    equity = np.linspace(1_000.0, 1_090.0, 10)
    closed = [_trade(timestamps, prices, 1, 3)]
    assert _statistics(equity, closed, prices=prices).exposure_pct == 30.0
    held = np.zeros(10, dtype=bool)
    held[1:4] = held[6:] = True  # the second position is still open at the end
    assert _statistics(equity, closed, prices=prices, position_bars=held).exposure_pct == 70.0


def test_overlapping_trades_count_each_exposed_bar_once() -> None:
    timestamps, prices = _daily(10), np.linspace(10.0, 19.0, 10)
    trades = [_trade(timestamps, prices, 0, 4), _trade(timestamps, prices, 2, 5), _trade(timestamps, prices, 8, 8)]
    assert _statistics(np.full(10, 100.0), trades, prices=prices).exposure_pct == 70.0


def test_buy_and_hold_of_several_symbols_is_the_equal_weight_mean_from_first_to_last_close() -> None:
    nan = math.nan
    prices = np.array(
        [
            [10.0, nan, 7.0],
            [11.0, 20.0, 7.0],
            [12.0, 25.0, nan],
            [15.0, 30.0, nan],
        ]
    )
    statistics = _statistics(np.full(4, 100.0), prices=prices)
    assert statistics.buy_hold_return_pct == pytest.approx((50.0 + 50.0 + 0.0) / 3)
    after_warmup = _statistics(np.full(4, 100.0), prices=prices, warmup_bars=1)
    assert after_warmup.buy_hold_return_pct == pytest.approx((400 / 11 + 50.0 + 0.0) / 3)
    # the third symbol has no close after a warm-up of two bars: it could not be bought
    assert _statistics(np.full(4, 100.0), prices=prices, warmup_bars=2).buy_hold_return_pct == pytest.approx(
        (25.0 + 20.0) / 2
    )


def test_a_run_of_a_single_symbol_given_as_a_column_equals_the_same_run_given_flat() -> None:
    case = GOLDEN["cases"][0]
    options = {
        "equity": np.array(case["equity"]),
        "timestamps": np.array(case["timestamps"], dtype=np.int64),
        "trades": [_golden_trade(row) for row in case["trades"]],
        "warmup_bars": case["warmup_bars"],
    }
    flat = compute_statistics(prices=np.array(case["prices"]), **options)
    column = compute_statistics(prices=np.array(case["prices"])[:, None], **options)
    assert flat.to_dict() == column.to_dict()


def test_a_risk_free_rate_lowers_sharpe_and_sortino() -> None:
    equity = 1_000.0 * np.cumprod(1 + np.random.default_rng(3).normal(0.001, 0.01, 400))
    plain, with_rate = _statistics(equity), _statistics(equity, risk_free_rate=0.05)
    assert with_rate.sharpe < plain.sharpe and with_rate.sortino < plain.sortino
    assert with_rate.return_ann_pct == plain.return_ann_pct


def test_to_dict_is_json_ready_with_undefined_figures_as_null() -> None:
    plain = _statistics(np.linspace(100.0, 200.0, 50)).to_dict()  # no losing day: Sortino is infinite
    assert plain["sortino"] is None and plain["avg_drawdown_pct"] is None
    assert plain["start"] == "2020-01-01T00:00:00.000000Z" and plain["trades"] == 0
    json.dumps(plain, allow_nan=False)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"equity": np.array([100.0, math.nan, 100.0])}, "nan at bar 1"),
        ({"equity": np.array([0.0, 1.0, 1.0])}, "start positive"),
        ({"equity": np.array([], dtype=float)}, "non-empty"),
        ({"timestamps": _daily(4)}, "one per equity bar"),
        ({"timestamps": _daily(3)[::-1].copy()}, "bar 1"),
        ({"prices": np.ones(4)}, "shape (3,)"),
        ({"prices": np.array([1.0, -2.0, 1.0])}, "-2.0 at bar 1"),
        ({"risk_free_rate": 1.0}, "risk_free_rate"),
        ({"position_bars": np.ones(3)}, "position_bars"),
        ({"warmup_bars": 3}, "warmup_bars"),
    ],
)
def test_impossible_inputs_are_refused_naming_the_value(options: dict[str, Any], named: str) -> None:
    arguments: dict[str, Any] = {
        "equity": np.array([100.0, 101.0, 102.0]),
        "timestamps": _daily(3),
        "trades": [],
        "prices": np.array([1.0, 2.0, 3.0]),
        **options,
    }
    with pytest.raises(ValidationError, match=named.replace("(", r"\(").replace(")", r"\)")):
        compute_statistics(**arguments)


@pytest.mark.parametrize(
    "change",
    [
        {"exit_bar": 8},
        {"entry_bar": 3, "exit_bar": 2},
        {"size": 0.0},
        {"entry_price": math.nan},
        {"exit_price": -1.0},
        {"commission": math.inf},
    ],
)
def test_an_impossible_trade_is_refused_naming_it(change: dict[str, Any]) -> None:
    timestamps, prices = _daily(5), np.linspace(1.0, 2.0, 5)
    trade = _trade(timestamps, prices, 1, 2)
    broken = trade._replace(**change)
    with pytest.raises(ValidationError, match=f"trade of TEST from bar {broken.entry_bar} to {broken.exit_bar}"):
        compute_statistics(equity=np.ones(5), timestamps=timestamps, trades=[trade, broken], prices=prices)


@st.composite
def _runs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[ClosedTrade]]:
    bars = draw(st.integers(min_value=2, max_value=80))
    factors = draw(st.lists(st.floats(0.5, 1.5), min_size=bars - 1, max_size=bars - 1))
    equity = 1_000.0 * np.cumprod([1.0, *factors])
    prices = 10.0 * np.cumprod([1.0, *draw(st.lists(st.floats(0.8, 1.2), min_size=bars - 1, max_size=bars - 1))])
    timestamps = _daily(bars)
    spans = draw(st.lists(st.tuples(st.integers(0, bars - 1), st.integers(0, bars - 1)), max_size=12))
    sizes = draw(st.lists(st.sampled_from([-3.0, 1.0, 7.5]), min_size=len(spans), max_size=len(spans)))
    trades = [
        _trade(timestamps, prices, min(first, second), max(first, second), size)
        for (first, second), size in zip(spans, sizes, strict=True)
    ]
    return equity, prices, trades


@settings(max_examples=150, deadline=None)
@given(_runs())
def test_statistics_stay_within_their_ranges_and_agree_with_the_trades(
    run: tuple[np.ndarray, np.ndarray, list[ClosedTrade]],
) -> None:
    equity, prices, trades = run
    statistics = _statistics(equity, trades, prices=prices)
    assert 0.0 <= statistics.max_drawdown_pct <= 100.0
    assert math.isnan(statistics.avg_drawdown_pct) or statistics.avg_drawdown_pct <= statistics.max_drawdown_pct
    assert 0.0 <= statistics.exposure_pct <= 100.0
    assert statistics.equity_peak >= max(statistics.equity_final, equity[0])
    assert statistics.return_pct == pytest.approx((equity[-1] / equity[0] - 1) * 100)
    assert statistics.cvar_95_pct >= statistics.var_95_pct - 1e-9
    assert statistics.trades == len(trades)
    assert statistics.commissions == pytest.approx(0.5 * len(trades))
    if trades:
        winners = sum(trade.pnl > 0 for trade in trades)
        assert statistics.win_rate_pct == pytest.approx(100 * winners / len(trades))
        returns = [trade.return_pct for trade in trades]
        assert statistics.best_trade_pct == pytest.approx(max(returns))
        assert statistics.worst_trade_pct == pytest.approx(min(returns))
        assert min(returns) - 1e-9 <= statistics.expectancy_pct <= max(returns) + 1e-9
        assert statistics.max_trade_duration_days == max(trade.duration for trade in trades) / 86_400
    json.dumps(statistics.to_dict(), allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(1.0, 1.3), min_size=1, max_size=60))
def test_equity_that_never_falls_has_no_drawdown(factors: list[float]) -> None:
    equity = 500.0 * np.cumprod([1.0, *factors])
    statistics = _statistics(equity)
    assert statistics.max_drawdown_pct == 0.0 and statistics.calmar != statistics.calmar  # NaN: no drawdown
    assert math.isnan(statistics.avg_drawdown_pct) and math.isnan(statistics.max_drawdown_duration_days)
    assert statistics.var_95_pct <= 0.0  # the 5 % worst bar still gained (or kept) money
