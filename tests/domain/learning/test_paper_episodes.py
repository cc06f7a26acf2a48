"""A paper trade becomes an episode as a backtest trade does: same builder, same judge, same critique."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from neuraltrade.backtest import BacktestConfig
from neuraltrade.learning.episodes import episode_from_trade
from neuraltrade.learning.judge import judge
from neuraltrade.learning.reflexion import ReflexionEngine
from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.indicators import bar_frame
from neuraltrade.trading.orders import order_id_for
from neuraltrade.trading.paper import PaperBroker
from neuraltrade.types import Bar, Order, OrderSide, OrderType, TimeInForce
from tests.domain.strategy_support import real_history


def _bars(data: PriceHistory, index: int) -> dict[str, Bar]:
    return {
        data.symbol: Bar(
            symbol=data.symbol,
            timestamp=datetime.fromtimestamp(int(data.timestamps[index]) / 1e6, UTC),
            open=float(data.open[index]),
            high=float(data.high[index]),
            low=float(data.low[index]),
            close=float(data.close[index]),
            volume=float(data.volume[index]),
        )
    }


def _order(client_order_id: str, side: OrderSide, quantity: float) -> Order:
    return Order(
        id=order_id_for(client_order_id),
        client_order_id=client_order_id,
        symbol="NVDA",
        side=side,
        type=OrderType.MARKET,
        quantity=quantity,
        time_in_force=TimeInForce.GTC,
    )


def test_a_closed_paper_trade_is_an_episode_known_once_its_window_has_closed() -> None:
    data = real_history("NVDA").head(200)
    paper = PaperBroker(["NVDA"], BacktestConfig(cash=100_000.0, commission=0.001, verify_causality=False))
    for index in range(60):
        paper.on_bars(_bars(data, index))
        if index == 40:
            paper.submit(_order("paper-buy", OrderSide.BUY, 100))
        if index == 45:
            paper.submit(_order("paper-sell", OrderSide.SELL, 100))
    [trade] = paper.closed_trades
    arguments = {"trade_id": uuid.UUID(int=1), "run_id": None, "strategy": "manual", "strategy_id": "manual-0"}

    # Known only once the fixed horizon after the entry has passed: not on the bars seen so far ...
    assert episode_from_trade(trade, data.head(50), **arguments) is None
    # ... but on the history that goes past it.
    episode = episode_from_trade(trade, data, **arguments)
    assert episode is not None and episode.run_id is None
    assert episode.outcome_known_at >= trade.exit_time and episode.net_return == trade.return_pct / 100
    verdict = judge(episode, data)
    assert verdict is not None and verdict.known_at == episode.outcome_known_at
    critique = ReflexionEngine().critique(episode, verdict, data)
    assert "NVDA" in critique.text and critique.episode_id == episode.id
    assert len(bar_frame(data)) == 200
