"""The backtester: an event-driven engine over one or many symbols with shared cash (docs/backtesting.md).

Names are loaded on first use (PEP 562), so that a command reading only `neuraltrade.backtest.config`
(a default, a config) does not pay for the engine's imports of numpy and pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuraltrade.backtest.book import BrokerEvent, BrokerEventKind, OpenTrade, WorkingOrder
    from neuraltrade.backtest.broker import SimulatedBroker
    from neuraltrade.backtest.config import ALL_IN, BacktestConfig, SameBarExit
    from neuraltrade.backtest.engine import Account, OrderIntent, run_backtest
    from neuraltrade.backtest.market import MarketData
    from neuraltrade.backtest.result import BacktestResult, Decision
    from neuraltrade.backtest.trade import ClosedTrade, ExitReason

#: Public name -> the module that defines it.
_HOMES = {
    "BrokerEvent": "book",
    "BrokerEventKind": "book",
    "OpenTrade": "book",
    "WorkingOrder": "book",
    "SimulatedBroker": "broker",
    "ALL_IN": "config",
    "BacktestConfig": "config",
    "SameBarExit": "config",
    "Account": "engine",
    "OrderIntent": "engine",
    "run_backtest": "engine",
    "MarketData": "market",
    "BacktestResult": "result",
    "Decision": "result",
    "ClosedTrade": "trade",
    "ExitReason": "trade",
}

__all__ = [
    "ALL_IN",
    "Account",
    "BacktestConfig",
    "BacktestResult",
    "BrokerEvent",
    "BrokerEventKind",
    "ClosedTrade",
    "Decision",
    "ExitReason",
    "MarketData",
    "OpenTrade",
    "OrderIntent",
    "SameBarExit",
    "SimulatedBroker",
    "WorkingOrder",
    "run_backtest",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
