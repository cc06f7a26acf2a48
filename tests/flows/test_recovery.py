"""Crash recovery (issue 14, point 5): a flow killed with SIGKILL at any moment converges, when run again,
to the state of a run that was never interrupted.

Each flow of the night (ingestion, embedding, index maintenance, backtests, distillation) runs once
uninterrupted from the state the flow before it left, on SQLite and on PostgreSQL; its digest of every
table and every collection's vectors (`models.state_digest`) is the reference. Each trial starts from a
copy of the same state, kills the flow with SIGKILL at a named point (`models.kill_points`: the n-th
commit, just before the n-th commit, between an HNSW graph file and its sidecar; n drawn at random) or
at a random moment, runs it again, and compares: the same rows, the same vectors, the same run ids, and
a provenance log that still verifies.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from models.collections import INDEX_FOLDER_VARIABLE
from models.engine import dispose_engines, session_scope
from models.kill_points import KILL_POINT_VARIABLE
from models.migrations import upgrade_database
from models.state_digest import state_digests
from neuraltrade.memory.maintenance import MaintenanceConfig
from tasks.provenance import CHECKPOINT_DIRECTORY_VARIABLE, initialise, verify_with
from tests.conftest import DAILY_DATA
from tests.crash_trials import COUNT_ONLY, Outcome, copy_folder, fork_server, start_and_end

# The trials are collected first (`LONG_MODULES` in tests/conftest.py), so each pytest-xdist worker runs
# its share of them one after another and sets up each backend's night once. An xdist_group mark would
# send them all to one worker, but pytest-xdist 3.8 groups by rewriting `item._nodeid`, which pytest 9.2
# no longer reads; `--dist loadscope` does, and left the suite unbalanced (16.7 min against 10).
pytestmark = pytest.mark.slow

#: Bars per symbol: enough for every strategy of the trials to trade and its trades to be judged.
BARS = 160
SYMBOLS = ("NVDA", "ORCL")
#: The night's flows in order; each starts from the state the one before left.
FLOWS = ("ingest_bars", "embed_observations", "maintain_index", "run_backtests", "distill_reflexions")
#: A classic strategy, one that reads the market memory, and one gated by what the learning loop learnt.
STRATEGIES = ["sma_cross", "memory_vote", "gated:sma_cross"]
#: The kills of each flow: named points (the n-th of them, n at random) and random moments. Index
#: maintenance saves a graph file, so it is also killed between the file and its sidecar.
KILLS = {
    "sqlite": ("before_commit", "commit", "random", "random"),
    "postgresql": ("commit", "random"),
}
EXTRA_KILLS = {"maintain_index": ("index_file",)}
#: Seeds every draw of the trials (which commit, which moment): a failure is re-run as it was.
SEED = 20261203
#: A random kill that finds the flow finished is tried again this many times, earlier each time.
RANDOM_ATTEMPTS = 4


def _trials(backend: str) -> list[tuple[int, str, str]]:
    """(number, flow, kill) of every trial on `backend`; the number seeds the trial's draws, so that two
    random kills of one flow are killed at different moments."""
    kills = KILLS[backend]
    chosen = [(flow, kill) for flow in FLOWS for kill in (*kills, *EXTRA_KILLS.get(flow, ()))]
    return [(number, flow, kill) for number, (flow, kill) in enumerate(chosen)]


SQLITE_TRIALS, POSTGRESQL_TRIALS = _trials("sqlite"), _trials("postgresql")


def _names(trials: list[tuple[int, str, str]]) -> list[str]:
    return [f"{flow}-{kill}-{number}" for number, flow, kill in trials]


@dataclass(frozen=True)
class State:
    """A database and its folder: the SQLite file, or a server database's index files and checkpoints."""

    url: str
    folder: Path
    database: str | None = None

    def environment(self) -> dict[str, str]:
        """Where a server database's index files and checkpoints go (a SQLite file keeps them beside it)."""
        if self.database is None:
            return {}
        return {
            INDEX_FOLDER_VARIABLE: str(self.folder / "indexes"),
            CHECKPOINT_DIRECTORY_VARIABLE: str(self.folder / "checkpoints"),
        }

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"


@dataclass(frozen=True)
class Reference:
    """What an uninterrupted run of a flow left: its state, digests, kill points reached and duration."""

    state: State
    digests: dict[str, str]
    outcome: Outcome


class Databases:
    """Makes and copies the states of one backend; drops the server databases at the end."""

    def __init__(self, backend: str, root: Path, server: Any) -> None:
        self.backend, self.root, self.server = backend, root, server
        self._numbers = itertools.count()
        self._created: list[str] = []

    def empty(self) -> State:
        state = self._new_state(template=None)
        upgrade_database(state.url)
        directory = str(state.checkpoints)
        initialise(state.url, directory)  # the signing key introduced, the public key list published
        dispose_engines()
        return state

    def copy(self, state: State) -> State:
        dispose_engines()  # a server template must have no connection when it is copied
        return self._new_state(template=state)

    def _new_state(self, template: State | None) -> State:
        folder = self.root / f"{self.backend}-{next(self._numbers)}"
        if template is not None:
            copy_folder(template.folder, folder)
        else:
            folder.mkdir(parents=True)
        if self.backend == "sqlite":
            return State(url=f"sqlite:///{folder / 'night.db'}", folder=folder)
        name = f"crash_{folder.name.replace('-', '_')}"
        source = f" TEMPLATE {template.database}" if template is not None else ""
        self.server.psql(f"CREATE DATABASE {name}{source};")
        self._created.append(name)
        return State(url=self.server.get_uri(database=name, driver="psycopg"), folder=folder, database=name)

    def drop_all(self) -> None:
        dispose_engines()
        for name in self._created:
            self.server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


class Night:
    """The reference runs of one backend, made on first use, and the trials against them."""

    def __init__(self, databases: Databases, data: list[str], api_url: str) -> None:
        self.databases, self.data, self.api_url = databases, data, api_url
        self.context = fork_server()
        self._references: dict[str, Reference] = {}
        self._start: State | None = None

    def arguments(self, flow: str, state: State) -> dict[str, Any]:
        chosen: dict[str, Any] = {
            "ingest_bars": {"paths": self.data},
            "maintain_index": {"config": MaintenanceConfig(hnsw_collections=("market_state",))},
            "run_backtests": {"strategies": STRATEGIES},
        }.get(flow, {})
        return {"database_url": state.url, **chosen}

    def before(self, flow: str) -> State:
        """The state flow `flow` starts from: what the uninterrupted run of the flow before it left."""
        position = FLOWS.index(flow)
        if position == 0:
            if self._start is None:
                self._start = self.databases.empty()
            return self._start
        return self.reference(FLOWS[position - 1]).state

    def reference(self, flow: str) -> Reference:
        """The uninterrupted run of `flow`, counting the kill points it reaches."""
        if flow not in self._references:
            state = self.databases.copy(self.before(flow))
            outcome = self.run(flow, state, COUNT_ONLY)
            assert outcome.exit_code == 0, f"the uninterrupted {flow} failed (exit {outcome.exit_code})"
            self._references[flow] = Reference(state=state, digests=self.digests(state), outcome=outcome)
        return self._references[flow]

    def run(self, flow: str, state: State, kill_point: str | None, kill_after: float | None = None) -> Outcome:
        environment = state.environment()
        if kill_point is not None:
            environment[KILL_POINT_VARIABLE] = kill_point
        return start_and_end(
            self.context,
            flow,
            self.arguments(flow, state),
            environment,
            self.api_url,
            self.databases.root,
            kill_after=kill_after,
        )

    @staticmethod
    def digests(state: State) -> dict[str, str]:
        with session_scope(state.url) as session:
            found = state_digests(session)
        dispose_engines()
        return found


def _item_differences(reference: State, found: State) -> str:
    """The memory items only one of two states holds (a few of each), for a failure message: a digest
    says that two states differ, not how."""
    statement = text("SELECT key, written_version FROM memory_items")
    items = []
    for state in (reference, found):
        with session_scope(state.url) as session:
            items.append(dict(session.execute(statement).tuples().all()))
        dispose_engines()
    missing, extra = sorted(items[0].keys() - items[1].keys()), sorted(items[1].keys() - items[0].keys())
    return (
        f"{len(items[1])} items against {len(items[0])}; missing {missing[:5]}, extra {extra[:5]}; written "
        f"versions found {sorted(set(items[1].values()))}, in the reference {sorted(set(items[0].values()))}"
    )


def _night(backend: str, tmp_path_factory: pytest.TempPathFactory, server: Any) -> Iterator[Night]:
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp(f"crash-{backend}")
    data = []
    for symbol in SYMBOLS:
        lines = (DAILY_DATA / f"{symbol}.csv").read_text().splitlines(keepends=True)
        target = root / f"{symbol}.csv"
        target.write_text("".join(lines[: BARS + 1]))
        data.append(str(target))
    databases = Databases(backend, root, server)
    try:
        yield Night(databases, data, str(PREFECT_API_URL.value()))
    finally:
        databases.drop_all()


# One night per backend for the whole module, so that its reference runs are made once. (A night
# parametrized indirectly beside direct arguments is function-scoped, and was set up again for every
# trial; at module scope pytest groups the trials by flow, switching backends back and forth.)
@pytest.fixture(scope="module")
def sqlite_night(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[Night]:
    yield from _night("sqlite", tmp_path_factory, None)


@pytest.fixture(scope="module")
def postgresql_night(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness: None, postgresql_server: Any
) -> Iterator[Night]:
    yield from _night("postgresql", tmp_path_factory, postgresql_server)


def _kill(night: Night, flow: str, kill: str, rng: random.Random) -> tuple[State, Outcome, str]:
    """Copy the state `flow` starts from and kill the flow on it; return the copy, the outcome and what
    was done (for the failure message)."""
    reference = night.reference(flow)
    if kill != "random":
        reached = reference.outcome.reached.get(kill, 0)
        assert reached > 0, f"the uninterrupted {flow} never reached kill point {kill!r}: {reference.outcome.reached}"
        point = f"{kill}:{rng.randint(1, reached)}"
        state = night.databases.copy(night.before(flow))
        return state, night.run(flow, state, point), f"killed at {point} of {reached}"
    fraction = rng.uniform(0.05, 0.95)
    for _ in range(RANDOM_ATTEMPTS):
        delay = fraction * reference.outcome.seconds
        state = night.databases.copy(night.before(flow))
        outcome = night.run(flow, state, None, kill_after=delay)
        if outcome.killed:
            return state, outcome, f"killed after {delay:.2f} s of {reference.outcome.seconds:.2f} s"
        fraction /= 2  # it finished first: this machine ran it faster than the reference
    pytest.fail(f"{flow} finished before every random kill, the last at {delay:.2f} s")


@pytest.mark.parametrize("number,flow,kill", SQLITE_TRIALS, ids=_names(SQLITE_TRIALS))
def test_a_flow_killed_on_sqlite_converges_when_run_again(
    sqlite_night: Night, number: int, flow: str, kill: str
) -> None:
    _trial(sqlite_night, number, flow, kill)


@pytest.mark.parametrize("number,flow,kill", POSTGRESQL_TRIALS, ids=_names(POSTGRESQL_TRIALS))
def test_a_flow_killed_on_postgresql_converges_when_run_again(
    postgresql_night: Night, number: int, flow: str, kill: str
) -> None:
    _trial(postgresql_night, number, flow, kill)


def _trial(night: Night, number: int, flow: str, kill: str) -> None:
    """Kill `flow` (at the named point `kill`, or at a random moment), run it again, and compare."""
    rng = random.Random(f"{SEED}-{night.databases.backend}-{flow}-{kill}-{number}")
    state, killed, what = _kill(night, flow, kill, rng)
    assert killed.killed, f"{flow} was not killed ({what}): exit {killed.exit_code}"

    rerun = night.run(flow, state, None)

    assert rerun.exit_code == 0, f"{flow} run again after being {what} failed (exit {rerun.exit_code})"
    reference = night.reference(flow)
    found = night.digests(state)
    differing = sorted(
        name for name in reference.digests.keys() | found.keys() if reference.digests.get(name) != found.get(name)
    )
    assert differing == [], (
        f"{flow} {what} and run again differs from an uninterrupted run in {differing}: "
        f"{_item_differences(reference.state, state)}"
    )
    report = verify_with(state.url, directory=str(state.checkpoints))
    dispose_engines()
    assert report.ok, f"{flow} {what}: the provenance log does not verify: {report.to_plain()}"
    leftovers = [path.name for path in state.folder.rglob("*.tmp")]
    assert leftovers == [], f"{flow} {what} left temporary files: {leftovers}"
