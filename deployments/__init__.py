"""Every neuraltrade flow as a Prefect deployment, served from one long-lived process.

`DEPLOYMENT_SPECS` is the single table of what is deployed: one line per flow, naming the flow as
``module:attribute``, the deployment's name and its cron schedule (``None`` for runs on demand only).
Adding a flow to the platform is adding one line there.

Deployments use module-path entrypoints (``flows.nightly.nightly``): a run imports ``flows.nightly``
as a package module, so it is imported once, under one name, whatever the working directory.
"""

from __future__ import annotations

import importlib
import inspect
import os
import site
from pathlib import Path
from typing import Any, NamedTuple

from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.settings import get_current_settings
from prefect.types.entrypoint import EntrypointType

from flows import ANNOUNCE_RUNS_VARIABLE
from neuraltrade.errors import ConfigError

__all__ = [
    "DEPLOYMENT_SPECS",
    "DEPLOYMENT_TAG",
    "RUNS_PER_DEPLOYMENT",
    "SCHEDULE_TIMEZONE",
    "SERVED_RUN_LIMIT",
    "DeploymentSpec",
    "build_deployment",
    "build_deployments",
    "load_flow",
    "serve_deployments",
]

#: Time zone of every cron schedule; market sessions and the data are in UTC.
SCHEDULE_TIMEZONE = "UTC"

#: Tag carried by every deployment, so the UI and the API can filter on the platform's own.
DEPLOYMENT_TAG = "neuraltrade"

#: Runs of one deployment at once, enforced by the Prefect server; extra runs wait in its queue.
RUNS_PER_DEPLOYMENT = 1

#: Flow runs one served process executes at once. The default database is one SQLite file, which
#: takes one writer at a time; two runs writing it at once spend their time in busy waits or fail
#: with "database is locked".
SERVED_RUN_LIMIT = 1


class DeploymentSpec(NamedTuple):
    """One deployed flow: where it lives, what the deployment is called, when it runs."""

    flow: str
    """The flow as ``package.module:attribute``."""
    name: str
    """The deployment's name; runs are started as ``<flow name>/<deployment name>``."""
    cron: str | None = None
    """A cron expression in `SCHEDULE_TIMEZONE`, or ``None`` for runs on demand only."""
    parameters: dict[str, Any] | None = None
    """Parameter values that override the flow's own defaults in every run of the deployment."""


DEPLOYMENT_SPECS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec("flows.ingest_bars:ingest_bars", "ingest_bars-default"),
    DeploymentSpec("flows.embed_observations:embed_observations", "embed_observations-default"),
    DeploymentSpec("flows.maintain_index:maintain_index", "maintain_index-default"),
    DeploymentSpec("flows.run_backtests:run_backtests", "run_backtests-default"),
    DeploymentSpec("flows.distill_reflexions:distill_reflexions", "distill_reflexions-default"),
    DeploymentSpec("flows.verify_provenance:verify_provenance", "verify_provenance-default"),
    DeploymentSpec("flows.nightly:nightly", "nightly-default", cron="0 2 * * 1-5"),
)


def load_flow(reference: str) -> Flow[..., Any]:
    """Import and return the flow named by `reference`.

    Parameters
    ----------
    reference
        The flow as ``package.module:attribute``, e.g. ``"flows.nightly:nightly"``.

    Returns
    -------
    Flow
        The flow object.

    Raises
    ------
    ConfigError
        If `reference` is not of that form, or the attribute is not a Prefect flow.
    """
    module_name, separator, attribute = reference.partition(":")
    if not separator or not module_name or not attribute:
        raise ConfigError(f"flow reference {reference!r} is not of the form 'package.module:attribute'")
    module = importlib.import_module(module_name)
    candidate = getattr(module, attribute, None)
    if not isinstance(candidate, Flow):
        raise ConfigError(f"flow reference {reference!r} does not name a Prefect flow")
    return candidate


def _description(flow: Flow[..., Any]) -> str:
    docstring = inspect.getdoc(flow.fn)
    if docstring:
        return docstring.split("\n\n", 1)[0].replace("\n", " ")
    return f"neuraltrade flow {flow.name}"


def build_deployment(spec: DeploymentSpec) -> RunnerDeployment:
    """Return the deployment that `spec` declares.

    Parameters
    ----------
    spec
        One line of `DEPLOYMENT_SPECS`.

    Returns
    -------
    RunnerDeployment
        The deployment, not yet registered with any Prefect server.

    Raises
    ------
    ConfigError
        If `spec` names something that is not a flow.
    TypeError
        If called while an event loop runs in this thread.
    """
    flow = load_flow(spec.flow)
    schedules = [Cron(spec.cron, timezone=SCHEDULE_TIMEZONE)] if spec.cron is not None else None
    deployment = flow.to_deployment(
        name=spec.name,
        schedules=schedules,
        # ENQUEUE, not CANCEL_NEW: a manual run started during the nightly one should wait, not vanish.
        concurrency_limit=ConcurrencyLimitConfig(
            limit=RUNS_PER_DEPLOYMENT, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        parameters=dict(spec.parameters or {}),
        description=_description(flow),
        tags=[DEPLOYMENT_TAG, "scheduled" if spec.cron is not None else "on-demand"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    if not isinstance(deployment, RunnerDeployment):
        # `to_deployment` hands back a coroutine when an event loop is running in this thread.
        raise TypeError("build_deployment was called from async code; build deployments outside the event loop")
    return deployment


def build_deployments() -> list[RunnerDeployment]:
    """Return one deployment per line of `DEPLOYMENT_SPECS`, in that order.

    Returns
    -------
    list of RunnerDeployment
        The deployments, with module-path entrypoints; nothing is sent to a Prefect server.

    Raises
    ------
    ConfigError
        If a line names something that is not a flow.
    TypeError
        If called while an event loop runs in this thread.
    """
    return [build_deployment(spec) for spec in DEPLOYMENT_SPECS]


def _put_flow_packages_on_child_path(deployments: list[RunnerDeployment]) -> None:
    # Served runs start as `python -m prefect.engine` child processes that re-import each flow by
    # its module path. They inherit this environment but not this process's sys.path, so flows
    # found through the working directory or a script's folder (an uninstalled checkout) would
    # not import there. Installed packages need no help, and putting site-packages on PYTHONPATH
    # would move it ahead of the standard library.
    installed = {str(Path(folder).resolve()) for folder in [*site.getsitepackages(), site.getusersitepackages()]}
    roots: list[str] = []
    for deployment in deployments:
        module_name = (deployment.entrypoint or "").rpartition(".")[0]
        module_file = getattr(importlib.import_module(module_name), "__file__", None)
        if module_file is None:
            continue
        root = str(Path(module_file).resolve().parents[module_name.count(".")])
        if root not in installed and root not in roots:
            roots.append(root)
    current = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    os.environ["PYTHONPATH"] = os.pathsep.join(roots + [entry for entry in current if entry not in roots])


def serve_deployments(limit: int | None = None) -> None:
    """Register every deployment with the Prefect API and execute their runs here until stopped.

    Blocks until the process receives SIGINT or SIGTERM; on the way out the schedules are paused,
    so runs do not pile up while nothing serves them. The API is the one ``PREFECT_API_URL`` names,
    typically a ``prefect server start`` at ``http://127.0.0.1:4200/api``.

    Parameters
    ----------
    limit
        Flow runs this process executes at once; ``None`` means `SERVED_RUN_LIMIT` (one, because
        the default database is a single SQLite file).

    Raises
    ------
    ConfigError
        If `limit` is below one, or ``PREFECT_API_URL`` is not set.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"serve limit {limit} is below 1")
    # Without an API URL Prefect would serve against a temporary server of its own: one that runs
    # no scheduler (the nightly cron would never fire) and that no other process can find.
    if not get_current_settings().api.url:
        raise ConfigError(
            "PREFECT_API_URL is not set: start a server with `prefect server start` and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api before serving"
        )
    deployments = build_deployments()
    _put_flow_packages_on_child_path(deployments)
    # Runs execute in child processes that inherit this terminal: each says when it starts and ends.
    os.environ[ANNOUNCE_RUNS_VARIABLE] = "1"
    serve(*deployments, limit=SERVED_RUN_LIMIT if limit is None else limit)
