"""neuraltrade: research and paper trading with a learning memory.

This package is the pure domain. It never imports prefect, sqlalchemy, great_expectations,
prometheus_client, flows, tasks or models; I/O lives at the edges, in those packages.
"""

from neuraltrade.errors import NeuralTradeError
from neuraltrade.types import Bar, Direction, Observation, Order, Signal

__all__ = ["Bar", "Direction", "NeuralTradeError", "Observation", "Order", "Signal"]
__version__ = "0.1.0"
