"""Logging set up once (``configure_logging``): text for people, JSON lines for log pipelines.

Every line carries the request id and trace id of the request it was written for (from
``llm_twin.observability.context``; outside a request, the current span's trace id if any), so a
log search can jump to the trace and back.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final, TextIO

from llm_twin.observability.context import current_request
from llm_twin.observability.tracing import span_ids

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s trace=%(trace_id)s]: %(message)s"
#: LogRecord attributes that are not "extra" fields.
_RESERVED: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "trace_id",
    "span_id",
    "taskName",
}


class RequestContextFilter(logging.Filter):
    """Adds ``request_id``, ``trace_id`` and ``span_id`` to every record ("-" when there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_request()
        ids = span_ids()
        record.request_id = context.request_id if context else "-"
        trace_id = ids[0] if ids else (context.trace_id if context else None)
        record.trace_id = trace_id or "-"
        record.span_id = ids[1] if ids else "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, the record's extra fields, the error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "trace_id", "span_id"):
            value = getattr(record, key, "-")
            if value != "-":
                line[key] = value
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_") and value is not None:
                line[key] = (
                    value
                    if isinstance(
                        value,
                        (
                            str,
                            int,
                            float,
                            bool,
                        ),
                    )
                    else str(value)
                )
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(
    log_format: str = "text", level: str | int = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Route the root logger (and uvicorn's) to one handler (stderr) in ``log_format``; idempotent."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.set_name("llm_twin")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "llm_twin":
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    return handler
