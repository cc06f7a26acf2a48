"""Named moments at which a test may kill this process, to prove that a re-run converges.

A process whose environment sets ``NEURALTRADE_KILL_POINT=<name>`` (or ``<name>:<n>``) kills itself with
SIGKILL the first (or the n-th) time it reaches the point `name`: nothing is flushed, no handler runs, as
when the machine loses power or the kernel's out-of-memory killer picks it. The crash-recovery trials
(`tests/flows/test_recovery.py`) kill flows at these points and at random moments, run them again, and
compare every table with an uninterrupted run's.

The points, each where a crash leaves the most half-done work behind:

- ``before_commit``: a write transaction is complete but not committed (`models.engine.session_scope`);
- ``commit``: a write transaction has just committed, before the code after it runs;
- ``index_file``: an HNSW graph file has been replaced, its sidecar not yet (`models.ann_index`).

Without the variable a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

from neuraltrade.errors import ConfigError

KILL_POINT_VARIABLE = "NEURALTRADE_KILL_POINT"
#: Every point the code has; a variable naming another is refused, so that a typo cannot pass for a
#: trial in which nothing was killed.
KILL_POINTS = ("before_commit", "commit", "index_file")

_reached: Counter[str] = Counter()
_lock = threading.Lock()


def kill_point(name: str) -> None:
    """Kill this process with SIGKILL if ``NEURALTRADE_KILL_POINT`` names this point and its count."""
    wanted = os.environ.get(KILL_POINT_VARIABLE)
    if not wanted:
        return
    point, count = parse_kill_point(wanted)
    # Every point is counted while the variable is set, so that a run that kills nowhere (a count never
    # reached) tells a trial how many times each point comes.
    with _lock:
        _reached[name] += 1
        reached = _reached[name]
    if point == name and reached == count:
        os.kill(os.getpid(), signal.SIGKILL)


def reached_points() -> dict[str, int]:
    """How many times this process reached each point while ``NEURALTRADE_KILL_POINT`` was set."""
    with _lock:
        return dict(_reached)


def parse_kill_point(text: str) -> tuple[str, int]:
    """Return (point, count) of a ``<name>[:<n>]`` value of ``NEURALTRADE_KILL_POINT``.

    Raises
    ------
    ConfigError
        If the name is not one of `KILL_POINTS` or the count is not a positive integer.
    """
    point, _, count = text.strip().partition(":")
    if point not in KILL_POINTS:
        known = ", ".join(KILL_POINTS)
        raise ConfigError(f"{KILL_POINT_VARIABLE}={text!r} names no kill point; the points are {known}")
    if not count:
        return point, 1
    if not count.isdigit() or int(count) < 1:
        raise ConfigError(f"{KILL_POINT_VARIABLE}={text!r}: the count after ':' must be a positive integer")
    return point, int(count)
