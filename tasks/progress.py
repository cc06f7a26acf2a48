"""An in-process progress hook: tasks report finished work, a front end (the CLI) may listen.

Tasks run in threads of the flow's process by default, so a listener installed by the CLI sees every
report; under a distributed runner nobody listens and reports cost nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[str, str, int], None]
"""Called as ``listener(stage, item, units)`` when `item` of `stage` is finished after `units` of work."""

Expectation = Callable[[str, int], None]
"""Called as ``expectation(stage, total)`` when a flow knows how many items `stage` will finish."""

_listeners: list[Listener] = []
_expectations: list[Expectation] = []
_lock = threading.Lock()


def report(stage: str, item: str, units: int) -> None:
    """Tell every listener that `item` of `stage` is finished, after `units` rows or vectors."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(stage, item, units)


def expect(stage: str, total: int) -> None:
    """Tell every listener that `stage` will finish `total` items (a flow says so once it knows)."""
    with _lock:
        expectations = list(_expectations)
    for expectation in expectations:
        expectation(stage, total)


@contextmanager
def listening(listener: Listener, expectation: Expectation | None = None) -> Iterator[None]:
    """Install `listener` (and `expectation`, if given) for the duration of the block."""
    with _lock:
        _listeners.append(listener)
        if expectation is not None:
            _expectations.append(expectation)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
            if expectation is not None:
                _expectations.remove(expectation)
