"""The backtester's fill rules, bar by bar, on markets small enough to check by hand."""

from __future__ import annotations

import math

import pytest

from neuraltrade.backtest import ALL_IN, BacktestConfig, BrokerEventKind, ExitReason, SameBarExit, run_backtest
from neuraltrade.errors import ConfigError, ValidationError
from tests.domain.backtest_support import history, market, scripted

PLAIN = BacktestConfig(cash=10_000.0, verify_causality=False)


def all_in(price: float, cash: float = 10_000.0, leverage: float = 1.0) -> int:
    """backtesting.py's all-in size: its fraction is 1 - epsilon, so 10,000 at 10 buys 999, not 1,000."""
    return math.floor(cash * leverage * ALL_IN / price)


def run(prices, script, config=PLAIN, details=None, valid_bars=None, record=True):
    data = market(prices) if not isinstance(prices, tuple) else market(*prices)
    strategy = scripted(script, details, valid_bars)
    return run_backtest(data, strategy, config, record_orders=record)


def test_a_decision_fills_at_the_next_bars_open_with_all_in_whole_units():
    result = run(history("A", [10, 11, 12, 13], closes=[10.5, 11.5, 12.5, 13.5]), {"A": {0: 1}})
    assert result.trades == ()
    (trade,) = result.open_trades
    assert trade.entry_bar == 1 and trade.entry_price == 11.0
    assert trade.size == all_in(11.0) == 909
    assert result.equity[-1] == pytest.approx(10_000 + trade.size * (13.5 - 11.0))


def test_all_in_sizing_pays_for_the_commission():
    config = BacktestConfig(cash=10_000.0, commission=0.01, verify_causality=False)
    result = run(history("A", [10, 10, 10]), {"A": {0: 1}}, config)
    (trade,) = result.open_trades
    assert trade.size == math.floor(10_000 / (10 * 1.01)) == 990


def test_trade_on_close_fills_at_the_decision_bars_close():
    config = BacktestConfig(cash=10_000.0, trade_on_close=True, verify_causality=False)
    result = run(history("A", [10, 11, 12, 13], closes=[10.5, 11.5, 12.5, 13.5]), {"A": {1: 1, 2: 0}}, config)
    (trade,) = result.trades
    assert (trade.entry_bar, trade.entry_price) == (1, 11.5)
    assert (trade.exit_bar, trade.exit_price) == (2, 12.5)


def test_commission_is_charged_at_entry_and_exit_and_never_folded_into_the_price():
    config = BacktestConfig(cash=10_000.0, commission=0.002, verify_causality=False)
    result = run(history("A", [100, 100, 110, 120, 120]), {"A": {0: 1, 2: 0}}, config)
    (trade,) = result.trades
    size = math.floor(10_000 / (100 * 1.002))
    assert (trade.entry_price, trade.exit_price, trade.size) == (100.0, 120.0, size)
    commission = size * 100 * 0.002 + size * 120 * 0.002
    assert trade.commission == pytest.approx(commission)
    assert trade.pnl == pytest.approx(size * 20 - commission)
    assert result.equity[-1] == pytest.approx(10_000 + trade.pnl)


def test_a_spread_moves_the_entry_price_against_the_trader():
    config = BacktestConfig(cash=10_000.0, spread=0.01, verify_causality=False)
    long = run(history("A", [100, 100, 100]), {"A": {0: 1}}, config).open_trades[0]
    short = run(history("A", [100, 100, 100]), {"A": {0: -1}}, config).open_trades[0]
    assert long.entry_price == pytest.approx(101.0) and short.entry_price == pytest.approx(99.0)


def test_a_reversal_closes_and_opens_at_the_same_fill_price():
    result = run(history("A", [10, 10, 12, 12, 9, 9]), {"A": {0: 1, 3: -1}})
    (closed,) = result.trades
    (short,) = result.open_trades
    assert closed.exit_bar == short.entry_bar == 4
    assert closed.exit_price == short.entry_price == 9.0
    assert short.size < 0


def test_a_decision_on_the_last_bar_never_fills():
    result = run(history("A", [10, 10, 10]), {"A": {2: 1}})
    assert result.trades == () and result.open_trades == ()
    kinds = [event.kind for event in result.events]
    assert kinds == [BrokerEventKind.PLACED, BrokerEventKind.EXPIRED]


def test_a_position_open_at_the_end_counts_in_equity_but_not_among_trades_unless_closed_at_end():
    prices = history("A", [10, 10, 12, 14], closes=[10, 11, 13, 15])
    kept = run(prices, {"A": {0: 1}})
    closed = run(prices, {"A": {0: 1}}, BacktestConfig(cash=10_000.0, close_at_end=True, verify_causality=False))
    assert kept.trades == () and kept.equity[-1] == pytest.approx(10_000 + all_in(10) * 5)
    (trade,) = closed.trades
    # backtesting.py's finalize_trades closes at the last bar's open.
    assert (trade.exit_bar, trade.exit_price, trade.exit_reason) == (3, 14.0, ExitReason.END)
    assert closed.equity[-1] == pytest.approx(10_000 + all_in(10) * 4)


def test_a_buy_limit_fills_at_the_better_of_open_and_limit_once_reached():
    prices = history(
        "A", [100, 100, 98, 97], highs=[100, 101, 99, 97], lows=[100, 99, 95, 90], closes=[100, 100, 97, 96]
    )
    # Limit 4% below the decision close of 100: 96. Bar 1's low 99 misses, bar 2's low 95 reaches it.
    result = run(prices, {"A": {0: 1}}, details={"A": {"entry_limit": {0: -0.04}}})
    (trade,) = result.open_trades
    assert (trade.entry_bar, trade.entry_price) == (2, 96.0)
    gapped = history("A", [100, 94, 94], highs=[100, 95, 95], lows=[100, 93, 93])
    (trade,) = run(gapped, {"A": {0: 1}}, details={"A": {"entry_limit": {0: -0.04}}}).open_trades
    assert trade.entry_price == 94.0  # opened below the limit: the open is better


def test_a_buy_stop_fills_at_the_worse_of_open_and_stop_once_reached():
    prices = history("A", [100, 100, 104, 110], highs=[100, 101, 106, 111], lows=[100, 99, 103, 109])
    (trade,) = run(prices, {"A": {0: 1}}, details={"A": {"entry_stop": {0: 0.05}}}).open_trades
    assert (trade.entry_bar, trade.entry_price) == (2, 105.0)
    gapped = history("A", [100, 108, 108], highs=[100, 109, 109], lows=[100, 107, 107])
    (trade,) = run(gapped, {"A": {0: 1}}, details={"A": {"entry_stop": {0: 0.05}}}).open_trades
    assert trade.entry_price == 108.0


def test_a_stop_limit_reached_on_its_trigger_bar_waits_and_then_fills_as_a_limit():
    # Stop 105 and limit 103 (limit below stop): on bar 1 both are touched; the limit is assumed to have been
    # needed before the stop, so the order waits and fills on bar 2, whose low reaches 103.
    prices = history("A", [100, 104, 104, 104], highs=[100, 106, 105, 105], lows=[100, 102, 102.5, 100])
    details = {"A": {"entry_stop": {0: 0.05}, "entry_limit": {0: 0.03}}}
    (trade,) = run(prices, {"A": {0: 1}}, details=details).open_trades
    assert (trade.entry_bar, trade.entry_price) == (2, 103.0)


def test_an_unfilled_entry_expires_after_its_valid_bars():
    prices = history("A", [100] * 6, highs=[100] * 6, lows=[99] * 6)
    result = run(prices, {"A": {0: 1}}, details={"A": {"entry_limit": {0: -0.05}}}, valid_bars=2)
    assert result.open_trades == ()
    expired = [event for event in result.events if event.kind is BrokerEventKind.EXPIRED]
    assert len(expired) == 1 and expired[0].bar == 3 and expired[0].reason == "time in force ended"


def test_a_stop_loss_exits_at_the_worse_of_open_and_level():
    prices = history("A", [100, 100, 99, 96, 90], highs=[100, 100, 100, 97, 91], lows=[100, 100, 97, 94, 89])
    result = run(prices, {"A": {0: 1}}, details={"A": {"stop_loss": {0: 0.05}}})
    (trade,) = result.trades
    assert (trade.exit_bar, trade.exit_price, trade.exit_reason) == (3, 95.0, ExitReason.STOP_LOSS)
    gapped = history("A", [100, 100, 90, 90], highs=[100, 100, 91, 91], lows=[100, 100, 89, 89])
    (trade,) = run(gapped, {"A": {0: 1}}, details={"A": {"stop_loss": {0: 0.05}}}).trades
    assert trade.exit_price == 90.0  # gapped through the stop: filled at the open


def test_a_take_profit_exits_at_the_better_of_open_and_level():
    prices = history("A", [100, 100, 104, 112], highs=[100, 100, 111, 113], lows=[100, 100, 103, 111])
    (trade,) = run(prices, {"A": {0: 1}}, details={"A": {"take_profit": {0: 0.10}}}).trades
    assert (trade.exit_bar, trade.exit_reason) == (2, ExitReason.TAKE_PROFIT)
    assert trade.exit_price == pytest.approx(110.0)


@pytest.mark.parametrize(
    ("rule", "reason", "price"),
    [
        (SameBarExit.STOP_LOSS_FIRST, ExitReason.STOP_LOSS, 95.0),
        (SameBarExit.TAKE_PROFIT_FIRST, ExitReason.TAKE_PROFIT, 110.0),
        # Open 101 lies nearer the stop (95) than the target (110) by 6 against 9: the stop.
        (SameBarExit.NEAREST_TO_OPEN, ExitReason.STOP_LOSS, 95.0),
    ],
)
def test_a_bar_reaching_both_stop_and_target_follows_the_configured_rule(rule, reason, price):
    prices = history("A", [100, 100, 101, 101], highs=[100, 100, 111, 101], lows=[100, 100, 94, 101])
    config = BacktestConfig(cash=10_000.0, same_bar_exit=rule, verify_causality=False)
    details = {"A": {"stop_loss": {0: 0.05}, "take_profit": {0: 0.10}}}
    (trade,) = run(prices, {"A": {0: 1}}, config, details=details).trades
    assert trade.exit_reason is reason and trade.exit_price == pytest.approx(price)


def test_nearest_to_open_takes_the_target_when_the_open_is_nearer_to_it():
    prices = history("A", [100, 100, 108, 108], highs=[100, 100, 111, 108], lows=[100, 100, 94, 108])
    config = BacktestConfig(cash=10_000.0, same_bar_exit="nearest_to_open", verify_causality=False)
    details = {"A": {"stop_loss": {0: 0.05}, "take_profit": {0: 0.10}}}
    (trade,) = run(prices, {"A": {0: 1}}, config, details=details).trades
    assert trade.exit_reason is ExitReason.TAKE_PROFIT


def test_a_trailing_stop_follows_the_close_up_and_never_down():
    closes = [100, 100, 110, 120, 115, 105]
    prices = history("A", [100, 100, 110, 120, 115, 105], closes=closes, lows=[100, 100, 109, 119, 114, 100])
    (trade,) = run(prices, {"A": {0: 1}}, details={"A": {"trailing_stop": {0: 0.10}}}).trades
    # Highest close 120 sets the level at 108, unchanged by the lower closes; bar 5's low 100 reaches it.
    assert (trade.exit_bar, trade.exit_reason) == (5, ExitReason.TRAILING_STOP)
    assert trade.exit_price == pytest.approx(105.0)  # the open was already below 108: filled at the open


def test_a_volume_cap_fills_an_order_over_several_bars():
    config = BacktestConfig(cash=10_000.0, order_size=300, max_participation=0.1, verify_causality=False)
    prices = history("A", [10, 10, 11, 12, 13], volumes=[1000, 1000, 1000, 1000, 1000])
    result = run(prices, {"A": {0: 1}}, config)
    assert [trade.entry_bar for trade in result.open_trades] == [1, 2, 3]
    assert [trade.size for trade in result.open_trades] == [100, 100, 100]
    kinds = [event.kind for event in result.events if event.kind is not BrokerEventKind.PLACED]
    assert kinds == [BrokerEventKind.PARTIALLY_FILLED, BrokerEventKind.PARTIALLY_FILLED, BrokerEventKind.FILLED]


def test_margin_lets_a_position_be_worth_a_multiple_of_equity():
    config = BacktestConfig(cash=10_000.0, margin=0.5, verify_causality=False)
    (trade,) = run(history("A", [10, 10, 10]), {"A": {0: -1}}, config).open_trades
    assert trade.size == -all_in(10, leverage=2.0) == -1999


def test_a_short_gains_when_the_price_falls():
    result = run(history("A", [100, 100, 80, 80]), {"A": {0: -1, 2: 0}})
    (trade,) = result.trades
    assert trade.size == -all_in(100) == -99 and trade.pnl == pytest.approx(99 * 20.0)
    assert trade.return_pct == pytest.approx(20.0)


def test_an_account_that_runs_out_of_money_is_liquidated_and_stays_at_zero():
    config = BacktestConfig(cash=10_000.0, margin=0.25, verify_causality=False)
    prices = history("A", [100, 100, 100, 60, 50, 40])
    result = run(prices, {"A": {0: 1}}, config, record=False)
    (trade,) = result.trades
    assert trade.exit_reason is ExitReason.OUT_OF_MONEY and trade.exit_bar == 3
    assert result.equity[3:].tolist() == [0.0, 0.0, 0.0]


def test_symbols_share_one_account():
    config = BacktestConfig(cash=10_000.0, order_size=0.5, verify_causality=False)
    result = run((history("A", [10, 10, 12]), history("B", [20, 20, 18])), {"A": {0: 1}, "B": {0: 1}}, config)
    units = {trade.symbol: trade.size for trade in result.open_trades}
    # A takes half the margin (500 units at 10); B then half of what is left (5,000 / 2 / 20 = 125).
    assert units == {"A": 500, "B": 125}
    assert result.equity[-1] == pytest.approx(10_000 + 500 * 2 - 125 * 2)


def test_a_symbol_missing_a_bar_fills_on_its_own_next_bar():
    a = history("A", [10, 11, 12, 13])
    b = history("B", [20, 22, 24], days=[0, 2, 3])
    result = run((a, b), {"B": {0: 1}})
    (trade,) = result.open_trades
    assert (trade.symbol, trade.entry_bar, trade.entry_price) == ("B", 2, 22.0)


def test_bad_configuration_names_the_value():
    with pytest.raises(ConfigError, match="commission"):
        BacktestConfig(commission=0.5)
    with pytest.raises(ConfigError, match="same_bar_exit 'sideways'"):
        BacktestConfig(same_bar_exit="sideways")
    with pytest.raises(ConfigError, match=r"order_size 2\.5"):
        BacktestConfig(order_size=2.5)


def test_a_signal_frame_with_a_bad_target_is_refused_with_its_bar():
    with pytest.raises(ValidationError, match=r"target at bar 1 is 2\.0"):
        run(history("A", [10, 10, 10]), {"A": {1: 2}})


def test_a_fixed_fee_is_paid_once_at_entry_however_many_parts_close_the_trade():
    config = BacktestConfig(
        cash=10_000.0, fixed_commission=5.0, order_size=300, max_participation=0.1, verify_causality=False
    )
    prices = history("A", [10, 10, 10, 10, 10, 10, 10, 10], volumes=[1000] * 8)
    result = run(prices, {"A": {0: 1}}, config)
    # Three entry fills (3 fees) and, once closed at the end, no other fee: equity fell by 15.
    assert len(result.open_trades) == 3
    assert result.equity[-1] == pytest.approx(10_000 - 15)
    closing = run(prices, {"A": {0: 1, 3: 0}}, config)
    # Three lots, each closed in one or more parts: entry fees 3 x 5, one exit fee per fill.
    fills = [event for event in closing.events if event.kind.value in ("filled", "partially_filled")]
    assert sum(trade.commission for trade in closing.trades) == pytest.approx(5.0 * len(fills))
    assert closing.equity[-1] == pytest.approx(10_000 + sum(trade.pnl for trade in closing.trades))


def test_a_sizers_units_below_one_are_units_not_a_margin_fraction():
    from neuraltrade.backtest.controls import sizer_for
    from neuraltrade.trading.sizing import FixedFraction

    data = market(history("A", [50_000.0] * 5))
    config = BacktestConfig(cash=10_000.0, fractional=True, verify_causality=False)
    result = run_backtest(
        data, scripted({"A": {1: 1}}), config, sizer=sizer_for(FixedFraction(fraction=0.5, fractional=True))
    )
    (trade,) = result.open_trades
    assert trade.size == pytest.approx(0.1)  # half of 10,000 at 50,000
