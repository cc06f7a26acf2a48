"""Specification of the flows on Dask (issue 14, point 2): `flows.task_runner` as configured, and the
nightly backtests on a local cluster of worker processes against PostgreSQL storing what the default
thread runner stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from flows import DASK_ADDRESS_VARIABLE, DASK_WORKERS_VARIABLE, TASK_RUNNER_VARIABLE, task_runner
from models.base import Base
from models.engine import dispose_engines, session_scope
from models.migrations import upgrade_database
from neuraltrade.errors import ConfigError
from tests.postgresql import fresh_database

#: The tables a backtest writes, and what each row's stored form is compared on: everything but the wall
#: clock of the machine that wrote it.
BACKTEST_TABLES = (
    "backtest_runs",
    "backtest_trades",
    "backtest_equity",
    "signals",
    "orders",
    "order_events",
    "fills",
    "risk_rejections",
    "model_versions",
)
WALL_CLOCK = frozenset({"created_at"})


def stored_rows(url: str, tables: tuple[str, ...] = BACKTEST_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of `tables`, as sorted tuples of their columns but the wall clock's."""
    found = {}
    with session_scope(url) as session:
        for name in tables:
            table = Base.metadata.tables[name]
            columns = [column for column in table.columns if column.name not in WALL_CLOCK]
            rows = session.execute(select(*columns)).all()
            found[name] = sorted(tuple(repr(value) for value in row) for row in rows)
    return found


def test_the_default_runner_is_threads_and_dask_is_chosen_by_the_environment() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    local = task_runner({TASK_RUNNER_VARIABLE: "dask", DASK_WORKERS_VARIABLE: "3"})
    remote = task_runner({TASK_RUNNER_VARIABLE: "dask", DASK_ADDRESS_VARIABLE: "tcp://10.0.0.5:8786"})

    assert isinstance(task_runner({}), ThreadPoolTaskRunner)
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 3
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({TASK_RUNNER_VARIABLE: "ray"}, "NEURALTRADE_TASK_RUNNER='ray' is not a task runner"),
        ({TASK_RUNNER_VARIABLE: "dask", DASK_WORKERS_VARIABLE: "0"}, "NEURALTRADE_DASK_WORKERS='0'"),
        ({TASK_RUNNER_VARIABLE: "dask", DASK_WORKERS_VARIABLE: "two"}, "NEURALTRADE_DASK_WORKERS='two'"),
    ],
)
def test_a_task_runner_badly_configured_is_a_config_error_naming_the_variable(
    environment: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        task_runner(environment)


def every_task_and_flow() -> list[Any]:
    import importlib
    import pkgutil

    from prefect.flows import Flow
    from prefect.tasks import Task

    import flows
    import tasks

    found = []
    for package in (tasks, flows):
        for module_info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{module_info.name}")
            found.extend(
                value
                for value in vars(module).values()
                if isinstance(value, Task | Flow) and value.fn.__module__ == module.__name__
            )
    return found


def test_every_task_and_flow_pickles_as_dask_ships_it() -> None:
    import cloudpickle

    # Dask ships a task by value, with every module global its function names: a lock or a class's
    # method among them fails the whole flow run on the first submit.
    found = every_task_and_flow()
    refused = {}
    for value in found:
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            refused[value.name] = repr(error)

    assert len(found) >= 30  # every task module and flow was found
    assert refused == {}


@pytest.fixture
def embedded_template(postgresql_server: Any, sample_csv: Path) -> Iterator[str]:
    """A PostgreSQL database holding the sample's bars and market memory, to copy for each runner."""
    from flows.embed_observations import embed_observations
    from flows.ingest_bars import ingest_bars

    with fresh_database(postgresql_server) as url:
        upgrade_database(url)
        ingest_bars.fn(paths=[str(sample_csv)], database_url=url)
        embed_observations.fn(database_url=url)
        dispose_engines()  # a template must have no connections when it is copied
        yield str(make_url(url).database)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_nightly_backtests_on_a_local_dask_cluster_store_what_the_thread_runner_stores(
    prefect_harness: None, postgresql_server: Any, embedded_template: str
) -> None:
    from flows.run_backtests import run_backtests

    runners = {
        "threads": task_runner({}),
        "dask": task_runner({TASK_RUNNER_VARIABLE: "dask", DASK_WORKERS_VARIABLE: "2"}),
    }
    stored, summaries = {}, {}
    for name, runner in runners.items():
        with fresh_database(postgresql_server, template=embedded_template) as url:
            summaries[name] = run_backtests.with_options(task_runner=runner)(database_url=url)
            stored[name] = stored_rows(url)

    assert summaries["dask"]["failed"] == summaries["threads"]["failed"] == 0
    assert len(stored["threads"]["backtest_runs"]) == 10 and stored["threads"]["backtest_trades"]
    assert stored["dask"] == stored["threads"]
