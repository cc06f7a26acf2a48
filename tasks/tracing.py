"""OpenTelemetry traces: Prefect's own flow and task spans, and ours for searches, backtests,
distillation and verify, with each span's trace id in the log lines written inside it.

The exporter is chosen by ``$NEURALTRADE_TRACE_EXPORTER``: ``none`` (the default: no tracer provider is
set, so every span is OpenTelemetry's no-op and costs nothing measurable), ``console`` (spans as JSON on
standard error) or ``otlp`` (to the collector the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` names, over
gRPC; extra ``otel``). Prefect 3 emits a span per flow run and task run once a tracer provider is set;
`configure_tracing` sets it, once per process, when the flows are imported.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import trace

from models.vector_store import SEARCH_SPANS
from neuraltrade.errors import ConfigError

Result = TypeVar("Result")

EXPORTER_VARIABLE = "NEURALTRADE_TRACE_EXPORTER"
EXPORTERS = ("none", "console", "otlp")
#: The instrumentation scope of the platform's own spans.
TRACER_NAME = "neuraltrade"
#: Loggers whose lines carry the trace id of the span they are written in (the platform's and Prefect's).
TRACED_LOGGERS = ("prefect", "flows", "tasks", "models", "neuraltrade_cli")

_configured = threading.Lock()
_state: dict[str, Any] = {}


def configure_tracing(environment: Mapping[str, str] | None = None, *, exporter: Any = None) -> str:
    """Set this process's tracer provider as `environment` (default: this process's) says, once; return
    the exporter's name. `exporter` (a span exporter) replaces the configured one (tests pass an
    in-memory exporter).

    Raises
    ------
    ConfigError
        If the exporter's name is unknown, or ``otlp`` is asked without its package.
    """
    environment = os.environ if environment is None else environment
    name = environment.get(EXPORTER_VARIABLE, "none").strip().lower() or "none"
    if name not in EXPORTERS:
        raise ConfigError(f"{EXPORTER_VARIABLE}={name!r} is not one of {', '.join(EXPORTERS)}")
    if exporter is None and name == "none":
        return name
    with _configured:
        if "provider" in _state:
            return str(_state["name"])
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "neuraltrade"}))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            name = "given"
        else:
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
        trace.set_tracer_provider(provider)
        _trace_ids_in_logs()
        if _search_span not in SEARCH_SPANS:
            SEARCH_SPANS.append(_search_span)
        _state.update(provider=provider, name=name)
    return name


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as error:
        raise ConfigError(
            f"{EXPORTER_VARIABLE}=otlp needs the OTLP exporter: pip install 'neuraltrade[otel]' ({error})"
        ) from error
    return OTLPSpanExporter()


def flush_traces() -> None:
    """Export every span ended so far (before a short-lived process exits)."""
    provider = _state.get("provider")
    if provider is not None:
        provider.force_flush()


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span of the platform's own, with `attributes` (None values left out); a no-op without a
    tracer provider."""
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name, attributes={key: value for key, value in attributes.items() if value is not None}
    ) as current:
        yield current


def traced(name: str, *parameters: str) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Decorate a task's function to run in a span called `name`, whose attributes are the values of
    its `parameters` (a value with a ``name``, such as a strategy's specification, by that name)."""

    def decorate(function: Callable[..., Result]) -> Callable[..., Result]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def run(*arguments: Any, **options: Any) -> Result:
            bound = signature.bind_partial(*arguments, **options).arguments
            attributes = {parameter: _attribute(bound.get(parameter)) for parameter in parameters}
            with span(name, **attributes):
                return function(*arguments, **options)

        return run

    return decorate


def _attribute(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    named = getattr(value, "name", None)
    return named if isinstance(named, str) else str(value)


def _search_span(collection: str, k: int) -> Any:
    return span("memory.search", collection=collection, k=k)


def _trace_ids_in_logs() -> None:
    """Make every log record of `TRACED_LOGGERS` (and their children) written inside a span end with
    ``trace_id=<32 hex digits>``: at the record's creation, so that every handler (Prefect's console
    and the API handler that ships lines to its UI) writes the same line."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "traced", False):
        return

    def traced(*arguments: Any, **options: Any) -> logging.LogRecord:
        record = previous(*arguments, **options)
        if record.name.split(".", 1)[0] in TRACED_LOGGERS:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                trace_id = format(context.trace_id, "032x")
                record.trace_id = trace_id  # for handlers that format it
                record.msg = f"{record.getMessage()} trace_id={trace_id}"
                record.args = ()
        return record

    traced.traced = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(traced)
