"""Tracing: one ``trace_span`` context manager over OpenTelemetry (a no-op unless configured)."""

from llm_twin.observability.tracing import (
    TracingConfigError,
    activate,
    configure_tracing,
    install_exporter,
    record_error,
    set_attributes,
    shutdown_tracing,
    start_span,
    trace_span,
    tracing_mode,
)

__all__ = [
    "TracingConfigError",
    "activate",
    "configure_tracing",
    "install_exporter",
    "record_error",
    "set_attributes",
    "shutdown_tracing",
    "start_span",
    "trace_span",
    "tracing_mode",
]
