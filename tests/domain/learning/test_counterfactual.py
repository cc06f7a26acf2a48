"""Counterfactuals of closed trades (`neuraltrade.learning.counterfactual`): replayed by the backtest engine itself."""

from __future__ import annotations

import dataclasses
import math
import uuid

import numpy as np
import pytest

from neuraltrade.backtest import BacktestConfig, ClosedTrade, ExitReason, MarketData, run_backtest
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.counterfactual import (
    Alternative,
    Counterfactual,
    CounterfactualConfig,
    replay_trade,
    simulate_counterfactuals,
    summarise_counterfactuals,
)
from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.mean_reversion import MeanReversion, MeanReversionConfig
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig
from tests.domain.backtest_support import history, market, scripted

COSTLY = BacktestConfig(commission=0.001, spread=0.0005)
RUN = uuid.UUID(int=7)


def walk(count: int, seed: int, symbol: str = "SYN", days: list[int] | None = None) -> PriceHistory:
    """A random walk with opens, highs and lows apart from the closes (so that stops can fire inside a bar)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal(count)))
    opens = np.concatenate(([100.0], close[:-1])) * (1.0 + 0.002 * rng.standard_normal(count))
    highs = np.maximum(opens, close) * (1.0 + 0.005 * rng.random(count))
    lows = np.minimum(opens, close) * (1.0 - 0.005 * rng.random(count))
    return history(symbol, opens.tolist(), highs.tolist(), lows.tolist(), close.tolist(), days=days)


def sma_trades(config: BacktestConfig, count: int = 600, seed: int = 1) -> tuple[PriceHistory, tuple[ClosedTrade, ...]]:
    bars = walk(count, seed)
    result = run_backtest(market(bars), SmaCross(SmaCrossConfig(fast=3, slow=8)), config)
    return bars, result.trades


def stop_trades(config: BacktestConfig = COSTLY) -> tuple[PriceHistory, tuple[ClosedTrade, ...]]:
    bars = walk(600, 2)
    strategy = MeanReversion(MeanReversionConfig(lookback=10, entry_z=1.5, stop_loss=0.01))
    return bars, run_backtest(market(bars), strategy, config).trades


def counterfactuals(
    trade: ClosedTrade, bars: PriceHistory, config: BacktestConfig, **options: int | float
) -> dict[str, Counterfactual]:
    items = simulate_counterfactuals(
        trade,
        bars,
        config,
        trade_id=uuid.uuid5(RUN, str(trade.entry_time)),
        run_id=RUN,
        config=CounterfactualConfig(**options),  # type: ignore[arg-type]
    )
    return {item.alternative: item for item in items}


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


# --- same engine --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [COSTLY, BacktestConfig(commission=0.002, fixed_commission=1.5, trade_on_close=True)],
    ids=["next_open", "trade_on_close"],
)
def test_replaying_the_action_taken_reproduces_every_signal_exit_of_a_real_backtest(config: BacktestConfig) -> None:
    bars, trades = sma_trades(config)
    assert len(trades) > 50 and {trade.exit_reason for trade in trades} == {ExitReason.SIGNAL}
    for trade in trades:
        replay = replay_trade(trade, bars, config)
        assert relative(replay.pnl, trade.pnl) <= 1e-9
        assert replay.exit_reason is ExitReason.SIGNAL
        assert replay.exit_price == trade.exit_price


def test_replaying_a_stopped_out_trade_lets_the_engine_stop_it_on_the_same_bar_at_the_same_price() -> None:
    bars, trades = stop_trades()
    stopped = [trade for trade in trades if trade.exit_reason is ExitReason.STOP_LOSS]
    assert len(stopped) > 20 and len(stopped) < len(trades)
    times = bars.timestamps.tolist()
    for trade in trades:
        replay = replay_trade(trade, bars, COSTLY)
        assert relative(replay.pnl, trade.pnl) <= 1e-9
        assert replay.exit_reason is trade.exit_reason
        assert times[replay.exit_bar] == int(trade.exit_time.timestamp() * 1_000_000)


def test_a_trade_of_a_multi_symbol_run_is_mapped_onto_its_own_symbols_bars_by_time() -> None:
    first = walk(400, 3, "AAA")
    second = walk(300, 4, "BBB", days=list(range(0, 600, 2)))  # every other day: its own bars are not the timeline's
    result = run_backtest(MarketData.from_histories([first, second]), SmaCross(SmaCrossConfig(fast=3, slow=8)), COSTLY)
    trades = [trade for trade in result.trades if trade.symbol == "BBB"]
    assert trades and any(trade.entry_bar >= len(second) for trade in trades)
    for trade in trades:
        assert relative(replay_trade(trade, second, COSTLY).pnl, trade.pnl) <= 1e-9
    with pytest.raises(ValidationError, match="AAA"):
        replay_trade(trades[0], first, COSTLY)


# --- the alternatives ---------------------------------------------------------------------------------------


def test_every_trade_gets_seven_alternatives_with_exactly_one_of_the_two_stop_alternatives() -> None:
    bars, trades = stop_trades()
    for trade in trades[:30]:
        items = counterfactuals(trade, bars, COSTLY)
        expected = {item.value for item in Alternative} - {
            "with_stop" if trade.stop_loss is not None else "without_stop"
        }
        assert set(items) == expected
        assert len({item.id for item in items.values()}) == 7
        for item in items.values():
            assert item.trade_id == uuid.uuid5(RUN, str(trade.entry_time)) and item.run_id == RUN
            assert item.regret == pytest.approx(item.alternative_pnl - item.actual_pnl, abs=1e-9)
            assert item.actual_pnl == trade.pnl
            assert item.actual_return == pytest.approx(trade.return_pct / 100, rel=1e-12)
            assert item.entry_bar <= item.exit_bar < len(bars)


def test_no_trade_regrets_minus_the_actual_pnl() -> None:
    bars, trades = sma_trades(COSTLY)
    for trade in trades[:20]:
        item = counterfactuals(trade, bars, COSTLY)["no_trade"]
        assert item.regret == -trade.pnl and item.alternative_pnl == 0.0


def test_the_opposite_side_without_costs_makes_minus_the_actual_gross() -> None:
    free = BacktestConfig()
    bars, trades = sma_trades(free)
    for trade in trades[:20]:
        item = counterfactuals(trade, bars, free)["opposite_side"]
        gross = trade.size * (trade.exit_price - trade.entry_price)
        assert item.alternative_pnl == pytest.approx(-gross, rel=1e-9, abs=1e-9)
        assert item.detail.startswith("short instead of long" if trade.size > 0 else "long instead of short")


def test_double_size_regrets_the_actual_pnl_and_half_size_minus_half_of_it_less_the_fixed_commission() -> None:
    fixed = 2.0
    config = dataclasses.replace(COSTLY, fixed_commission=fixed)
    bars, trades = sma_trades(config)
    for trade in trades[:20]:
        items = counterfactuals(trade, bars, config)
        # Relative costs scale with the units; the fixed fee of the two fills does not.
        assert items["double_size"].regret == pytest.approx(trade.pnl + 2 * fixed, rel=1e-9)
        assert items["half_size"].regret == pytest.approx(-(trade.pnl + 2 * fixed) / 2, rel=1e-9)


def trend(count: int = 60, step: float = 0.01) -> PriceHistory:
    closes = 100.0 * np.exp(step * np.arange(count))
    return history("UP", [100.0, *closes[:-1].tolist()], closes=closes.tolist())


def scripted_trade(
    bars: PriceHistory, script: dict[int, float], config: BacktestConfig = COSTLY, **details: dict[int, float]
) -> ClosedTrade:
    strategy = scripted({bars.symbol: script}, {bars.symbol: details} if details else None)
    trades = run_backtest(market(bars), strategy, config).trades
    assert len(trades) == 1
    return trades[0]


def test_on_a_rising_path_exiting_a_long_later_is_better_and_earlier_worse() -> None:
    bars = trend()
    trade = scripted_trade(bars, {10: 1.0, 30: 0.0})
    items = counterfactuals(trade, bars, COSTLY, exit_offset_bars=4)
    later, earlier = items["exit_later"], items["exit_earlier"]
    assert later.regret > 0 > earlier.regret
    assert (later.entry_bar, later.exit_bar) == (11, 35) and (earlier.entry_bar, earlier.exit_bar) == (11, 27)
    assert later.detail == f"exit 4 bars later at {bars.open[35]:.6g}"
    assert earlier.detail == f"exit 4 bars earlier at {bars.open[27]:.6g}"
    assert items["opposite_side"].regret < 0 < items["no_trade"].regret + 2 * trade.pnl


def test_an_exit_moved_beyond_the_history_or_before_the_entry_is_clipped_and_says_so() -> None:
    bars = trend(40)
    trade = scripted_trade(bars, {30: 1.0, 37: 0.0})
    items = counterfactuals(trade, bars, COSTLY, exit_offset_bars=5)
    assert items["exit_later"].exit_bar == len(bars) - 1
    assert items["exit_later"].detail.endswith("(clipped at the history's end)")
    assert items["exit_earlier"].exit_bar == 33
    assert items["exit_earlier"].detail.startswith("exit 5 bars earlier")
    items = counterfactuals(trade, bars, COSTLY, exit_offset_bars=10)
    assert items["exit_earlier"].exit_bar == 32 and items["exit_earlier"].detail.endswith("(clipped at the entry)")


def test_without_the_stop_a_long_stopped_out_before_a_recovery_is_held_past_it_and_does_better() -> None:
    closes = [100.0] * 10 + [99.0, 95.0, 97.0, 100.0, 103.0, 106.0, 108.0, 110.0, 111.0, 112.0]
    bars = history("VEE", [100.0, *closes[:-1]], closes=closes)
    trade = scripted_trade(bars, {9: 1.0}, stop_loss={9: 0.03})
    assert trade.exit_reason is ExitReason.STOP_LOSS and trade.exit_bar == 11
    items = counterfactuals(trade, bars, COSTLY, exit_offset_bars=3)
    assert "with_stop" not in items
    without = items["without_stop"]
    assert without.regret > 0 and without.exit_bar == 14
    assert without.detail == f"without the 3% stop, held 3 bars past it, exit at {bars.open[14]:.6g}"
    # Exit later drops the stop that fired (kept, it would fire on the same bar again).
    assert items["exit_later"].exit_bar == 14 and items["exit_later"].regret == pytest.approx(without.regret)


def test_with_a_volatility_stop_a_long_held_through_a_crash_is_stopped_out_and_loses_less() -> None:
    rng = np.random.default_rng(5)
    calm = 100.0 * np.exp(np.cumsum(0.005 * rng.standard_normal(30)))
    closes = np.concatenate((calm, calm[-1] * np.exp(-0.03 * np.arange(1, 11))))
    bars = history("CRASH", [100.0, *closes[:-1].tolist()], closes=closes.tolist())
    trade = scripted_trade(bars, {29: 1.0, 38: 0.0})
    assert trade.stop_loss is None and trade.pnl < 0
    items = counterfactuals(trade, bars, COSTLY, stop_width=1.0, volatility_lookback=20)
    added = items["with_stop"]
    assert "without_stop" not in items and added.regret > 0 and added.exit_bar < 39
    assert "by stop loss" in added.detail and added.detail.startswith("with a ")
    # The stop's width: 1 σ√h, σ the sample deviation of the 20 log returns up to the decision bar.
    sigma = float(np.std(np.diff(np.log(closes[9:30])), ddof=1))
    assert f"{100 * sigma * math.sqrt(9):.3g}% stop" in added.detail


def test_a_second_simulation_gives_the_same_records_and_another_config_other_ids() -> None:
    bars, trades = sma_trades(COSTLY, count=200)
    first = counterfactuals(trades[0], bars, COSTLY)
    assert first == counterfactuals(trades[0], bars, COSTLY)
    other = counterfactuals(trades[0], bars, COSTLY, exit_offset_bars=2)
    assert {item.id for item in first.values()}.isdisjoint(item.id for item in other.values())
    assert first["no_trade"].id == Counterfactual.id_for(
        first["no_trade"].trade_id, "no_trade", CounterfactualConfig().digest
    )


# --- summary ------------------------------------------------------------------------------------------------


def test_the_summary_has_one_row_per_alternative_in_a_fixed_order_with_counts_and_shares() -> None:
    bars, trades = stop_trades()
    items = [item for trade in trades[:25] for item in counterfactuals(trade, bars, COSTLY).values()]
    rows = summarise_counterfactuals(list(reversed(items)))
    order = [item.value for item in Alternative]
    assert [row["alternative"] for row in rows] == sorted({item.alternative for item in items}, key=order.index)
    for row in rows:
        regrets = [item.regret for item in items if item.alternative == row["alternative"]]
        assert row["trades"] == len(regrets)
        assert row["total_regret"] == pytest.approx(sum(regrets))
        assert row["mean_regret"] == pytest.approx(sum(regrets) / len(regrets))
        assert row["better_share"] == sum(regret > 0 for regret in regrets) / len(regrets)
    assert rows[0]["alternative"] == "no_trade" and rows[0]["trades"] == 25
    with_stop = {row["alternative"]: row["trades"] for row in rows}
    assert with_stop.get("with_stop", 0) + with_stop.get("without_stop", 0) == 25
    assert summarise_counterfactuals([]) == []


# --- records and configuration ------------------------------------------------------------------------------


def test_a_counterfactual_round_trips_through_its_canonical_form() -> None:
    bars, trades = sma_trades(COSTLY, count=200)
    items = simulate_counterfactuals(trades[0], bars, COSTLY, trade_id=uuid.uuid4(), run_id=None)
    for item in items:
        assert Counterfactual.from_canonical(item.canonical_bytes()) == item


def test_a_counterfactual_refuses_a_wrong_id_an_unknown_alternative_and_a_non_finite_number() -> None:
    bars, trades = sma_trades(COSTLY, count=200)
    item = simulate_counterfactuals(trades[0], bars, COSTLY, trade_id=uuid.uuid4(), run_id=None)[1]
    with pytest.raises(ValidationError, match="stable id"):
        dataclasses.replace(item, id=uuid.uuid4())
    with pytest.raises(ValidationError, match="'sideways'"):
        dataclasses.replace(item, alternative="sideways")
    with pytest.raises(ValidationError, match="regret"):
        dataclasses.replace(item, regret=math.nan)
    with pytest.raises(ValidationError, match="exit_bar"):
        dataclasses.replace(item, exit_bar=item.entry_bar - 1)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"exit_offset_bars": 0}, "exit_offset_bars"),
        ({"exit_offset_bars": 1.5}, "exit_offset_bars"),
        ({"stop_width": 0.0}, "stop_width"),
        ({"stop_width": math.inf}, "stop_width"),
        ({"volatility_lookback": 1}, "volatility_lookback"),
    ],
)
def test_the_config_refuses_values_out_of_range_naming_them(options: dict[str, float], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        CounterfactualConfig(**options)  # type: ignore[arg-type]


def test_the_config_digest_follows_its_values() -> None:
    assert CounterfactualConfig().digest == CounterfactualConfig(stop_width=2).digest
    assert CounterfactualConfig().digest != CounterfactualConfig(exit_offset_bars=4).digest
