"""Which failures are worth retrying: a locked or busy database, a dropped connection; nothing else."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from models.dialects import transient_messages
from tasks.metrics import count_retry

#: What every supported driver says of a locked database or a lost connection.
_TRANSIENT_MESSAGES = tuple(fragment for fragments in transient_messages() for fragment in fragments)

#: Delays between the attempts of a task that failed transiently, in seconds.
RETRY_DELAYS_SECONDS: list[float] = [1.0, 5.0, 30.0]


def is_transient_error(error: BaseException) -> bool:
    """Return whether `error` may pass if the same work is tried again."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OperationalError):
        message = str(error.orig).lower()
        return any(fragment in message for fragment in _TRANSIENT_MESSAGES)
    return isinstance(error, (ConnectionError, TimeoutError))


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task run only when its error was transient."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as raised:  # the state may hold the exception only by raising it
        error = raised
    retried = isinstance(error, BaseException) and is_transient_error(error)
    if retried:
        count_retry(getattr(task, "name", "unknown"))
    return retried
