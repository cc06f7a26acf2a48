"""The simulated broker's book: the orders it works, the trades it holds and the events of its orders.

`neuraltrade.backtest.broker.SimulatedBroker` fills the orders; the engine, the paper broker and the order
records (`neuraltrade.backtest.orders`) read these.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from neuraltrade.backtest.identity import OrderName
from neuraltrade.types import Fill


class BrokerEventKind(enum.Enum):
    """What happened to a working order at the simulated broker."""

    PLACED = "placed"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(slots=True, eq=False)
class OpenTrade:
    """A position lot: opened by one fill, closed in one or more parts.

    `entry` names the order whose fill number `entry_fill_sequence` opened it (and so its signal);
    `contingent_exits` counts the stop-loss, take-profit and trailing-stop orders that closed parts of it.
    """

    symbol: str
    row: int
    size: float
    entry_price: float
    entry_bar: int
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_distance: float | None = None
    trailing_level: float | None = None
    tag: str | None = None
    entry: OrderName | None = None
    entry_fee: float = 0.0
    decision_bar: int | None = None
    entry_fill_sequence: int = 0
    contingent_exits: int = 0

    @property
    def client_order_id(self) -> str:
        """The client order id of the entry order."""
        return "" if self.entry is None else self.entry.client_order_id

    @property
    def signal_id(self) -> uuid.UUID | None:
        """The signal that opened the trade (None for an order placed directly)."""
        return None if self.entry is None else self.entry.signal_id

    @property
    def entry_order_id(self) -> uuid.UUID | None:
        return None if self.entry is None else self.entry.order_id

    @property
    def entry_fill_id(self) -> uuid.UUID | None:
        return None if self.entry is None else Fill.id_for(self.entry.order_id, self.entry_fill_sequence)


@dataclass(slots=True, eq=False)
class WorkingOrder:
    """An order the broker holds until it fills, is cancelled or expires.

    `size` is signed: whole (or fractional) units, or, when its magnitude is below 1, a fraction of the
    available margin resolved into units at the first fill. Exit levels are absolute prices
    (`stop_loss`, `take_profit`) or distances from the fill price as fractions (`*_distance`).
    A close order names the trade it closes in `parent`. `name` gives the order's ids and signal (made
    with the order: `OrderName`); `fills` counts its fills so far (the next fill's sequence).
    """

    symbol: str
    row: int
    size: float
    placed_bar: int
    limit: float | None = None
    stop: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    stop_loss_distance: float | None = None
    take_profit_distance: float | None = None
    trailing_distance: float | None = None
    parent: OpenTrade | None = None
    expires_bar: int | None = None
    tag: str | None = None
    name: OrderName | None = None
    units: float | None = None
    filled: float = 0.0
    triggered: bool = False
    decision_bar: int | None = None
    fills: int = 0

    @property
    def is_long(self) -> bool:
        return self.size > 0

    @property
    def client_order_id(self) -> str:
        return "" if self.name is None else self.name.client_order_id

    @property
    def order_id(self) -> uuid.UUID | None:
        return None if self.name is None else self.name.order_id

    @property
    def signal_id(self) -> uuid.UUID | None:
        return None if self.name is None else self.name.signal_id


@dataclass(frozen=True, slots=True)
class BrokerEvent:
    """One step of a working order's life at the simulated broker, at a timeline bar.

    A fill event is one fill: its `quantity`, `price` and `sequence` among the order's fills.
    """

    bar: int
    kind: BrokerEventKind
    order: WorkingOrder
    quantity: float = 0.0
    price: float | None = None
    reason: str = ""
    sequence: int | None = None
