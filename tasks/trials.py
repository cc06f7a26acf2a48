"""The trial registry in the database: every research result the statistics must count (`Trial`).

No Prefect here: the command line records its walk-forwards through this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.engine import database_file, resolve_database_url, session_scope
from models.learning_store import save_trials
from models.migrations import upgrade_database
from neuraltrade.research.trials import Trial


def record_trials(database_url: str | None, trials: Sequence[Trial]) -> int | None:
    """Store `trials` in the database of `database_url` (None: the configured one); return how many were new.

    Nothing is created: a SQLite database whose file does not exist yet records nothing (None), so a
    research command run before ``neuraltrade init`` leaves no stray file behind.
    """
    url = resolve_database_url(database_url)
    path = database_file(url)
    if path is not None and not path.exists():
        return None
    upgrade_database(url)
    with session_scope(url, write=True) as session:
        return save_trials(session, trials)
