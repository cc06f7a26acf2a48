"""Strategies: rules from a symbol's bar history to signals (see `neuraltrade.strategies.base`)."""
