"""The risk manager and position sizers, plugged into the engine's decision step.

`risk_check` turns a `RiskManager` into the engine's pre-trade check, `sizer_for` a sizing
configuration into its sizer. Both read only what is known at the decision: the account marked at the
decision bar's close and the history up to that bar.
"""

from __future__ import annotations

from collections.abc import Sequence

from neuraltrade.backtest.engine import Account, OrderIntent, PreTradeCheck, Sizer
from neuraltrade.market.history import PriceHistory
from neuraltrade.trading.risk import OrderRequest, PortfolioState, RiskManager, RiskRejection
from neuraltrade.trading.sizing import CappedKelly, FixedFraction, VolatilityTarget, size_position
from neuraltrade.types import Direction

SizingConfig = FixedFraction | VolatilityTarget | CappedKelly


def risk_check(manager: RiskManager) -> PreTradeCheck:
    """Return a pre-trade check that asks `manager` and returns its rejections (empty: approved).

    The request carries the decision's signal id and its entry's client order id, so a rejection names both.
    """

    def check(intent: OrderIntent, units: float, account: Account) -> Sequence[RiskRejection]:
        # `units` is the position the order would leave; the request is the change that takes it there.
        change = units - account.positions.get(intent.symbol, 0.0)
        if change == 0:
            return ()
        request = OrderRequest(
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            quantity=change,
            price=intent.price,
            timestamp=account.timestamp,
            signal_id=intent.signal_id,
        )
        state = PortfolioState(
            timestamp=account.timestamp,
            equity=account.equity,
            positions=dict(account.positions),
            prices={symbol: price for symbol, price in account.prices.items() if price == price},
            day_start_equity=account.day_start_equity,
            peak_equity=account.peak_equity,
        )
        return manager.check(request, state).rejections

    return check


def sizer_for(config: SizingConfig) -> Sizer:
    """Return the engine sizer that sizes each entry by `config` (whole units unless it says otherwise)."""

    def size(intent: OrderIntent, history: PriceHistory, account: Account) -> float:
        direction = Direction.LONG if intent.direction > 0 else Direction.SHORT
        return size_position(
            config,
            equity=account.equity,
            closes=history.close,
            direction=direction,
            trade_returns=account.trade_returns,
        )

    return size
