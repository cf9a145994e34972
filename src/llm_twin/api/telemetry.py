"""The API's telemetry: one ASGI middleware for request ids, the request span, metrics and the access log.

``TelemetryMiddleware`` is pure ASGI (streams pass through untouched) and must be the outermost
middleware, so that every route and every other middleware's responses (401, 413, ...) are
counted. Per request it:

- takes ``X-Request-ID`` from the client (or makes one) and returns it;
- opens the HTTP span (a child of an incoming ``traceparent``), named by the route template;
- returns the trace id as ``X-Trace-Id`` (a generated one when tracing is off, so logs and
  feedback can still refer to the request);
- records requests, latency and error codes in ``/metrics`` and writes one access-log line.

Answers are counted where they are completed, once for every route that answers: the pipeline
reports each one to ``Telemetry.record_answer`` (``RAGPipeline.add_listener``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Final

from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_twin.observability import conventions as oi
from llm_twin.observability.context import (
    RequestContext,
    accepted_request_id,
    new_span_id,
    new_trace_id,
    request_context,
)
from llm_twin.observability.metrics import UNMATCHED_ROUTE, ServiceMetrics
from llm_twin.observability.tracing import set_attributes, span_ids, trace_span

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from llm_twin.api.service import ServiceState
    from llm_twin.rag.pipeline import AnswerReport

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("llm_twin.access")

#: Probes, metrics and static files are counted but not worth a span (or an info log line) each.
UNTRACED_PREFIXES: Final = ("/health", "/ready", "/metrics", "/static", "/docs", "/openapi.json", "/favicon")
#: Trace ids remembered for ``POST /feedback`` (an LRU: about 1 MB).
RECENT_TRACES: Final = 10_000


class RecentTraces:
    """Trace id → the id of the request's span, for the last ``capacity`` traced requests; thread-safe."""

    def __init__(self, capacity: int = RECENT_TRACES) -> None:
        self._capacity = capacity
        self._spans: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, trace_id: str, span_id: str) -> None:
        with self._lock:
            self._spans[trace_id] = span_id
            self._spans.move_to_end(trace_id)
            while len(self._spans) > self._capacity:
                self._spans.popitem(last=False)

    def span_of(self, trace_id: str) -> str | None:
        with self._lock:
            return self._spans.get(trace_id)


class Telemetry:
    """Per-app telemetry state: the metrics registry and the recent trace ids."""

    def __init__(self, metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics or ServiceMetrics()
        self.recent = RecentTraces()

    def record_answer(self, report: AnswerReport) -> None:
        """A completed answer (the pipeline's listener): stage timings, tokens, candidates, degradations."""
        answer = report.answer
        self.metrics.answer(
            timings_ms=answer.timings_ms,
            streamed=report.streamed,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            rerank_candidates=report.rerank_candidates,
            sources=len(answer.sources),
            degradations=report.degradations,
        )

    def watch_service(self, service: ServiceState) -> None:
        """Queue gauges read at scrape time: the request limit's slots, the local model's FIFO."""
        m = self.metrics
        limiter = service.limiter
        m.watch("api_workers_busy", "Request slots in use (LLM_TWIN_API_WORKERS).", lambda: limiter.borrowed_tokens)
        m.watch("api_requests_waiting", "Requests waiting for a slot.", lambda: limiter.statistics().tasks_waiting)
        m.watch(
            "llm_queue_length",
            "Calls waiting for the local model (generation and helper), not counting the running one.",
            lambda: float(getattr(service.pipeline.llm, "queue_length", 0)) if service.pipeline else 0.0,
        )

        # The background ingest (serve --ingest / --watch): the same progress object /ready shows.
        def progress(field: str) -> Callable[[], float]:
            def read() -> float:
                snapshot = service.ingest_progress()
                return float(getattr(snapshot, field) or 0.0) if snapshot is not None else 0.0

            return read

        for field, documentation in (
            ("documents_total", "Documents of the background ingest."),
            ("documents_done", "Documents of the background ingest written or skipped as unchanged."),
            ("chunks_total", "Chunks the background ingest has to write."),
            ("chunks_done", "Chunks the background ingest has written."),
            ("chunks_per_s", "Chunks per second the background ingest writes."),
            ("eta_s", "Seconds the background ingest still needs, estimated."),
        ):
            m.watch(f"ingest_{field}", documentation, progress(field))


def route_template(scope: Scope, before: Scope | None = None) -> str:
    """The matched route's path template (``/rag``; a mount's prefix), never the raw path.

    FastAPI records its own routes in ``scope["route"]``; plain Starlette routes added to the app
    (``/mcp``, the ``/static`` mount) are matched again against ``before``, the request's scope as
    it arrived.
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        template = getattr(route, "path", None)
        if isinstance(route, BaseRoute) and isinstance(template, str) and template and before is not None:
            match, _ = route.matches(dict(before))
            if match is Match.FULL:
                return template
    return UNMATCHED_ROUTE


def _incoming_context(scope: Scope) -> Context | None:
    """The trace context of an incoming ``traceparent`` header (W3C), if any."""
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", [])}
    if "traceparent" not in headers:
        return None
    from opentelemetry.propagate import extract

    return extract(headers)


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        request_id = accepted_request_id(_header(scope, b"x-request-id"))
        traced = path != "/" and not path.startswith(UNTRACED_PREFIXES)
        parent = _incoming_context(scope)
        context = RequestContext(request_id)
        metrics = self.telemetry.metrics
        status = 500  # if the app fails before it starts a response
        arrived = dict(scope)  # routing adds to the scope; a route template is matched on the original
        started = time.perf_counter()
        metrics.request_started()
        span_block = (
            trace_span(
                f"{method} {path}",
                parent_context=parent,
                http__request__method=method,
                url__path=path,
                attributes={oi.SPAN_KIND: oi.CHAIN, oi.REQUEST_ID: request_id},
            )
            if traced
            else nullcontext(None)
        )
        with request_context(context), span_block as span:
            ids = span_ids(span) if span is not None else None
            if ids is None and parent is not None:  # not exported here, but still the caller's trace
                ids = span_ids(_span_of(parent))
            context.trace_id, context.span_id = ids or (new_trace_id(), new_span_id())
            if traced:
                self.telemetry.recent.add(context.trace_id, context.span_id)

            async def send_with_ids(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = MutableHeaders(scope=message)
                    headers["X-Request-ID"] = request_id
                    headers["X-Trace-Id"] = context.trace_id or ""
                await send(message)

            try:
                await self.app(scope, receive, send_with_ids)
            finally:
                route = route_template(scope, arrived)
                elapsed = time.perf_counter() - started
                if span is not None:
                    span.update_name(f"{method} {route}")
                    set_attributes(span, {"http.route": route, "http.response.status_code": status})
                metrics.request_finished(route, method, status, elapsed)
                if context.error_code:
                    metrics.error(context.error_code)
                access_logger.log(
                    logging.INFO if traced else logging.DEBUG,
                    "%s %s %d %.1fms",
                    method,
                    path,
                    status,
                    elapsed * 1000,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "error_code": context.error_code,
                    },
                )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _span_of(context: Context) -> Span:
    from opentelemetry import trace

    return trace.get_current_span(context)
