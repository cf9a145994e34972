"""Observability: spans over OpenTelemetry (a no-op unless configured), Prometheus metrics, logs tied to traces.

- ``tracing``: ``trace_span`` and the exporters (console, OTLP, Opik), bounded and counted;
- ``conventions``: span attribute names (OpenInference and ours);
- ``metrics``: ``ServiceMetrics``, one Prometheus registry per app;
- ``context`` and ``logs``: the request id and trace id of the request being answered, in every log line.
"""

from llm_twin.observability.tracing import (
    TracingConfigError,
    activate,
    configure_tracing,
    export_stats,
    install_exporter,
    record_error,
    remote_parent,
    set_attributes,
    shutdown_tracing,
    span_ids,
    start_span,
    trace_span,
    tracing_mode,
)

__all__ = [
    "TracingConfigError",
    "activate",
    "configure_tracing",
    "export_stats",
    "install_exporter",
    "record_error",
    "remote_parent",
    "set_attributes",
    "shutdown_tracing",
    "span_ids",
    "start_span",
    "trace_span",
    "tracing_mode",
]
