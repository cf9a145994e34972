"""Stage progress of one request: which step is running, for a client that shows it while it waits.

Retrieval and the RAG pipeline call ``report_progress(stage, message)`` before each step. Nothing
happens unless the caller installed a reporter with ``reporting_progress`` (a streamed ``/rag``
asking for ``progress``); a context variable carries it, so no signature between the entry point
and the steps changes, and concurrent requests never see each other's reporter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: ``(stage, message, count)``: a stable stage code, a short human message, an optional number.
ProgressReporter = Callable[[str, str, "int | None"], None]

_reporter: ContextVar[ProgressReporter | None] = ContextVar("llm_twin_progress", default=None)


def report_progress(stage: str, message: str, count: int | None = None) -> None:
    """Tell the current request's reporter (if any) that ``stage`` starts now."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(stage, message, count)


@contextmanager
def reporting_progress(reporter: ProgressReporter) -> Iterator[None]:
    """Send this context's ``report_progress`` calls to ``reporter`` until the block ends."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)
