"""Trading: the order manager, risk limits, position sizing and paper trading."""
