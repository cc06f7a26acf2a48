"""The ids of a run's decisions and orders: derived once, where the decision or the order is made.

A decision's signal id comes from the run, the strategy, the symbol and the decision's time
(`signal_id_for`); its entry order's client id from the signal (`client_order_id_for(signal, "entry")`).
An exit order's client id comes from the signal that caused it and the entry client id of the trade it
closes (`exit_client_order_id`). The event loop, the fast path and the paper broker all derive ids here,
so a run gives the same ids however it was simulated.

Ids are derived when first read (`RunName`, `SignalName`, `OrderName`): each is a hash, and there are
several per trade, more work than simulating the trade; a sweep reads none of them. What an id is
follows from where it was made all the same: the names are made at the decision and carried by the
orders and trades, and each derives its id once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from neuraltrade.backtest.trade import ExitReason
from neuraltrade.canonical import stable_id
from neuraltrade.trading.orders import client_order_id_for, order_id_for

#: The client-order-id purpose of the order that closes a trade, by why it closes it.
EXIT_PURPOSES = {
    ExitReason.SIGNAL: "close",
    ExitReason.STOP_LOSS: "stop_loss",
    ExitReason.TAKE_PROFIT: "take_profit",
    ExitReason.TRAILING_STOP: "trailing_stop",
    ExitReason.END: "close_at_end",
    ExitReason.OUT_OF_MONEY: "liquidation",
}


def signal_id_for(run_id: uuid.UUID, strategy_id: str, symbol: str, moment: datetime) -> uuid.UUID:
    """The stable id of the signal of run `run_id` for `symbol` after the bar at `moment`."""
    return stable_id("signal", run_id, strategy_id, symbol, moment)


def exit_client_order_id(
    signal_id: uuid.UUID | None,
    reason: ExitReason,
    entry_client_order_id: str,
    entry_fill_sequence: int = 0,
    earlier_exits: int = 0,
) -> str:
    """The client id of the order closing, for `reason`, the trade opened by `entry_client_order_id`.

    `signal_id` is the decision that closes it ("close": a later decision) or the entry's own signal (stop
    loss, take profit, trailing stop, close at end, liquidation; None for an order placed directly). The
    qualifier is the entry's client order id; only where one entry order opened several trades (filled in
    parts: `entry_fill_sequence` > 0) or one trade is closed by several contingent exits (a volume cap:
    `earlier_exits` > 0) do both numbers follow, so that every exit order has an id of its own.
    """
    extra = () if entry_fill_sequence == 0 and earlier_exits == 0 else (entry_fill_sequence, earlier_exits)
    return client_order_id_for(signal_id, EXIT_PURPOSES[reason], entry_client_order_id, *extra)


class RunName:
    """A run's id, given or derived (once) when first read: hashing the run's specification costs more
    than a short backtest, and a sweep never reads it."""

    __slots__ = ("_derive", "_id")

    def __init__(self, run_id: uuid.UUID | None, derive: Callable[[], uuid.UUID]) -> None:
        self._id, self._derive = run_id, derive

    @property
    def id(self) -> uuid.UUID:
        if self._id is None:
            self._id = self._derive()
        return self._id


class SignalName:
    """The id of a decision's signal (`signal_id_for`), derived once, when first read."""

    __slots__ = ("_id", "_moment", "_run", "_strategy_id", "_symbol")

    def __init__(self, run: RunName, strategy_id: str, symbol: str, moment: datetime) -> None:
        self._run, self._strategy_id, self._symbol, self._moment = run, strategy_id, symbol, moment
        self._id: uuid.UUID | None = None

    @property
    def id(self) -> uuid.UUID:
        if self._id is None:
            self._id = signal_id_for(self._run.id, self._strategy_id, self._symbol, self._moment)
        return self._id


class OrderName:
    """An order's client order id and order id: given (an order placed directly), or derived once, when
    first read, from what made the order (`entry`, `exit`).

    The ids follow from the moment the order is made; deriving them is only put off, because a backtest
    that nobody stores or reads order by order (a sweep) would spend most of its time hashing them.
    """

    __slots__ = ("_client", "_closes", "_id", "_numbers", "_reason", "_signal")

    def __init__(
        self,
        signal: SignalName | uuid.UUID | None,
        client_order_id: str | None = None,
        reason: ExitReason | None = None,
        closes: OrderName | None = None,
        numbers: tuple[int, int] = (0, 0),
    ) -> None:
        # Positional and plain: the engine names two orders per trade.
        self._signal = signal
        self._client = client_order_id
        self._reason = reason
        self._closes = closes
        self._numbers = numbers
        self._id: uuid.UUID | None = None

    @classmethod
    def given(cls, client_order_id: str, signal_id: uuid.UUID | None = None) -> OrderName:
        """The name of an order whose client order id its trader gave."""
        return cls(signal_id, client_order_id)

    @classmethod
    def entry(cls, signal: SignalName | uuid.UUID) -> OrderName:
        """The name of a decision's entry order: ``client_order_id_for(signal, "entry")``."""
        return cls(signal)

    @classmethod
    def exit(
        cls,
        signal: SignalName | uuid.UUID | None,
        reason: ExitReason,
        closes: OrderName,
        entry_fill_sequence: int = 0,
        earlier_exits: int = 0,
    ) -> OrderName:
        """The name of the order closing, for `reason`, a trade opened by order `closes` (`exit_client_order_id`)."""
        return cls(signal, None, reason, closes, (entry_fill_sequence, earlier_exits))

    @property
    def signal(self) -> SignalName | uuid.UUID | None:
        """The signal the order carries out, as given (its id possibly not derived yet)."""
        return self._signal

    @property
    def signal_id(self) -> uuid.UUID | None:
        """The signal the order carries out (None for an order placed directly, and its exits)."""
        signal = self._signal
        return signal.id if isinstance(signal, SignalName) else signal

    @property
    def client_order_id(self) -> str:
        if self._client is None:
            if self._closes is None:
                signal = self.signal_id
                assert signal is not None
                self._client = client_order_id_for(signal, "entry")
            else:
                assert self._reason is not None
                entry = self._closes.client_order_id
                self._client = exit_client_order_id(self.signal_id, self._reason, entry, *self._numbers)
        return self._client

    @property
    def order_id(self) -> uuid.UUID:
        if self._id is None:
            self._id = order_id_for(self.client_order_id)
        return self._id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderName):
            return NotImplemented
        return (self.client_order_id, self.signal_id) == (other.client_order_id, other.signal_id)

    def __hash__(self) -> int:
        return hash(self.client_order_id)

    def __repr__(self) -> str:
        return f"OrderName({self.client_order_id!r}, signal={self.signal_id})"
