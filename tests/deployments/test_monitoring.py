"""Specification of the metrics as Prometheus sees them (issue 14, point 3): the alert rules under
`promtool test rules`, the Grafana dashboard, and a flow's metrics read back through Prometheus's query
API from node_exporter's textfile collector, the Pushgateway and `neuraltrade serve`'s ``/metrics``."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from models.engine import session_scope
from tasks.metrics import PUSH_JOB
from tests.monitoring import program, running_monitoring

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    promtool = program("promtool")
    folder = DEPLOYMENTS / "prometheus"

    checked = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=folder, capture_output=True, text=True)
    tested = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=folder, capture_output=True, text=True)

    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked.stdout + checked.stderr
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def metric_families(database_url: str) -> set[str]:
    """The name of every metric family the platform exports (as Prometheus names its series)."""
    from tasks.metrics import collect_metrics, current_batch

    with session_scope(database_url) as session:
        registry: CollectorRegistry = collect_metrics(session)
    names = set()
    for source in (registry, current_batch().registry):
        for family in source.collect():
            suffix = "_total" if family.type == "counter" else ("_bucket" if family.type == "histogram" else "")
            names.add(family.name + suffix)
    return names


def test_the_grafana_dashboard_draws_every_metric_from_its_prometheus_datasource_variable(database_url: str) -> None:
    dashboard = json.loads((DEPLOYMENTS / "grafana" / "neuraltrade.json").read_text())
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])
    sources = {panel["datasource"]["uid"] for panel in dashboard["panels"]}

    assert [entry["name"] for entry in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert sources == {"${DS_PROMETHEUS}"} and "rows" not in dashboard  # the classic model: panels, no rows
    missing = sorted(name for name in metric_families(database_url) if name not in expressions)
    assert missing == []


@pytest.mark.timeout(300)
def test_a_flows_metrics_reach_prometheus_by_textfile_push_and_scrape(
    database_url: str, sample_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.embed_observations import embed_observations
    from flows.ingest_bars import ingest_bars
    from flows.maintain_index import maintain_index
    from tasks.metrics import METRICS_ENVIRONMENT_VARIABLE, PUSHGATEWAY_VARIABLE, serve_metrics

    server = serve_metrics(database_url, 0)
    try:
        with running_monitoring(tmp_path, serve_port=server.server_port) as monitoring:
            monkeypatch.setenv(METRICS_ENVIRONMENT_VARIABLE, str(monitoring.textfile_folder / "neuraltrade.prom"))
            monkeypatch.setenv(PUSHGATEWAY_VARIABLE, monitoring.pushgateway)
            ingest_bars.fn(paths=[str(sample_csv)], database_url=database_url)
            embed_observations.fn(database_url=database_url)
            maintain_index.fn(database_url=database_url)  # audits recall: searches the memory

            # A pushed series keeps the job it was pushed as (the scrape honours the Pushgateway's labels).
            rows = {
                job: monitoring.wait_for(f'neuraltrade_table_rows{{table="bars", job="{job}"}}')
                for job in ("textfile", PUSH_JOB, "serve")
            }
            recall = monitoring.wait_for(f'neuraltrade_memory_recall{{collection="market_state", job="{PUSH_JOB}"}}')
            searches = monitoring.wait_for("sum(neuraltrade_memory_search_seconds_count)")
            runs = monitoring.wait_for('neuraltrade_last_run_finished_timestamp_seconds{job="textfile"}')
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
                served = response.read().decode()
    finally:
        server.shutdown()

    assert {job: [float(sample["value"][1]) for sample in found] for job, found in rows.items()} == {
        "textfile": [120.0],
        PUSH_JOB: [120.0],
        "serve": [120.0],
    }
    assert float(recall[0]["value"][1]) == 1.0
    assert float(searches[0]["value"][1]) > 0
    assert {sample["metric"]["kind"] for sample in runs} == {"ingest_bars", "embed_observations", "maintain_index"}
    assert 'neuraltrade_table_rows{table="bars"} 120.0' in served
