"""Paper trading: orders filled against bars as they arrive, by exactly the rules of the backtester.

`PaperBroker` takes bars one at a time, as a live feed delivers them, and fills orders by exactly the
rules of the backtester (it drives the same `SimulatedBroker`); every order goes through the
`OrderManager`'s lifecycle, so paper orders and backtest orders (`neuraltrade.backtest.orders`) are
stored alike. Closed trades carry the signal given with their entry, their orders' ids and their fills'.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from neuraltrade.backtest.book import BrokerEventKind, WorkingOrder
from neuraltrade.backtest.broker import SimulatedBroker
from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.identity import OrderName
from neuraltrade.backtest.orders import ReplayClock, apply_event
from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.errors import InvalidOrder, ValidationError
from neuraltrade.trading.orders import ManagedOrder, OrderManager
from neuraltrade.types import Bar, Fill, Order, OrderSide, TimeInForce


@dataclass(eq=False)
class _LiveMarket:
    """A market that grows by one bar at a time, read by the simulated broker like a backtest's."""

    symbols: tuple[str, ...]
    lists: dict[str, list[list[float]]] = field(init=False)
    datetimes: list[datetime] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        names = ("open", "high", "low", "close", "volume", "valuation")
        self.lists = {name: [[] for _ in self.symbols] for name in names}

    def append(self, bars: Mapping[str, Bar]) -> int:
        moments = {bar.timestamp for bar in bars.values()}
        if len(moments) != 1:
            raise ValidationError(f"one step of the feed must hold bars of one moment, was {sorted(moments)}")
        (moment,) = moments
        if self.datetimes and moment <= self.datetimes[-1]:
            raise ValidationError(f"bar time {moment.isoformat()} is not after {self.datetimes[-1].isoformat()}")
        unknown = sorted(set(bars) - set(self.symbols))
        if unknown:
            raise ValidationError(f"the paper broker trades {list(self.symbols)}, was given bars of {unknown}")
        for row, symbol in enumerate(self.symbols):
            bar = bars.get(symbol)
            values = (bar.open, bar.high, bar.low, bar.close, bar.volume) if bar else (math.nan,) * 5
            for name, value in zip(("open", "high", "low", "close", "volume"), values, strict=True):
                self.lists[name][row].append(value)
            previous = self.lists["valuation"][row][-1] if self.datetimes else math.nan
            self.lists["valuation"][row].append(bar.close if bar else previous)
        self.datetimes.append(moment)
        return len(self.datetimes) - 1


class PaperBroker:
    """Fills orders against bars as they arrive, by the backtester's rules, through the order lifecycle.

    Orders placed after the bar at index i fill from bar i+1 (its open for a market order), exactly as a
    backtest decision on bar i would. An order is taken as given: a sell against a long position closes
    it, oldest trade first (netting, as backtesting.py without hedging), so the configuration's
    exclusive-orders switch does not apply here.
    """

    def __init__(self, symbols: Iterable[str], config: BacktestConfig | None = None) -> None:
        self.config = replace(config or BacktestConfig(), exclusive_orders=False)
        self.market = _LiveMarket(tuple(symbols))
        self.broker = SimulatedBroker(self.config, self.market)  # type: ignore[arg-type]
        start = datetime(1970, 1, 1, tzinfo=UTC)
        self._clock = ReplayClock(start)
        self.orders = OrderManager(self._clock)
        self._seen_events = 0

    @property
    def cash(self) -> float:
        """Cash after realised profits and commissions."""
        return self.broker.cash

    @property
    def closed_trades(self) -> list[ClosedTrade]:
        """Trades closed so far."""
        return self.broker.closed_trades()

    @property
    def fills(self) -> list[Fill]:
        """Every fill so far, in the order they happened."""
        return self.broker.fill_records()

    def position(self, symbol: str) -> float:
        """Signed units of `symbol` held."""
        return self.broker.position(symbol)

    def equity(self) -> float:
        """Cash plus open trades at the last close."""
        return self.broker.equity(len(self.market.datetimes) - 1) if self.market.datetimes else self.broker.cash

    def submit(
        self,
        order: Order,
        *,
        signal_id: uuid.UUID | None = None,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
    ) -> ManagedOrder:
        """Accept `order` (idempotently, by client order id) and work it from the next bar.

        `signal_id` names the decision the order carries out (None for an order placed by hand); its trades
        and its exits (`stop_loss`, `take_profit` as prices, `trailing_stop` as a distance) carry it.
        """
        if order.client_order_id in self.orders:
            return self.orders.submit(order, signal_id=signal_id)
        if order.symbol not in self.market.symbols:
            raise InvalidOrder(f"order {order.client_order_id!r}: the paper broker does not trade {order.symbol!r}")
        if not self.market.datetimes:
            raise InvalidOrder(f"order {order.client_order_id!r} came before the first bar; nothing to fill it at")
        if order.time_in_force is not TimeInForce.GTC:
            raise InvalidOrder(
                f"order {order.client_order_id!r} is {order.time_in_force.value}; the paper broker works orders until "
                "filled or cancelled (gtc) and does not simulate day, ioc or fok orders"
            )
        sign = 1.0 if order.side is OrderSide.BUY else -1.0
        working = WorkingOrder(
            order.symbol,
            self.market.symbols.index(order.symbol),
            sign * order.quantity,
            len(self.market.datetimes) - 1,
            limit=order.limit_price,
            stop=order.stop_price,
            stop_loss=stop_loss,
            take_profit=take_profit,
            trailing_distance=trailing_stop,
            name=OrderName.given(order.client_order_id, signal_id),
            units=order.quantity,
        )
        # The broker checks the order first: one it refuses must not be left in the lifecycle as new.
        self.broker.submit(working)
        self._clock.moment = self.market.datetimes[-1]
        self.orders.submit(order, signal_id=signal_id)
        self.orders.accept(order.client_order_id, "accepted by the paper broker")
        self._seen_events = len(self.broker.events)
        return self.orders.get(order.client_order_id)

    def cancel(self, client_order_id: str, reason: str = "cancelled by the trader") -> ManagedOrder:
        """Stop working an order that has not filled completely."""
        for working in list(self.broker.orders):
            if working.client_order_id == client_order_id:
                self.broker.orders.remove(working)
        return self.orders.cancel(client_order_id, reason)

    def on_bars(self, bars: Mapping[str, Bar]) -> list[ManagedOrder]:
        """Fill what this moment's bars reach; return the orders that changed."""
        bar = self.market.append(bars)
        self._clock.moment = self.market.datetimes[bar]
        self.broker.process(bar)
        self.broker.trail(bar)
        changed: dict[str, ManagedOrder] = {}
        for event in self.broker.events[self._seen_events :]:
            if event.kind is BrokerEventKind.PLACED and event.order.client_order_id in self.orders:
                continue  # placed by `submit`, which entered it already
            # The broker's own orders (contingent exits) enter the lifecycle as they are placed.
            updated = apply_event(self.orders, event)
            if updated is not None:
                changed[updated.client_order_id] = updated
        self._seen_events = len(self.broker.events)
        return list(changed.values())
