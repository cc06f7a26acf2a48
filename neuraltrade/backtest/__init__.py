"""The backtester: an event-driven engine over one or many symbols with shared cash (docs/backtesting.md)."""

from neuraltrade.backtest.broker import OpenTrade, OrderEvent, OrderEventKind, SimulatedBroker, WorkingOrder
from neuraltrade.backtest.config import ALL_IN, BacktestConfig, SameBarExit
from neuraltrade.backtest.engine import Account, OrderIntent, run_backtest
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.result import BacktestResult, Decision
from neuraltrade.backtest.trade import ClosedTrade, ExitReason

__all__ = [
    "ALL_IN",
    "Account",
    "BacktestConfig",
    "BacktestResult",
    "ClosedTrade",
    "Decision",
    "ExitReason",
    "MarketData",
    "OpenTrade",
    "OrderEvent",
    "OrderEventKind",
    "OrderIntent",
    "SameBarExit",
    "SimulatedBroker",
    "WorkingOrder",
    "run_backtest",
]
