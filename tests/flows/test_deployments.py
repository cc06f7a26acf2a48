"""Specification of the deployments: every flow deployed, the nightly schedule, module-path entrypoints,
and one real round trip through a Prefect server and a served process."""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, FlowRun
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments import run_deployment
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL, temporary_settings

import flows
from deployments import (
    DEPLOYMENT_SPECS,
    DEPLOYMENT_TAG,
    RUNS_PER_DEPLOYMENT,
    SCHEDULE_TIMEZONE,
    build_deployments,
    load_flow,
    serve_deployments,
)
from neuraltrade.errors import ConfigError
from neuraltrade.sample_data import sample_paths

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CSV = next(path for path in sample_paths() if path.name == "NVDA.csv")
NIGHTLY = "nightly/nightly-default"
#: Rows of the sample file the end-to-end run ingests: enough to store, few enough to be quick.
END_TO_END_ROWS = 60

#: Wall-clock budget of the end-to-end test from server start to the run's end; teardown adds at
#: most `STOP_GRACE_SECONDS` per process.
END_TO_END_BUDGET_SECONDS = 110.0
STOP_GRACE_SECONDS = 10.0


def _defined_flows() -> dict[str, Flow[..., Any]]:
    """Every flow defined in a module of the ``flows`` package, keyed ``module:attribute``."""
    found: dict[str, Flow[..., Any]] = {}
    for module_info in pkgutil.iter_modules(flows.__path__, prefix=f"{flows.__name__}."):
        module = importlib.import_module(module_info.name)
        for attribute, value in vars(module).items():
            # Skip flows a module merely imports (nightly imports its subflows).
            if isinstance(value, Flow) and value.fn.__module__ == module.__name__:
                found[f"{module.__name__}:{attribute}"] = value
    return found


def test_every_flow_in_the_flows_package_has_a_deployment() -> None:
    defined = _defined_flows()
    declared = [spec.flow for spec in DEPLOYMENT_SPECS]

    assert defined, "no flow found under flows/"
    assert sorted(declared) == sorted(defined), "add the new flow to deployments.DEPLOYMENT_SPECS"


def test_each_flow_is_deployed_once_under_a_unique_name() -> None:
    deployments = build_deployments()

    assert len({spec.flow for spec in DEPLOYMENT_SPECS}) == len(DEPLOYMENT_SPECS)
    assert len({(d.flow_name, d.name) for d in deployments}) == len(deployments)
    assert [d.name for d in deployments] == [spec.name for spec in DEPLOYMENT_SPECS]


def test_nightly_runs_at_two_on_weekdays_utc_and_nothing_else_is_scheduled() -> None:
    by_name = {f"{d.flow_name}/{d.name}": d for d in build_deployments()}

    nightly = by_name.pop(NIGHTLY)
    schedules = [entry.schedule for entry in nightly.schedules or []]
    assert len(schedules) == 1
    assert isinstance(schedules[0], CronSchedule)
    assert schedules[0].cron == "0 2 * * 1-5"
    assert schedules[0].timezone == SCHEDULE_TIMEZONE == "UTC"
    assert "scheduled" in nightly.tags
    for name, deployment in by_name.items():
        assert not deployment.schedules, f"{name} is on demand only"
        assert "on-demand" in deployment.tags


def test_entrypoints_are_module_paths_that_load_the_same_flow_object() -> None:
    for spec, deployment in zip(DEPLOYMENT_SPECS, build_deployments(), strict=True):
        module_name, _, attribute = spec.flow.partition(":")
        entrypoint = deployment.entrypoint or ""

        assert entrypoint == f"{module_name}.{attribute}"
        assert ".py" not in entrypoint and ":" not in entrypoint and "/" not in entrypoint
        # A file-path entrypoint would execute the file as a second module and return a copy.
        assert load_flow_from_entrypoint(entrypoint) is load_flow(spec.flow)


def test_deployments_carry_tags_a_description_a_concurrency_cap_and_no_pinned_parameters() -> None:
    for deployment in build_deployments():
        assert DEPLOYMENT_TAG in deployment.tags
        assert deployment.description
        assert deployment.concurrency_limit == RUNS_PER_DEPLOYMENT
        assert deployment.concurrency_options is not None
        assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
        # database_url and paths stay None so each run resolves NEURALTRADE_DB and the sample data.
        assert deployment.parameters == {}
        assert deployment.work_pool_name is None


@pytest.mark.parametrize(
    "reference", ["flows.nightly", "flows.nightly:", "flows.nightly:no_such_flow", "deployments:build_deployments"]
)
def test_load_flow_refuses_what_is_not_a_flow(reference: str) -> None:
    with pytest.raises(ConfigError):
        load_flow(reference)


def test_serve_refuses_a_limit_below_one() -> None:
    with pytest.raises(ConfigError, match="limit"):
        serve_deployments(limit=0)


def test_serve_refuses_to_run_without_a_prefect_server() -> None:
    # A temporary server has no scheduler: serving against one would silently never run the cron.
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(ConfigError, match="PREFECT_API_URL"):
        serve_deployments()


# --- end to end ------------------------------------------------------------------------------------


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name} was never written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Each process leads its own group, so the flow-run children of the served process go too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_SECONDS)
    # Whatever outlived the grace period, leader or child, goes now.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STOP_GRACE_SECONDS)


class _Processes:
    """Subprocesses in their own process groups, logged to files, all stopped on exit."""

    def __init__(self, stack: ExitStack, folder: Path) -> None:
        self._stack = stack
        self._folder = folder

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        log: IO[bytes] = self._stack.enter_context((self._folder / f"{name}.log").open("wb"))
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._stack.callback(_stop, process)
        return process


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float, what: str) -> None:
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{what}: process exited with {process.returncode}\n{_tail(log)}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    pytest.fail(f"{what}: not ready in time\n{_tail(log)}")


@pytest.fixture
def isolated_environment(tmp_path: Path) -> dict[str, str]:
    """The environment of the test's subprocesses: no Prefect setting from outside, a private home."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    python_path = [str(PROJECT_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_PROFILES_PATH": str(tmp_path / "prefect-home" / "profiles.toml"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
            "PREFECT_CLI_COLORS": "false",
            "PYTHONPATH": os.pathsep.join(python_path),
            "NEURALTRADE_DB": f"sqlite:///{tmp_path / 'fallback.db'}",
        }
    )
    return env


@pytest.mark.slow
@pytest.mark.timeout(END_TO_END_BUDGET_SECONDS + 60)
def test_nightly_deployment_runs_on_a_real_server_through_the_served_process(
    tmp_path: Path, isolated_environment: dict[str, str]
) -> None:
    deadline = time.monotonic() + END_TO_END_BUDGET_SECONDS
    port = _free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    csv = tmp_path / SAMPLE_CSV.name  # the symbol comes from the file name
    csv.write_text("".join(SAMPLE_CSV.read_text().splitlines(keepends=True)[: 1 + END_TO_END_ROWS]))
    database = tmp_path / "t.db"
    timings: dict[str, float] = {}

    with ExitStack() as stack:
        processes = _Processes(stack, tmp_path)
        started = time.monotonic()
        server_command = [sys.executable, "-m", "prefect", "server", "start", "--analytics-off", "--no-ui"]
        server = processes.start(
            "server", [*server_command, "--host", "127.0.0.1", "--port", str(port)], isolated_environment, tmp_path
        )
        _wait_for(f"{api_url}/health", server, tmp_path / "server.log", deadline, "Prefect server")
        timings["server ready"] = time.monotonic() - started

        started = time.monotonic()
        served = processes.start(
            "serve",
            [sys.executable, "-c", "from deployments import serve_deployments; serve_deployments()"],
            {**isolated_environment, "PREFECT_API_URL": api_url, "PREFECT_RUNNER_POLL_FREQUENCY": "1"},
            tmp_path,  # not the project root: the served runs must import flows from anywhere
        )
        _wait_for(f"{api_url}/deployments/name/{NIGHTLY}", served, tmp_path / "serve.log", deadline, "serve")
        timings["deployments registered"] = time.monotonic() - started

        started = time.monotonic()
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            flow_run = run_deployment(
                name=NIGHTLY,
                parameters={"database_url": f"sqlite:///{database}", "paths": [str(csv)]},
                timeout=max(1.0, deadline - time.monotonic()),
                poll_interval=1,
            )
        timings["run finished"] = time.monotonic() - started
        print("end-to-end timings (s):", {name: round(value, 1) for name, value in timings.items()})

        assert isinstance(flow_run, FlowRun)
        state = flow_run.state
        assert state is not None and state.is_completed(), (
            f"nightly ended as {state!r}\n--- serve.log ---\n{_tail(tmp_path / 'serve.log', 80)}"
        )

    with contextlib.closing(sqlite3.connect(database)) as connection:
        (stored,) = connection.execute("SELECT COUNT(*) FROM bars").fetchone()
    assert stored == END_TO_END_ROWS
    assert not (tmp_path / "fallback.db").exists(), "the run ignored its database_url parameter"
