"""Closed trades: what a backtest or the paper broker reports once a position, or part of it, is closed."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, NamedTuple

from neuraltrade.canonical import format_timestamp


class ExitReason(enum.Enum):
    """Why a trade was closed."""

    SIGNAL = "signal"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    END = "end"
    OUT_OF_MONEY = "out_of_money"


class ClosedTrade(NamedTuple):
    """One closed trade (or closed part of one), defined as backtesting.py 0.6 defines its trades.

    Immutable and compared by value; a named tuple rather than a dataclass because a sweep builds
    thousands of them per second (a third of the cost).

    `size` is signed (negative for a short). `entry_price` includes the spread, never the commission;
    `commission` is what was paid at entry and exit together; `pnl` is ``size * (exit - entry) -
    commission``; `return_pct` is ``sign(size) * (exit / entry - 1) - commission / (|size| * entry)``, in
    percent. `entry_bar` and `exit_bar` index the run's common timeline; `decision_bar` is the bar whose
    decision opened the trade (its signal), None for a trade opened by a direct order.
    """

    symbol: str
    entry_bar: int
    exit_bar: int
    entry_time: datetime
    exit_time: datetime
    size: float
    entry_price: float
    exit_price: float
    commission: float
    exit_reason: ExitReason = ExitReason.SIGNAL
    stop_loss: float | None = None
    take_profit: float | None = None
    tag: str | None = None
    decision_bar: int | None = None

    @property
    def pnl(self) -> float:
        """Profit (positive) or loss in cash, after both commissions."""
        return self.size * (self.exit_price - self.entry_price) - self.commission

    @property
    def return_pct(self) -> float:
        """Return in percent of the entry notional, after both commissions."""
        sign = 1.0 if self.size > 0 else -1.0
        gross = sign * (self.exit_price / self.entry_price - 1.0)
        return 100.0 * (gross - self.commission / (abs(self.size) * self.entry_price))

    def to_row(self) -> dict[str, Any]:
        """The trade as a JSON-ready row: the CLI contract's keys, plus symbol, commission and exit reason."""
        return {
            "symbol": self.symbol,
            "entry_bar": self.entry_bar,
            "exit_bar": self.exit_bar,
            "entry_time": format_timestamp(self.entry_time),
            "exit_time": format_timestamp(self.exit_time),
            "size": self.size,
            "entry_price": self.entry_price,
            "exit_price": self.exit_price,
            "pnl": self.pnl,
            "return_pct": self.return_pct,
            "commission": self.commission,
            "exit_reason": self.exit_reason.value,
        }

    @property
    def duration(self) -> float:
        """Seconds the trade was open."""
        return (self.exit_time - self.entry_time).total_seconds()
