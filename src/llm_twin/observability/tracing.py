"""A thin layer over OpenTelemetry: ``configure_tracing(settings)`` once, then ``trace_span(...)``.

Without configuration every span is a non-recording no-op (OpenTelemetry's default), so tracing
costs nothing unless ``LLM_TWIN_TRACING`` asks for it:

- ``console``: spans printed to stdout as they end (debugging);
- ``otlp``: OTLP/HTTP to ``LLM_TWIN_OTLP_ENDPOINT`` (or the ``OTEL_EXPORTER_OTLP_*`` variables);
  needs ``opentelemetry-exporter-otlp-proto-http``;
- ``opik``: the same exporter pointed at Opik's OpenTelemetry endpoint (``OPIK_API_KEY``,
  ``OPIK_WORKSPACE`` and ``OPIK_URL_OVERRIDE`` as Opik's own SDK reads them).

The provider is kept in this module rather than installed globally, so tests and reloads can
reconfigure it; span context still propagates through OpenTelemetry's context (contextvars).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from llm_twin.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)

TRACER_NAME = "llm_twin"
OPIK_CLOUD_URL = "https://www.comet.com/opik/api"
OPIK_LOCAL_URL = "http://localhost:5173/api"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()
_mode = "none"

AttributeValue = str | bool | int | float


class TracingConfigError(ConfigError):
    """Tracing was requested but cannot be set up; the message says what to install or set."""


def configure_tracing(settings: Settings) -> str:
    """Set up the exporter for ``settings.tracing``; idempotent for the same mode. Returns the mode."""
    global _provider, _tracer, _mode
    mode = settings.tracing
    with _lock:
        if mode == _mode and (mode == "none" or _provider is not None):
            return mode
        if mode == "none" and _mode == "custom":  # an explicitly installed exporter wins over "none"
            return _mode
        _shutdown_locked()
        if mode == "none":
            return mode
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "llm-twin"}))
        if mode == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
        elif mode in ("otlp", "opik"):
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(settings)))
        else:  # pragma: no cover - Settings validates the literal
            raise TracingConfigError(f"LLM_TWIN_TRACING: unknown mode {mode!r}")
        _provider, _tracer, _mode = provider, provider.get_tracer(TRACER_NAME), mode
        logger.info("tracing enabled: %s", mode)
        return mode


def install_exporter(exporter: Any, mode: str = "custom") -> None:
    """Send spans to ``exporter`` synchronously (tests: ``InMemorySpanExporter``; other backends)."""
    global _provider, _tracer, _mode
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    with _lock:
        _shutdown_locked()
        provider = TracerProvider(resource=Resource.create({"service.name": "llm-twin"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _provider, _tracer, _mode = provider, provider.get_tracer(TRACER_NAME), mode


def shutdown_tracing() -> None:
    """Flush and drop the exporter (end of a CLI command, app shutdown)."""
    with _lock:
        _shutdown_locked()


def _shutdown_locked() -> None:
    global _provider, _tracer, _mode
    if _provider is not None:
        try:
            _provider.shutdown()
        except Exception:  # an exporter that cannot flush must not break shutdown
            logger.warning("tracing exporter did not shut down cleanly", exc_info=True)
    _provider, _tracer, _mode = None, trace.NoOpTracer(), "none"


def _otlp_exporter(settings: Settings) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise TracingConfigError(
            f"LLM_TWIN_TRACING={settings.tracing} needs the OTLP exporter: "
            "pip install opentelemetry-exporter-otlp-proto-http"
        ) from None
    if settings.tracing == "otlp":
        # None lets the exporter read OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT / _HEADERS itself.
        return OTLPSpanExporter(endpoint=_traces_url(settings.otlp_endpoint) if settings.otlp_endpoint else None)
    base = (
        settings.otlp_endpoint
        or (
            os.environ.get("OPIK_URL_OVERRIDE")
            or (OPIK_CLOUD_URL if os.environ.get("OPIK_API_KEY") else OPIK_LOCAL_URL)
        ).rstrip("/")
        + "/v1/private/otel"
    )
    headers = {"projectName": settings.opik_project}
    if key := os.environ.get("OPIK_API_KEY"):
        headers["Authorization"] = key
    if workspace := os.environ.get("OPIK_WORKSPACE"):
        headers["Comet-Workspace"] = workspace
    return OTLPSpanExporter(endpoint=_traces_url(base), headers=headers)


def _traces_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def tracing_mode() -> str:
    return _mode


def set_attributes(span: Span, attributes: Mapping[str, Any]) -> None:
    """Set attributes, skipping None and turning anything that is not a primitive into a string."""
    if not span.is_recording():
        return
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
            span.set_attribute(key, list(value))
        elif isinstance(value, (str, bool, int, float)):
            span.set_attribute(key, value)
        else:
            span.set_attribute(key, str(value))


def record_error(span: Span, error: BaseException) -> None:
    """Mark ``span`` failed (the exception stays in the trace backend, never in a response)."""
    if span.is_recording() and not isinstance(error, GeneratorExit):
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def start_span(name: str, parent: Span | None = None, **attributes: Any) -> Span:
    """A span that is *not* made current: for work split across generator steps (streaming).

    End it with ``span.end()``; wrap each step in ``activate(span)`` so spans opened inside the
    step (``trace_span``) become its children. Without ``parent`` the current span is the parent.
    """
    context = trace.set_span_in_context(parent) if parent is not None else None
    span = _tracer.start_span(name, context=context)
    set_attributes(span, {key.replace("__", "."): value for key, value in attributes.items()})
    return span


@contextmanager
def activate(span: Span) -> Iterator[Span]:
    """Make ``span`` current for one block without ending it (attach and detach in the same step)."""
    with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
        yield span


@contextmanager
def trace_span(name: str, **attributes: Any) -> Iterator[Span]:
    """A span around a block; the current span inside it. Attribute keys may use ``__`` for ``.``.

    Exceptions are recorded on the span (type and message stay in the trace backend, never in a
    response) and re-raised.
    """
    attrs = {key.replace("__", "."): value for key, value in attributes.items()}
    with _tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False) as span:
        set_attributes(span, attrs)
        try:
            yield span
        except BaseException as error:
            record_error(span, error)
            raise
