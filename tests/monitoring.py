"""Debian's Prometheus, Pushgateway and node_exporter on loopback, for the metrics tests.

``.ci/run`` installs them (``apt-get install prometheus prometheus-pushgateway prometheus-node-exporter``).
Without them the tests fail when ``CI`` is set (a CI image without them is a broken image) and are
skipped elsewhere, both with the command that installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = "apt-get install prometheus prometheus-pushgateway prometheus-node-exporter"
#: Seconds a service may take to answer, and a scraped value to become queryable, on 2 busy cores.
PATIENCE_SECONDS = 60.0


def program(name: str) -> str:
    """Return the path of `name`; without it fail under CI and skip elsewhere."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Monitoring:
    """The running services: where to drop a metrics file, where to push, and Prometheus to ask."""

    textfile_folder: Path
    pushgateway: str
    prometheus: str

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector `expression` evaluates to now, as Prometheus's API returns it."""
        address = f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
        with urllib.request.urlopen(address, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def wait_for(self, expression: str) -> list[dict[str, Any]]:
        """The first non-empty answer to `expression` (scrapes run every second)."""
        deadline = time.monotonic() + PATIENCE_SECONDS
        while True:
            found = self.query(expression)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def _wait_until_answering(address: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(address, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{address} did not answer within {PATIENCE_SECONDS:.0f} s: {log.read_text()[-2000:]}")


@contextmanager
def _service(arguments: list[str], address: str, folder: Path, name: str) -> Iterator[None]:
    log = folder / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(arguments, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_until_answering(address, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_monitoring(folder: Path, *, serve_port: int) -> Iterator[Monitoring]:
    """Start node_exporter (its textfile collector only), the Pushgateway and Prometheus scraping both
    and ``127.0.0.1:serve_port`` (`neuraltrade serve`'s metrics) every second; stop them after."""
    prometheus, pushgateway, node_exporter = (
        program(name) for name in ("prometheus", "prometheus-pushgateway", "prometheus-node-exporter")
    )
    textfiles = folder / "textfiles"
    textfiles.mkdir()
    ports = {name: free_port() for name in ("node", "push", "prometheus")}
    targets = {"textfile": ports["node"], "pushgateway": ports["push"], "serve": serve_port}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": job,
                "honor_labels": job == "pushgateway",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }
            for job, port in targets.items()
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    with ExitStack() as stack:
        stack.enter_context(
            _service(
                [
                    node_exporter,
                    "--collector.disable-defaults",
                    "--collector.textfile",
                    f"--collector.textfile.directory={textfiles}",
                    f"--web.listen-address=127.0.0.1:{ports['node']}",
                ],
                f"http://127.0.0.1:{ports['node']}/metrics",
                folder,
                "node_exporter",
            )
        )
        stack.enter_context(
            _service(
                [pushgateway, f"--web.listen-address=127.0.0.1:{ports['push']}"],
                f"http://127.0.0.1:{ports['push']}/metrics",
                folder,
                "pushgateway",
            )
        )
        stack.enter_context(
            _service(
                [
                    prometheus,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                ],
                f"http://127.0.0.1:{ports['prometheus']}/-/ready",
                folder,
                "prometheus",
            )
        )
        yield Monitoring(
            textfile_folder=textfiles,
            pushgateway=f"127.0.0.1:{ports['push']}",
            prometheus=f"http://127.0.0.1:{ports['prometheus']}",
        )
