"""The paper broker fills as the backtester does, and backtest orders become lifecycle records."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from neuraltrade.backtest import BacktestConfig, ExitReason, run_backtest
from neuraltrade.backtest.controls import risk_check, sizer_for
from neuraltrade.backtest.orders import managed_orders
from neuraltrade.errors import InvalidOrder, ValidationError
from neuraltrade.trading.orders import client_order_id_for, order_id_for
from neuraltrade.trading.paper import PaperBroker
from neuraltrade.trading.risk import RiskLimits, RiskManager
from neuraltrade.trading.sizing import FixedFraction
from neuraltrade.types import Bar, Order, OrderSide, OrderStatus, OrderType, TimeInForce
from tests.domain.backtest_support import history, market, scripted


def bars_of(data, index):
    moment = datetime.fromtimestamp(int(data.timestamps[index]) / 1e6, UTC)
    return {
        data.symbol: Bar(
            symbol=data.symbol,
            timestamp=moment,
            open=float(data.open[index]),
            high=float(data.high[index]),
            low=float(data.low[index]),
            close=float(data.close[index]),
            volume=float(data.volume[index]),
        )
    }


def order(client_order_id, side, quantity, kind=OrderType.MARKET, limit=None, stop=None):
    return Order(
        id=order_id_for(client_order_id),
        client_order_id=client_order_id,
        symbol="A",
        side=side,
        type=kind,
        quantity=quantity,
        limit_price=limit,
        stop_price=stop,
        time_in_force=TimeInForce.GTC,
    )


def test_the_paper_broker_fills_a_market_order_at_the_next_open_like_a_backtest():
    data = history("A", [100, 101, 103, 104], closes=[100.5, 102, 103.5, 105])
    config = BacktestConfig(cash=10_000.0, commission=0.001, order_size=50, verify_causality=False)
    paper = PaperBroker(["A"], config)
    paper.on_bars(bars_of(data, 0))
    placed = paper.submit(order("buy-1", OrderSide.BUY, 50))
    assert placed.status is OrderStatus.ACCEPTED
    changed = paper.on_bars(bars_of(data, 1))
    assert [managed.status for managed in changed] == [OrderStatus.FILLED]
    assert changed[0].average_fill_price == 101.0
    paper.submit(order("sell-1", OrderSide.SELL, 50))
    paper.on_bars(bars_of(data, 2))
    paper.on_bars(bars_of(data, 3))

    backtest = run_backtest(market(data), scripted({"A": {0: 1, 1: 0}}), config)
    # The same fills; the trades differ only in their lineage (the backtest's name its decisions).
    lineage = ("signal_id", "entry_order_id", "exit_order_id", "entry_fill_id", "exit_fill_id", "decision_bar")
    blank = dict.fromkeys(lineage)
    assert [trade._replace(**blank) for trade in paper.closed_trades] == [
        trade._replace(**blank) for trade in backtest.trades
    ]
    assert paper.cash == pytest.approx(backtest.equity[-1])
    (trade,) = paper.closed_trades
    assert (trade.entry_order_id, trade.exit_order_id) == (order_id_for("buy-1"), order_id_for("sell-1"))
    assert [fill.id for fill in paper.fills] == [trade.entry_fill_id, trade.exit_fill_id]
    assert [fill.order_id for fill in paper.fills] == [order_id_for("buy-1"), order_id_for("sell-1")]
    assert trade.signal_id is None


def test_paper_trades_carry_the_signal_and_their_exits_are_orders():
    data = history("A", [100, 101, 103, 104], lows=[99, 100, 95, 103])
    paper = PaperBroker(["A"])
    paper.on_bars(bars_of(data, 0))
    signal = uuid.UUID(int=11)
    paper.submit(order("buy-1", OrderSide.BUY, 10), signal_id=signal, stop_loss=96.0)
    paper.on_bars(bars_of(data, 1))
    changed = paper.on_bars(bars_of(data, 2))  # the low of 95 reaches the stop
    (trade,) = paper.closed_trades
    assert trade.exit_reason is ExitReason.STOP_LOSS and trade.signal_id == signal
    stop_id = client_order_id_for(signal, "stop_loss", "buy-1")
    assert [managed.client_order_id for managed in changed] == [stop_id]
    (stop,) = changed
    assert stop.status is OrderStatus.FILLED and stop.signal_id == signal and stop.order.type is OrderType.STOP
    assert trade.exit_order_id == stop.id == order_id_for(stop_id)
    assert paper.fills[-1].id == trade.exit_fill_id and paper.fills[-1].price == 96.0


def test_a_resubmitted_order_is_the_same_order():
    data = history("A", [100, 101])
    paper = PaperBroker(["A"])
    paper.on_bars(bars_of(data, 0))
    first = paper.submit(order("buy-1", OrderSide.BUY, 10))
    again = paper.submit(order("buy-1", OrderSide.BUY, 10))
    assert again == first and len(paper.broker.orders) == 1


def test_a_limit_order_waits_for_its_price_and_can_be_cancelled():
    data = history("A", [100, 100, 100], lows=[99, 99, 99])
    paper = PaperBroker(["A"])
    paper.on_bars(bars_of(data, 0))
    paper.submit(order("buy-low", OrderSide.BUY, 10, OrderType.LIMIT, limit=95.0))
    assert paper.on_bars(bars_of(data, 1)) == []
    cancelled = paper.cancel("buy-low")
    assert cancelled.status is OrderStatus.CANCELLED
    assert paper.on_bars(bars_of(data, 2)) == [] and paper.position("A") == 0


def test_the_paper_broker_refuses_bars_out_of_order_and_unknown_symbols():
    data = history("A", [100, 101])
    paper = PaperBroker(["A"])
    paper.on_bars(bars_of(data, 1))
    with pytest.raises(ValidationError, match="is not after"):
        paper.on_bars(bars_of(data, 0))
    with pytest.raises(InvalidOrder, match="does not trade 'B'"):
        paper.submit(
            Order(
                id=order_id_for("b"),
                client_order_id="b",
                symbol="B",
                side=OrderSide.BUY,
                type=OrderType.MARKET,
                quantity=1,
                time_in_force=TimeInForce.GTC,
            )
        )


def test_every_backtest_order_becomes_a_lifecycle_record_with_its_fills():
    data = history("A", [10, 10, 12, 12, 9, 9, 9])
    run_id = uuid.UUID(int=7)
    result = run_backtest(market(data), scripted({"A": {0: 1, 3: -1, 6: 1}}), record_orders=True, run_id=run_id)
    orders = managed_orders(result)
    statuses = sorted(managed.status.value for managed in orders)
    # Entry long, its close and the short entry fill; the close and entry decided on the last bar expire.
    assert statuses == ["expired", "expired", "filled", "filled", "filled"]
    filled = [managed for managed in orders if managed.status is OrderStatus.FILLED]
    assert all(managed.filled_quantity == managed.order.quantity for managed in filled)
    (long_trade,) = result.trades
    (short_trade,) = result.open_trades
    assert sorted(managed.filled_quantity for managed in filled) == sorted(
        [long_trade.size, long_trade.size, -short_trade.size]
    )
    # Each order carries the ids its decision derived: the entry from its signal, the close from the decision
    # that closed the trade and the entry it closes.
    signals = [decision.signal_id for decision in result.decisions]
    entry = client_order_id_for(signals[0], "entry")
    assert [(managed.client_order_id, managed.signal_id) for managed in orders] == [
        (entry, signals[0]),
        (client_order_id_for(signals[1], "close", entry), signals[1]),
        (client_order_id_for(signals[1], "entry"), signals[1]),
        (client_order_id_for(signals[2], "close", client_order_id_for(signals[1], "entry")), signals[2]),
        (client_order_id_for(signals[2], "entry"), signals[2]),
    ]
    assert long_trade.signal_id == signals[0]
    assert (long_trade.entry_order_id, long_trade.exit_order_id) == (orders[0].id, orders[1].id)
    # Every fill is one manager fill of its order, at the fill's price.
    fills = [(fill.order_id, fill.quantity, fill.price) for fill in result.fills]
    assert fills == [
        (managed.id, event.fill_quantity, event.fill_price)
        for managed in orders
        for event in managed.events
        if event.fill_quantity
    ]
    # The same run converts to the same ids: a re-run stores nothing new.
    assert [managed.client_order_id for managed in managed_orders(result)] == [
        managed.client_order_id for managed in orders
    ]


def test_risk_rejections_are_kept_with_their_reason_and_nothing_is_ordered():
    data = history("A", [100.0] * 10)
    limits = RiskLimits(max_order_notional=1_000.0)
    result = run_backtest(
        market(data),
        scripted({"A": {1: 1}}),
        BacktestConfig(verify_causality=False),
        risk=risk_check(RiskManager(limits)),
        record_orders=True,
    )
    assert result.trades == () and result.open_trades == ()
    (rejection,) = result.rejections
    assert rejection.rule == "max_order_notional" and "1,000.00" in rejection.reason
    (decision,) = result.decisions
    assert rejection.signal_id == decision.signal_id
    assert rejection.client_order_id == client_order_id_for(decision.signal_id, "entry")


def test_a_sizer_decides_the_units_of_each_entry():
    data = history("A", [100.0] * 10)
    result = run_backtest(
        market(data),
        scripted({"A": {1: 1}}),
        BacktestConfig(verify_causality=False),
        sizer=sizer_for(FixedFraction(fraction=0.25)),
    )
    (trade,) = result.open_trades
    assert trade.size == 25 and np.isclose(result.equity[-1], 10_000.0)


def test_client_order_ids_are_deterministic():
    signal = uuid.UUID(int=3)
    first = client_order_id_for(signal, "entry")
    assert first == client_order_id_for(signal, "entry") and len(first) == 32
    assert first != client_order_id_for(signal, "close", first) != client_order_id_for(uuid.UUID(int=4), "entry")


def test_a_refused_reversal_still_closes_the_position_it_was_leaving():
    # The halt refuses new risk once equity is 20% below its peak; the exit half of the decision still runs.
    data = history("A", [100, 100, 70, 70, 70, 70])
    limits = RiskLimits(max_drawdown_halt_pct=0.2)
    result = run_backtest(
        market(data),
        scripted({"A": {0: 1, 3: -1}}),
        BacktestConfig(verify_causality=False),
        risk=risk_check(RiskManager(limits)),
        record_orders=True,
    )
    (closed,) = result.trades
    assert closed.exit_bar == 4 and result.open_trades == ()
    (rejection,) = result.rejections
    assert rejection.rule == "max_drawdown_halt_pct"


def test_an_order_the_broker_refuses_leaves_no_order_behind():
    paper = PaperBroker(["A"])
    paper.on_bars(bars_of(history("A", [100, 101]), 0))
    with pytest.raises(InvalidOrder, match="not a whole number"):
        paper.submit(order("half", OrderSide.BUY, 0.5))
    assert "half" not in paper.orders
    daily = dataclasses.replace(order("daily", OrderSide.BUY, 1), time_in_force=TimeInForce.DAY)
    with pytest.raises(InvalidOrder, match="is day"):
        paper.submit(daily)
    assert "daily" not in paper.orders


def test_a_sell_beyond_the_margin_fills_the_part_that_closes_the_long():
    data = history("A", [100, 100, 100, 100])
    paper = PaperBroker(["A"], BacktestConfig(cash=1_000.0))
    paper.on_bars(bars_of(data, 0))
    paper.submit(order("buy", OrderSide.BUY, 5))
    paper.on_bars(bars_of(data, 1))
    paper.submit(order("sell", OrderSide.SELL, 30))
    (changed,) = paper.on_bars(bars_of(data, 2))
    # 5 close the long; the 25-unit short would need 2,500 of margin: refused, and the 5 stay filled.
    assert changed.status is OrderStatus.CANCELLED and changed.filled_quantity == 5
    assert paper.position("A") == 0
