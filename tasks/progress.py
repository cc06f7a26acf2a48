"""An in-process progress hook: tasks report work done, a front end (the CLI) may listen.

Tasks run in threads of the flow's process by default, so a listener installed by the CLI sees every
report; under a distributed runner nobody listens and reports cost nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[str, int, int, str], None]
"""Called as ``listener(stage, done, total, item)``."""

_listeners: list[Listener] = []
_lock = threading.Lock()


def report(stage: str, done: int, total: int, item: str = "") -> None:
    """Tell every listener that `done` of `total` units of `stage` are finished."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(stage, done, total, item)


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
