"""Closed trades: what a backtest or the paper broker reports once a position, or part of it, is closed."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from neuraltrade.canonical import format_timestamp, parse_timestamp
from neuraltrade.records import Record


class ExitReason(enum.Enum):
    """Why a trade was closed."""

    SIGNAL = "signal"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    END = "end"
    OUT_OF_MONEY = "out_of_money"


class TradeFigures(Protocol):
    """The numbers of a closed trade that its statistics read (a `ClosedTrade`, or the fast path's before
    its ids are derived)."""

    @property
    def symbol(self) -> str: ...
    @property
    def entry_bar(self) -> int: ...
    @property
    def exit_bar(self) -> int: ...
    @property
    def size(self) -> float: ...
    @property
    def entry_price(self) -> float: ...
    @property
    def exit_price(self) -> float: ...
    @property
    def commission(self) -> float: ...


class _ClosedTradeFields(NamedTuple):
    symbol: str
    entry_bar: int
    exit_bar: int
    entry_time: datetime
    exit_time: datetime
    size: float
    entry_price: float
    exit_price: float
    commission: float
    signal_id: uuid.UUID | None
    entry_order_id: uuid.UUID
    exit_order_id: uuid.UUID
    entry_fill_id: uuid.UUID
    exit_fill_id: uuid.UUID
    exit_reason: ExitReason = ExitReason.SIGNAL
    stop_loss: float | None = None
    take_profit: float | None = None
    tag: str | None = None
    decision_bar: int | None = None


_IDS = ("entry_order_id", "exit_order_id", "entry_fill_id", "exit_fill_id")


class ClosedTrade(_ClosedTradeFields, Record):
    """One closed trade (or closed part of one), defined as backtesting.py 0.6 defines its trades.

    Immutable and compared by value; a named tuple rather than a dataclass because a sweep builds
    thousands of them per second (a third of the cost).

    `size` is signed (negative for a short). `entry_price` includes the spread, never the commission;
    `commission` is what was paid at entry and exit together; `pnl` is ``size * (exit - entry) -
    commission``; `return_pct` is ``sign(size) * (exit / entry - 1) - commission / (|size| * entry)``, in
    percent. `entry_bar` and `exit_bar` index the run's common timeline; `decision_bar` is the bar whose
    decision opened the trade (its signal), None for a trade opened by a direct order.

    Lineage: `signal_id` is the decision that opened the trade (None for a direct order), `entry_order_id`
    and `exit_order_id` the orders that opened and closed it, `entry_fill_id` and `exit_fill_id` their
    fills (`neuraltrade.types.Fill`). `tag` is the user's own label, nothing else.
    """

    __slots__ = ()

    KIND = "closed_trade"
    SCHEMA_VERSION = 1

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

    @property
    def duration(self) -> float:
        """Seconds the trade was open."""
        return (self.exit_time - self.entry_time).total_seconds()

    def field_values(self) -> dict[str, Any]:
        """The trade's fields by name (`pnl` and `return_pct` are derived from them, not fields)."""
        return dict(self._asdict())

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> ClosedTrade:
        """Build a trade from the plain values of its fields (its canonical form without kind and version)."""
        values = dict(plain)
        values["entry_time"] = parse_timestamp(values["entry_time"])
        values["exit_time"] = parse_timestamp(values["exit_time"])
        values["exit_reason"] = ExitReason(values["exit_reason"])
        signal = values["signal_id"]
        values["signal_id"] = None if signal is None else uuid.UUID(signal)
        for name in _IDS:
            values[name] = uuid.UUID(values[name])
        for name in ("size", "entry_price", "exit_price", "commission", "stop_loss", "take_profit"):
            if values[name] is not None:
                values[name] = float(values[name])  # canonical JSON writes 2.0 as 2
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        """The trade as a JSON-ready row: the CLI contract's keys, plus symbol, commission, exit reason and ids."""
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
            "signal_id": None if self.signal_id is None else str(self.signal_id),
            "entry_order_id": str(self.entry_order_id),
            "exit_order_id": str(self.exit_order_id),
            "entry_fill_id": str(self.entry_fill_id),
            "exit_fill_id": str(self.exit_fill_id),
        }
