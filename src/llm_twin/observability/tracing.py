"""A thin layer over OpenTelemetry: ``configure_tracing(settings)`` once, then ``trace_span(...)``.

Without configuration every span is a non-recording no-op (OpenTelemetry's default), so tracing
costs nothing unless ``LLM_TWIN_TRACING`` asks for it:

- ``console``: spans printed to stdout as they end (debugging);
- ``otlp``: OTLP/HTTP to ``LLM_TWIN_OTLP_ENDPOINT`` (or the ``OTEL_EXPORTER_OTLP_*`` variables);
  needs ``opentelemetry-exporter-otlp-proto-http``;
- ``opik``: the same exporter pointed at Opik's OpenTelemetry endpoint (``OPIK_API_KEY``,
  ``OPIK_WORKSPACE`` and ``OPIK_URL_OVERRIDE`` as Opik's own SDK reads them);
- ``auto`` (the default): ``otlp`` when a standard ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` is set,
  else ``none``.

A backend that is slow or gone never slows a request: spans wait in a bounded queue
(``LLM_TWIN_OTLP_QUEUE_SIZE``; when it is full new spans are dropped and counted), one worker
thread exports them with a short timeout (``LLM_TWIN_OTLP_TIMEOUT_S``), and shutdown waits at
most that long. ``export_stats()`` counts exported, failed and dropped spans (``/metrics``).

The provider is kept in this module rather than installed globally, so tests and reloads can
reconfigure it; span context still propagates through OpenTelemetry's context (contextvars).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, Status, StatusCode, TraceFlags

from llm_twin.errors import ConfigError
from llm_twin.scheduling import EXPORT_NICENESS, lower_thread_priority

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)

TRACER_NAME = "llm_twin"
OPIK_CLOUD_URL = "https://www.comet.com/opik/api"
OPIK_LOCAL_URL = "http://localhost:5173/api"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()
_mode = "none"

#: Who sends the spans; Phoenix files them under the OpenInference project name.
RESOURCE = {"service.name": "llm-twin", "openinference.project.name": "llm-twin"}

#: Standard variables that, with ``LLM_TWIN_TRACING=auto``, turn OTLP export on.
OTEL_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

AttributeValue = str | bool | int | float


class TracingConfigError(ConfigError):
    """Tracing was requested but cannot be set up; the message says what to install or set."""


def configure_tracing(settings: Settings) -> str:
    """Set up the exporter for ``settings.tracing``; idempotent for the same mode. Returns the mode."""
    global _provider, _tracer, _mode
    mode = resolve_mode(settings.tracing)
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
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create(RESOURCE))
        if mode == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
        elif mode in ("otlp", "opik"):
            exporter = _otlp_exporter(settings, mode)
            provider.add_span_processor(bounded_batch_processor(exporter, settings.otlp_queue_size))
        else:  # pragma: no cover - Settings validates the literal
            raise TracingConfigError(f"LLM_TWIN_TRACING: unknown mode {mode!r}")
        _provider, _tracer, _mode = provider, provider.get_tracer(TRACER_NAME), mode
        logger.info("tracing enabled: %s", mode)
        return mode


def resolve_mode(mode: str) -> str:
    """``auto`` → ``otlp`` when a standard OTLP endpoint variable is set, else ``none``."""
    if mode != "auto":
        return mode
    return "otlp" if any(os.environ.get(name, "").strip() for name in OTEL_ENDPOINT_VARIABLES) else "none"


def install_exporter(exporter: Any, mode: str = "custom", *, batch: bool = False, queue_size: int = 2048) -> None:
    """Send spans to ``exporter`` (tests: ``InMemorySpanExporter``; other backends).

    Synchronously by default; ``batch`` uses the same bounded queue as OTLP export.
    """
    global _provider, _tracer, _mode
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    with _lock:
        _shutdown_locked()
        provider = TracerProvider(resource=Resource.create(RESOURCE))
        provider.add_span_processor(
            bounded_batch_processor(exporter, queue_size) if batch else SimpleSpanProcessor(CountingExporter(exporter))  # type: ignore[arg-type]  # a duck-typed SpanExporter
        )
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


def _otlp_exporter(settings: Settings, mode: str) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise TracingConfigError(
            f"LLM_TWIN_TRACING={mode} needs the OTLP exporter: pip install opentelemetry-exporter-otlp-proto-http"
        ) from None
    timeout = settings.otlp_timeout_s
    if mode == "otlp":
        # None lets the exporter read OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT / _HEADERS itself.
        endpoint = _traces_url(settings.otlp_endpoint) if settings.otlp_endpoint else None
        return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
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
    return OTLPSpanExporter(endpoint=_traces_url(base), headers=headers, timeout=timeout)


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


def start_span(
    name: str, parent: Span | None = None, *, attributes: Mapping[str, Any] | None = None, **named: Any
) -> Span:
    """A span that is *not* made current: for work split across generator steps (streaming).

    End it with ``span.end()``; wrap each step in ``activate(span)`` so spans opened inside the
    step (``trace_span``) become its children. Without ``parent`` the current span is the parent.
    """
    context = trace.set_span_in_context(parent) if parent is not None else None
    span = _tracer.start_span(name, context=context)
    set_attributes(span, {key.replace("__", "."): value for key, value in named.items()} | dict(attributes or {}))
    return span


@contextmanager
def activate(span: Span) -> Iterator[Span]:
    """Make ``span`` current for one block without ending it (attach and detach in the same step)."""
    with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
        yield span


@contextmanager
def trace_span(
    name: str,
    *,
    parent_context: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
    **named: Any,
) -> Iterator[Span]:
    """A span around a block; the current span inside it. Keyword attribute keys may use ``__`` for
    ``.``; ``attributes`` takes names as they are (``llm_twin.observability.conventions``).

    Exceptions are recorded on the span (type and message stay in the trace backend, never in a
    response) and re-raised. ``parent_context``: a parent other than the current span (an incoming
    ``traceparent``, the trace a feedback refers to).
    """
    attrs = {key.replace("__", "."): value for key, value in named.items()} | dict(attributes or {})
    with _tracer.start_as_current_span(
        name, context=parent_context, record_exception=False, set_status_on_exception=False
    ) as span:
        set_attributes(span, attrs)
        try:
            yield span
        except BaseException as error:
            record_error(span, error)
            raise


# --- trace ids -------------------------------------------------------------------------------------


def span_ids(span: Span | None = None) -> tuple[str, str] | None:
    """(trace id, span id) in hex of ``span`` (default: the current one); None without a valid one."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def remote_parent(trace_id: str, span_id: str) -> Context:
    """A context whose parent is span ``span_id`` of trace ``trace_id`` (hex): spans started in it join that trace."""
    parent = SpanContext(
        trace_id=int(trace_id, 16), span_id=int(span_id, 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


# --- export: counted, bounded, never in a request's way ----------------------------------------


class ExportStats:
    """Spans exported, failed (the backend refused or was unreachable) and dropped (queue full); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exported = 0
        self.failed = 0
        self.dropped = 0
        self.queued = 0

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"exported": self.exported, "failed": self.failed, "dropped": self.dropped, "queued": self.queued}


_stats = ExportStats()


def export_stats() -> dict[str, int]:
    """Counts since the process started (all exporters): exported, failed, dropped, queued now."""
    return _stats.snapshot()


class CountingExporter:
    """Wraps a ``SpanExporter``: counts what it exported or failed; an exception counts as a failure."""

    def __init__(self, exporter: SpanExporter, stats: ExportStats = _stats, *, queued: bool = False) -> None:
        self._exporter = exporter
        self._stats = stats
        #: The spans come out of a queue that counts them (``BoundedBatchProcessor``).
        self._queued = queued
        #: Past this (monotonic) time, batches are dropped instead of sent: shutdown is waiting.
        self.deadline = float("inf")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self._queued:
            # The batch worker's thread: serialising spans is CPU that a request should not wait for.
            lower_thread_priority(EXPORT_NICENESS)
            self._stats.add(queued=-len(spans))
        if time.monotonic() > self.deadline:
            self._stats.add(dropped=len(spans))
            return SpanExportResult.FAILURE
        try:
            result = self._exporter.export(spans)
        except Exception:
            logger.debug("span export raised", exc_info=True)
            result = SpanExportResult.FAILURE
        if result == SpanExportResult.SUCCESS:
            self._stats.add(exported=len(spans))
        else:
            self._stats.add(failed=len(spans))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._exporter.force_flush(timeout_millis))


#: How often the worker exports, and how long shutdown waits for the last batch.
EXPORT_DELAY_MS = 500
SHUTDOWN_FLUSH_MS = 2000


class BoundedBatchProcessor:
    """OpenTelemetry's ``BatchSpanProcessor`` behind an admission check that counts what it drops.

    The SDK's processor drops the oldest span silently when its queue is full; here a span is
    refused (and counted) before it would overflow, so the numbers in ``/metrics`` are exact, and
    shutdown waits ``SHUTDOWN_FLUSH_MS`` at most instead of the SDK's 30 s.
    """

    def __init__(self, exporter: SpanExporter, queue_size: int, stats: ExportStats = _stats) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._queue_size = queue_size
        self._stats = stats
        self._exporter = CountingExporter(exporter, stats, queued=True)
        self._inner = BatchSpanProcessor(
            self._exporter,  # type: ignore[arg-type]  # a duck-typed SpanExporter
            max_queue_size=queue_size,
            max_export_batch_size=min(512, queue_size),
            schedule_delay_millis=EXPORT_DELAY_MS,
        )

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self._stats.snapshot()["queued"] >= self._queue_size:
            self._stats.add(dropped=1)
            return
        self._stats.add(queued=1)
        self._inner.on_end(span)

    def _on_ending(self, span: Any) -> None:  # the SDK calls it on every processor (1.3x)
        pass

    def shutdown(self) -> None:
        # The SDK's shutdown waits up to 30 s for the worker, which may be stuck in an export. Here
        # batches after the deadline are dropped (counted), and the wait itself is bounded: a worker
        # still blocked in its exporter is left behind (a daemon thread; the process is exiting).
        seconds = SHUTDOWN_FLUSH_MS / 1000
        self._exporter.deadline = time.monotonic() + seconds
        closer = threading.Thread(target=self._inner.shutdown, name="span-export-shutdown", daemon=True)
        closer.start()
        closer.join(seconds)
        if closer.is_alive():
            logger.warning("span exporter still busy after %.1fs at shutdown; its last spans are lost", seconds)

    def force_flush(self, timeout_millis: int = SHUTDOWN_FLUSH_MS) -> bool:
        return self._inner.force_flush(timeout_millis)


def bounded_batch_processor(exporter: SpanExporter, queue_size: int) -> Any:
    return BoundedBatchProcessor(exporter, queue_size)
