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

_listeners: list[Listener] = []
_lock = threading.Lock()


def report(stage: str, item: str, units: int) -> None:
    """Tell every listener that `item` of `stage` is finished, after `units` rows or vectors."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(stage, item, units)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Install `listener` for the duration of the block."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
