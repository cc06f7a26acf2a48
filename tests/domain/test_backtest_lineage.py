"""Every closed trade names its signal, its entry and exit orders and their fills, and every order it names
is among the run's orders, whatever closed it: a decision, a contingent exit, the end of the data or
running out of money."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from neuraltrade.backtest import BacktestConfig, BacktestResult, BrokerEventKind, ExitReason, run_backtest
from neuraltrade.backtest.orders import managed_orders
from neuraltrade.records import CauseKind, Relation
from neuraltrade.trading.orders import client_order_id_for, order_id_for
from neuraltrade.trading.paper import PaperBroker
from neuraltrade.types import Bar, Fill, Order, OrderSide, OrderStatus, OrderType, TimeInForce
from tests.domain.backtest_support import history, market, scripted

RUN = uuid.UUID(int=42)


def run(prices, script, config=None, details=None) -> BacktestResult:  # type: ignore[no-untyped-def]
    config = config or BacktestConfig(cash=10_000.0, verify_causality=False)
    return run_backtest(market(prices), scripted(script, details), config, record_orders=True, run_id=RUN)


def assert_lineage_is_whole(result: BacktestResult) -> None:
    """Each trade's orders are among the run's orders, and its fills among the run's fills, with its figures."""
    orders = {managed.id: managed for managed in managed_orders(result)}
    fills = {fill.id: fill for fill in result.fills}
    signals = {decision.signal_id for decision in result.decisions}
    for trade in result.trades:
        assert trade.signal_id in signals
        assert trade.entry_order_id in orders and trade.exit_order_id in orders
        entry, exit = fills[trade.entry_fill_id], fills[trade.exit_fill_id]
        assert (entry.order_id, exit.order_id) == (trade.entry_order_id, trade.exit_order_id)
        assert (entry.price, exit.price) == (trade.entry_price, trade.exit_price)
        assert exit.quantity == abs(trade.size) and exit.timestamp == trade.exit_time
        assert orders[trade.entry_order_id].signal_id == trade.signal_id
    for fill in result.fills:
        assert fill.id == Fill.id_for(fill.order_id, fill.sequence)
        assert orders[fill.order_id].filled_quantity >= fill.quantity


def test_a_decision_names_its_entry_and_the_decision_that_closes_it_names_the_exit():
    result = run(history("A", [10, 10, 12, 12, 9, 9]), {"A": {0: 1, 2: -1}})
    first, second = (decision.signal_id for decision in result.decisions)
    (trade,) = result.trades
    entry = client_order_id_for(first, "entry")
    assert trade.signal_id == first
    assert trade.entry_order_id == order_id_for(entry)
    assert trade.exit_order_id == order_id_for(client_order_id_for(second, "close", entry))
    assert (trade.entry_fill_id, trade.exit_fill_id) == (
        Fill.id_for(trade.entry_order_id, 0),
        Fill.id_for(trade.exit_order_id, 0),
    )
    assert trade.tag is None  # the user's own label: nothing writes ids into it
    assert_lineage_is_whole(result)


@pytest.mark.parametrize(
    ("details", "reason", "order_type"),
    [
        ({"stop_loss": {0: 0.05}}, ExitReason.STOP_LOSS, OrderType.STOP),
        ({"take_profit": {0: 0.05}}, ExitReason.TAKE_PROFIT, OrderType.LIMIT),
        ({"trailing_stop": {0: 0.05}}, ExitReason.TRAILING_STOP, OrderType.STOP),
    ],
)
def test_a_contingent_exit_is_an_order_of_its_own_carrying_the_entrys_signal(details, reason, order_type):
    prices = history("A", [100, 100, 100, 100], highs=[100, 100, 106, 100], lows=[100, 100, 94, 100])
    result = run(prices, {"A": {0: 1}}, details={"A": details})
    (trade,) = result.trades
    assert trade.exit_reason is reason
    (decision,) = result.decisions
    purpose = {ExitReason.STOP_LOSS: "stop_loss", ExitReason.TAKE_PROFIT: "take_profit"}.get(reason, "trailing_stop")
    client = client_order_id_for(decision.signal_id, purpose, client_order_id_for(decision.signal_id, "entry"))
    assert trade.exit_order_id == order_id_for(client)
    exits = [event for event in result.events if event.order.order_id == trade.exit_order_id]
    assert [event.kind for event in exits] == [BrokerEventKind.PLACED, BrokerEventKind.FILLED]
    (managed,) = [managed for managed in managed_orders(result) if managed.id == trade.exit_order_id]
    assert managed.status is OrderStatus.FILLED and managed.signal_id == decision.signal_id
    assert managed.order.type is order_type
    assert_lineage_is_whole(result)


def test_closing_at_the_end_and_liquidating_are_orders_too():
    at_end = run(history("A", [10, 11, 12]), {"A": {0: 1}}, BacktestConfig(close_at_end=True, verify_causality=False))
    (trade,) = at_end.trades
    (decision,) = at_end.decisions
    entry = client_order_id_for(decision.signal_id, "entry")
    assert trade.exit_order_id == order_id_for(client_order_id_for(decision.signal_id, "close_at_end", entry))
    assert_lineage_is_whole(at_end)

    config = BacktestConfig(cash=10_000.0, margin=0.25, verify_causality=False)
    broke = run(history("A", [100, 100, 100, 60, 50, 40]), {"A": {0: 1}}, config)
    (trade,) = broke.trades
    (decision,) = broke.decisions
    entry = client_order_id_for(decision.signal_id, "entry")
    assert trade.exit_reason is ExitReason.OUT_OF_MONEY
    assert trade.exit_order_id == order_id_for(client_order_id_for(decision.signal_id, "liquidation", entry))
    assert_lineage_is_whole(broke)


def test_an_entry_filled_in_parts_opens_a_trade_per_fill_each_closed_by_an_order_of_its_own():
    config = BacktestConfig(cash=10_000.0, order_size=300, max_participation=0.1, verify_causality=False)
    prices = history("A", [10, 10, 11, 12, 13, 13, 13], volumes=[1000] * 7)
    result = run(prices, {"A": {0: 1, 3: 0}}, config)
    first, second = (decision.signal_id for decision in result.decisions)
    entry = client_order_id_for(first, "entry")
    trades = result.trades
    assert {trade.entry_order_id for trade in trades} == {order_id_for(entry)}
    assert len({trade.entry_fill_id for trade in trades}) == 3
    # The lot of the entry's first fill is closed by ("close", entry); the later lots by their fill number too.
    closes = {trade.exit_order_id for trade in trades}
    assert closes == {
        order_id_for(client_order_id_for(second, "close", entry)),
        order_id_for(client_order_id_for(second, "close", entry, 1, 0)),
        order_id_for(client_order_id_for(second, "close", entry, 2, 0)),
    }
    assert_lineage_is_whole(result)


def test_a_risk_rejection_names_the_decision_and_the_entry_it_refused():
    from neuraltrade.backtest.controls import risk_check
    from neuraltrade.trading.risk import RiskLimits, RiskManager

    result = run_backtest(
        market(history("A", [100.0] * 5)),
        scripted({"A": {1: 1}}),
        BacktestConfig(verify_causality=False),
        risk=risk_check(RiskManager(RiskLimits(max_order_notional=1_000.0))),
        run_id=RUN,
    )
    (rejection,) = result.rejections
    (decision,) = result.decisions
    assert rejection.signal_id == decision.signal_id
    assert rejection.client_order_id == client_order_id_for(decision.signal_id, "entry")


def test_signals_carry_the_decisions_ids_and_typed_links_to_their_observations():
    data = history("A", [10, 10, 12, 12, 9, 9])
    result = run(data, {"A": {0: 1, 2: -1}})
    signals = result.signals()
    assert [signal.id for signal in signals] == [decision.signal_id for decision in result.decisions]
    link = signals[0].causal_links[0]
    assert (link.cause_kind, link.relation) == (CauseKind.OBSERVATION, Relation.OBSERVED)
    assert link.cause_id == data.observation_id(result.decisions[0].symbol_bar)


def test_the_cli_rows_list_the_ids_as_text():
    (row,) = run(history("A", [10, 10, 12, 12]), {"A": {0: 1, 2: 0}}).trade_rows()
    (trade,) = run(history("A", [10, 10, 12, 12]), {"A": {0: 1, 2: 0}}).trades
    assert row["signal_id"] == str(trade.signal_id) and row["exit_fill_id"] == str(trade.exit_fill_id)
    assert {"entry_order_id", "exit_order_id", "entry_fill_id"} <= set(row)


def test_an_order_netting_against_trades_fills_once_per_trade_and_once_for_what_it_opens():
    data = history("A", [100, 100, 100, 100, 100])
    config = BacktestConfig(cash=10_000.0, commission=0.001, fixed_commission=1.0)
    paper = PaperBroker(["A"], config)
    moments = [datetime.fromtimestamp(int(stamp) / 1e6, UTC) for stamp in data.timestamps]

    def step(index: int) -> None:
        paper.on_bars(
            {"A": Bar(symbol="A", timestamp=moments[index], open=100.0, high=100.0, low=100.0, close=100.0, volume=1e9)}
        )

    def order(client_order_id: str, side: OrderSide, quantity: float) -> Order:
        return Order(
            id=order_id_for(client_order_id),
            client_order_id=client_order_id,
            symbol="A",
            side=side,
            type=OrderType.MARKET,
            quantity=quantity,
            time_in_force=TimeInForce.GTC,
        )

    step(0)
    paper.submit(order("buy-1", OrderSide.BUY, 5))
    step(1)
    paper.submit(order("buy-2", OrderSide.BUY, 5))
    step(2)
    signal = uuid.UUID(int=8)
    paper.submit(order("sell", OrderSide.SELL, 15), signal_id=signal)
    step(3)
    sells = [fill for fill in paper.fills if fill.order_id == order_id_for("sell")]
    # Two fills close the two long lots, the third opens the short; each paid its own fixed fee.
    assert [(fill.sequence, fill.quantity) for fill in sells] == [(0, 5.0), (1, 5.0), (2, 5.0)]
    assert all(fill.commission == pytest.approx(1.0 + 5 * 100 * 0.001) for fill in sells)
    assert [trade.exit_fill_id for trade in paper.closed_trades] == [sells[0].id, sells[1].id]
    assert paper.orders.get("sell").filled_quantity == 15 and paper.position("A") == -5
    (short,) = paper.broker.trades
    assert short.entry_fill_id == sells[2].id and short.signal_id == signal
