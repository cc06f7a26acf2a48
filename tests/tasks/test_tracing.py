"""Specification of tracing (issue 14, point 4): the span tree of a nightly run, with Prefect's flow and
task spans and the platform's own (searches, backtests, distillation, verify), trace ids in the log lines,
and the exporter chosen by configuration."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from neuraltrade.errors import ConfigError
from tasks.tracing import EXPORTER_VARIABLE, configure_tracing
from tests.postgresql import sqlite_only
from tests.tracing_support import recording_spans


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = recording_spans()
    yield exporter
    exporter.clear()


def test_no_exporter_by_default_and_an_unknown_one_is_a_config_error_naming_it() -> None:
    assert configure_tracing({}) == "none"
    with pytest.raises(ConfigError, match=r"NEURALTRADE_TRACE_EXPORTER='jaeger' is not one of none, console, otlp"):
        configure_tracing({EXPORTER_VARIABLE: "jaeger"})


def ancestors(span: Any, by_id: dict[int, Any]) -> list[Any]:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


def run_name(span: Any) -> str:
    return str(span.attributes.get("prefect.run.name", ""))


@sqlite_only  # the night's spans do not depend on the database (flows run on both in tests/flows)
@pytest.mark.timeout(600)
def test_a_nightly_is_one_trace_of_flow_task_and_platform_spans_whose_logs_carry_its_id(
    prefect_harness: None,
    spans: InMemorySpanExporter,
    database_url: str,
    sample_csv: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from flows.nightly import nightly

    with caplog.at_level(logging.INFO, logger="prefect"):
        nightly(database_url=database_url, paths=[str(sample_csv)], checkpoint_dir=str(tmp_path / "checkpoints"))

    finished = spans.get_finished_spans()
    by_id = {span.context.span_id: span for span in finished}
    [root] = [span for span in finished if span.parent is None]
    flows = [span for span in finished if span.attributes.get("prefect.run.type") == "flow"]
    tasks = [span for span in finished if span.attributes.get("prefect.run.type") == "task"]
    own = {name: [span for span in finished if span.name == name] for name in ("backtest", "distill", "verify")}
    searches = [span for span in finished if span.name == "memory.search"]

    assert {span.context.trace_id for span in finished} == {root.context.trace_id}
    assert root.attributes["prefect.run.type"] == "flow" and len(flows) == 7  # the night and its six stages
    assert all(by_id[span.parent.span_id] is root for span in flows if span is not root)
    assert len(tasks) > 30 and len(own["backtest"]) == 10 and len(own["verify"]) == 1 and own["distill"]
    for name, task_prefix in (
        ("backtest", "backtest_symbol"),
        ("distill", "distill_strategy"),
        ("verify", "verify_log"),
    ):
        for span in own[name]:
            chain = ancestors(span, by_id)
            assert run_name(chain[0]).startswith(task_prefix), (name, run_name(chain[0]))
            assert chain[-1] is root
    assert {span.attributes["symbol"] for span in own["backtest"]} == {"NVDA"}
    assert searches and all(span.attributes["collection"] for span in searches)
    trace_id = format(root.context.trace_id, "032x")
    # Every task run's lines, and the flow runs' lines written while their span is open (a flow's last
    # line, its final state, is written after its span has ended).
    task_lines = [record.getMessage() for record in caplog.records if record.name == "prefect.task_runs"]
    flow_lines = [record.getMessage() for record in caplog.records if record.name == "prefect.flow_runs"]
    assert len(task_lines) > 30 and all(line.endswith(f"trace_id={trace_id}") for line in task_lines)
    assert sum(line.endswith(f"trace_id={trace_id}") for line in flow_lines) > len(flow_lines) / 2
