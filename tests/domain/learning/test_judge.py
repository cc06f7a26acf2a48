"""The judge: triple barriers on hand-built paths, costs, benchmarks, and verdicts that never read later bars."""

from __future__ import annotations

import dataclasses
import math
import uuid
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.backtest import BacktestConfig, ClosedTrade, run_backtest
from neuraltrade.canonical import stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.episodes import Episode, EpisodeConfig, episode_from_trade
from neuraltrade.learning.judge import JudgeConfig, Verdict, daily_volatility, judge
from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig
from neuraltrade.timestamps import from_microseconds
from tests.domain.backtest_support import history, market

ENTRY = 21  # the entry bar of every hand-built path; decided on bar 20
PREFIX_CLOSES = [100.0 if bar % 2 == 0 else 101.0 for bar in range(ENTRY)]


def path(bars: dict[int, tuple[float, float]] | None = None, closes: dict[int, float] | None = None) -> PriceHistory:
    """Bars alternating 100/101 before the entry, then quiet bars at 100 (high 101, low 99) from the entry bar
    on, with (high, low) and closes changed where given; 60 bars in all."""
    count = 60
    opens = PREFIX_CLOSES + [100.0] * (count - ENTRY)
    highs, lows, ends = list(opens), list(opens), list(opens)
    for bar in range(ENTRY, count):
        highs[bar], lows[bar] = 101.0, 99.0
    for bar, (high, low) in (bars or {}).items():
        highs[bar], lows[bar] = high, low
    for bar, close in (closes or {}).items():
        ends[bar] = close
        highs[bar], lows[bar] = max(highs[bar], close), min(lows[bar], close)
    return history("A", opens, highs, lows, ends)


def at(prices: PriceHistory, bar: int) -> datetime:
    return from_microseconds(int(prices.timestamps[bar]))


def a_trade(
    prices: PriceHistory, *, entry: int = ENTRY, exit_bar: int = 31, size: float = 10.0, commission: float = 0.0
):
    return ClosedTrade(
        symbol="A",
        entry_bar=entry,
        exit_bar=exit_bar,
        entry_time=at(prices, entry),
        exit_time=at(prices, exit_bar),
        size=size,
        entry_price=float(prices.open[entry]),
        exit_price=float(prices.close[exit_bar]),
        commission=commission,
        signal_id=None,
        entry_order_id=uuid.UUID(int=1),
        exit_order_id=uuid.UUID(int=2),
        entry_fill_id=uuid.UUID(int=3),
        exit_fill_id=uuid.UUID(int=4),
        decision_bar=entry - 1,
    )


def an_episode(
    prices: PriceHistory, size: float = 10.0, commission: float = 0.0, exit_bar: int = 31, **options: Any
) -> Episode:
    trade = a_trade(prices, exit_bar=exit_bar, size=size, commission=commission)
    episode = episode_from_trade(
        trade, prices, trade_id=uuid.UUID(int=9), run_id=None, strategy="s", strategy_id="s", **options
    )
    assert episode is not None
    return episode


SIGMA = float(np.std(np.diff(np.log(PREFIX_CLOSES[-21:])), ddof=1))
WIDTH = 2.0 * SIGMA * math.sqrt(10)  # the barriers' distance from the entry price of 100, as a fraction
UP, DOWN = 100 * (1 + WIDTH) + 1, 100 * (1 - WIDTH) - 1  # beyond the upper and lower barriers


def test_the_volatility_is_that_of_the_lookback_before_the_decision():
    prices = path()
    assert daily_volatility(prices, ENTRY - 1, 20) == pytest.approx(SIGMA)
    assert 0.02 < WIDTH < 0.1


def test_a_long_reaching_the_take_profit_first_succeeds_at_the_barrier_price():
    prices = path({24: (UP, 99.0), 27: (101.0, DOWN)})
    verdict = judge(an_episode(prices), prices)
    assert verdict is not None
    assert (verdict.barrier, verdict.barrier_bar, verdict.success) == ("take_profit", 24, True)
    assert verdict.barrier_return == pytest.approx(WIDTH)
    assert verdict.benchmark_return == pytest.approx(0.0)  # close[31] / 100 - 1
    assert verdict.score == pytest.approx(WIDTH)


def test_a_long_reaching_the_stop_first_fails():
    prices = path({24: (101.0, DOWN), 27: (UP, 99.0)})
    verdict = judge(an_episode(prices), prices)
    assert verdict is not None
    assert (verdict.barrier, verdict.barrier_bar, verdict.success) == ("stop_loss", 24, False)
    assert verdict.barrier_return == pytest.approx(-WIDTH)


def test_both_barriers_on_one_bar_count_as_the_stop():
    prices = path({25: (UP, DOWN)})
    for size in (10.0, -10.0):
        verdict = judge(an_episode(prices, size=size), prices)
        assert verdict is not None
        assert (verdict.barrier, verdict.barrier_bar, verdict.success) == ("stop_loss", 25, False)


@pytest.mark.parametrize(("close", "success"), [(101.0, True), (99.0, False)])
def test_with_no_barrier_reached_the_vertical_decides_by_the_sign_of_the_return(close: float, success: bool):
    prices = path(closes={31: close})
    verdict = judge(an_episode(prices), prices)
    assert verdict is not None
    assert (verdict.barrier, verdict.barrier_bar, verdict.success) == ("vertical", 31, success)
    assert verdict.barrier_return == pytest.approx(close / 100 - 1)


def test_a_short_is_the_mirror_image():
    down_first = path({24: (101.0, DOWN), 27: (UP, 99.0)})
    up_first = path({24: (UP, 99.0), 27: (101.0, DOWN)})
    win, loss = judge(an_episode(down_first, size=-10), down_first), judge(an_episode(up_first, size=-10), up_first)
    assert win is not None and loss is not None
    assert (win.barrier, win.success, win.barrier_return) == ("take_profit", True, pytest.approx(WIDTH))
    assert (loss.barrier, loss.success, loss.barrier_return) == ("stop_loss", False, pytest.approx(-WIDTH))
    falling = path(closes={31: 99.0})
    vertical = judge(an_episode(falling, size=-10), falling)
    assert vertical is not None and (vertical.barrier, vertical.success) == ("vertical", True)
    assert vertical.barrier_return == pytest.approx(0.01)


def test_costs_turn_a_small_vertical_win_into_a_failure():
    prices = path(closes={31: 101.0})
    # 20 in commission on a notional of 10 x 100: 2% of round-trip costs against a 1% move.
    costly = an_episode(prices, commission=20.0)
    assert costly.gross_return - costly.net_return == pytest.approx(0.02)
    verdict = judge(costly, prices)
    assert verdict is not None
    assert (verdict.barrier, verdict.success) == ("vertical", False)
    assert verdict.barrier_return == pytest.approx(0.01 - 0.02)


def test_the_benchmark_enters_the_score_and_cash_scores_the_barrier_return():
    prices = path(closes={31: 103.0})
    episode = an_episode(prices, size=-10)
    held = judge(episode, prices)
    cash = judge(episode, prices, JudgeConfig(benchmark="cash"))
    assert held is not None and cash is not None
    assert held.benchmark_return == pytest.approx(0.03) and cash.benchmark_return == 0
    assert held.score == pytest.approx(held.barrier_return - 0.03)
    assert cash.score == cash.barrier_return == held.barrier_return
    assert held.success is cash.success is False
    assert held.judge_digest != cash.judge_digest and held.id != cash.id


def test_without_history_before_the_decision_only_the_vertical_counts():
    opens = [100.0] * 40
    highs, lows, closes = list(opens), list(opens), list(opens)
    highs[3], closes[11] = 150.0, 102.0
    prices = history("A", opens, highs, lows, closes)
    episode = episode_from_trade(
        a_trade(prices, entry=1, exit_bar=5, size=1.0),
        prices,
        trade_id=uuid.UUID(int=5),
        run_id=None,
        strategy="s",
        strategy_id="s",
    )
    assert episode is not None
    verdict = judge(episode, prices)
    assert verdict is not None
    assert (verdict.barrier, verdict.barrier_bar, verdict.volatility) == ("vertical", 11, 0.0)
    assert verdict.success and verdict.barrier_return == pytest.approx(0.02)


def test_a_verdict_identifies_its_judge_is_known_with_its_episode_and_round_trips():
    prices = path({24: (UP, 99.0)})
    episode = an_episode(prices)
    config = JudgeConfig(horizon_bars=8, take_profit_width=1.5)
    verdict = judge(episode, prices, config)
    assert verdict is not None
    assert verdict.judge_digest == config.digest
    assert verdict.id == stable_id("verdict", episode.id, config.digest)
    assert verdict.known_at == episode.outcome_known_at
    assert Verdict.from_canonical(verdict.canonical_bytes()) == verdict
    assert judge(episode, prices, config) == verdict


def test_a_window_beyond_the_history_gives_no_verdict_and_a_longer_judge_than_episode_is_refused():
    prices = path()
    episode = an_episode(prices)
    assert judge(episode, prices.head(ENTRY + 10)) is None
    assert judge(episode, prices.head(ENTRY + 11)) is not None
    with pytest.raises(ConfigError, match="judge horizon_bars 11 exceeds"):
        judge(episode, prices, JudgeConfig(horizon_bars=11))
    short = an_episode(prices, exit_bar=ENTRY + 2, config=EpisodeConfig(horizon_bars=5))
    with pytest.raises(ConfigError, match="exceeds"):
        judge(short, prices)


def test_bad_configs_and_verdicts_are_refused_by_name():
    with pytest.raises(ConfigError, match="benchmark 'index'"):
        JudgeConfig(benchmark="index")
    with pytest.raises(ConfigError, match="stop_width"):
        JudgeConfig(stop_width=0)
    with pytest.raises(ConfigError, match="volatility_lookback"):
        JudgeConfig(volatility_lookback=1)
    prices = path()
    verdict = judge(an_episode(prices), prices)
    assert verdict is not None
    with pytest.raises(ValidationError, match="barrier 'wall'"):
        dataclasses.replace(verdict, barrier="wall")
    with pytest.raises(ValidationError, match="its id is"):
        dataclasses.replace(verdict, judge_digest="other")
    with pytest.raises(ValidationError, match="history of B"):
        judge(an_episode(prices), dataclasses.replace(prices, symbol="B"))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    side=st.sampled_from([1.0, -1.0]),
    horizon=st.integers(1, 10),
    scale=st.floats(0.2, 5.0),
)
def test_a_verdict_never_reads_a_bar_after_its_window(seed: int, side: float, horizon: int, scale: float):
    generator = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(generator.normal(0, 0.02, 60)))
    high = close * (1 + generator.uniform(0, 0.02, 60))
    low = close * (1 - generator.uniform(0, 0.02, 60))
    prices = history("A", close.tolist(), high.tolist(), low.tolist(), close.tolist())
    episode = an_episode(prices, size=side)
    config = JudgeConfig(horizon_bars=horizon)
    end = ENTRY + horizon + 1
    changed = history(
        "A",
        np.r_[close[:end], close[end:] * scale].tolist(),
        np.r_[high[:end], high[end:] * scale * 1.5].tolist(),
        np.r_[low[:end], low[end:] * scale / 1.5].tolist(),
        np.r_[close[:end], close[end:] * scale].tolist(),
    )
    assert judge(episode, changed, config) == judge(episode, prices, config)


def test_every_episode_of_a_real_run_gets_a_verdict_inside_its_window():
    generator = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(generator.normal(0, 0.02, 300)))
    high, low = close * 1.01, close * 0.99
    prices = history(
        "A",
        np.r_[100.0, close[:-1]].tolist(),
        np.maximum(high, np.r_[100.0, close[:-1]]).tolist(),
        np.minimum(low, np.r_[100.0, close[:-1]]).tolist(),
        close.tolist(),
    )
    result = run_backtest(market(prices), SmaCross(SmaCrossConfig(fast=5, slow=15)), BacktestConfig(commission=0.001))
    barriers = set()
    for number, trade in enumerate(result.trades):
        episode = episode_from_trade(
            trade, prices, trade_id=uuid.UUID(int=number), run_id=result.run_id, strategy="sma_cross", strategy_id="x"
        )
        if episode is None:
            continue
        verdict = judge(episode, prices)
        assert verdict is not None
        assert episode.entry_bar <= verdict.barrier_bar <= episode.entry_bar + 10 <= episode.window_end_bar
        assert verdict.known_at == episode.outcome_known_at >= episode.exit_time
        assert verdict.success == (verdict.barrier != "stop_loss" and verdict.barrier_return > 0)
        assert Verdict.from_canonical(verdict.canonical_bytes()) == verdict
        barriers.add(verdict.barrier)
    assert len(barriers) >= 2
