"""The one in-memory span exporter of a test process: a tracer provider is set once per process."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasks.tracing import configure_tracing

EXPORTER = InMemorySpanExporter()


def recording_spans() -> InMemorySpanExporter:
    """Set the process's tracer provider to `EXPORTER` (once), empty it and return it."""
    configure_tracing(exporter=EXPORTER)
    EXPORTER.clear()
    return EXPORTER
