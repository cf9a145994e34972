"""CPU priority of the threads that compute, so the event loop stays quick while they run.

On a small host (the embedded default: 2 cores) llama.cpp, ONNX and a background ingest keep every
core busy. The event loop needs only a little CPU to answer ``/health``, ``/metrics`` or a 429, but
at equal priority it waits its turn behind all of them. Raising the nice value of the computing
threads (never lowering anything: that needs privileges) lets the loop run first whenever it has
work, and costs the computation nothing when the loop is idle. Threads that a computing thread
starts afterwards (llama.cpp's and ONNX Runtime's pools) inherit its nice value on Linux.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Request work (retrieval, generation): below the event loop, above a background ingest.
REQUEST_NICENESS = 5
#: Background ingest: answering a question comes first.
INGEST_NICENESS = 10
#: Span export (serialising spans, which carry document text, and sending them): last of all.
EXPORT_NICENESS = 15


def lower_thread_priority(niceness: int) -> bool:
    """Raise the calling OS thread's nice value to at least ``niceness``; True if it is there now.

    Linux keeps a nice value per thread (``setpriority`` on the thread id). Elsewhere, or when
    ``niceness`` is 0, nothing changes. A thread already nicer is left as it is.
    """
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return False
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) >= niceness:
            return True
        os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except OSError as error:  # a sandbox that forbids it: run at the priority we have
        logger.debug("cannot set thread niceness %d: %s", niceness, error)
        return False
    return True


def thread_niceness() -> int | None:
    """The calling thread's nice value (None where it cannot be read)."""
    if not hasattr(os, "getpriority"):
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except OSError:
        return None


def niced(fn: Callable[[], T], niceness: int) -> Callable[[], T]:
    """``fn`` to be run in a worker thread at ``niceness`` (see ``lower_thread_priority``)."""

    def run() -> T:
        lower_thread_priority(niceness)
        return fn()

    return run
