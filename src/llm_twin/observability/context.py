"""What a log line or a metric needs to know about the request being answered (a contextvar).

The HTTP middleware opens a ``RequestContext`` per request; code below it (routes, error
handlers, the pipeline in worker threads: anyio copies contextvars into them) reads it through
``current_request()``. The object is shared, not copied, so an error code noted deep inside a
handler is seen by the middleware when the response ends.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

#: Accepted from a client's ``X-Request-ID``; anything else is replaced by a generated id.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass
class RequestContext:
    request_id: str
    trace_id: str | None = None
    span_id: str | None = None
    #: The ``error.code`` of the response (or SSE error event), set where the error is rendered.
    error_code: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("llm_twin_request", default=None)


def new_request_id() -> str:
    return secrets.token_hex(8)


def new_trace_id() -> str:
    """A W3C-shaped trace id for requests that are not traced (so logs and feedback still have one)."""
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def accepted_request_id(value: str | None) -> str:
    """The client's request id when it is a sane token, else a new one (ids end up in logs)."""
    return value if value and REQUEST_ID_PATTERN.match(value) else new_request_id()


def current_request() -> RequestContext | None:
    return _current.get()


@contextmanager
def request_context(context: RequestContext) -> Iterator[RequestContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def note_error(code: str) -> None:
    """Record the error code of the response being built (no-op outside a request)."""
    context = _current.get()
    if context is not None:
        context.error_code = code
