"""The bounded wait queue in front of the model: admit ``api_workers`` at once, let ``max_queue``
wait, refuse the rest at once with 429 and a ``Retry-After`` from the measured service time.

``AdmissionLimiter`` is an ``anyio.CapacityLimiter``, so every route that runs its work with
``anyio.to_thread.run_sync(..., limiter=service.limiter)`` or a ``ThreadedStream`` is gated without
knowing it. ``run_admitted`` and ``until_admitted_or_gone`` add what a limiter cannot see: a client
that disconnects while queued gives up its place before its prompt is evaluated.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, TypeVar

import anyio

from llm_twin.errors import OverloadedError
from llm_twin.scheduling import lower_thread_priority

T = TypeVar("T")

#: Answer to a client that left while its request was queued (nginx's "client closed request": nobody
#: reads it; the access log does).
CLIENT_GONE_STATUS = 499
#: How often a queued request checks whether its client is still there.
DISCONNECT_POLL_S = 0.25
#: Weight of the newest service time in the moving average (about the last ten requests count).
EWMA_ALPHA = 0.2
#: The guess before anything was measured.
INITIAL_SERVICE_S = 1.0


class ServiceTimeMeter:
    """Exponentially weighted moving average of how long a request holds its slot."""

    def __init__(self, alpha: float = EWMA_ALPHA, initial_s: float = INITIAL_SERVICE_S) -> None:
        self.alpha = alpha
        self._mean = initial_s
        self._measured = False
        self._lock = threading.Lock()

    @property
    def mean_s(self) -> float:
        return self._mean

    def record(self, seconds: float) -> None:
        with self._lock:
            if self._measured:
                self._mean += self.alpha * (seconds - self._mean)
            else:
                self._mean, self._measured = seconds, True

    def retry_after(self, position: int, workers: float) -> int:
        """Whole seconds until a request at ``position`` in the queue (1 = next) would likely be served."""
        rounds = math.ceil(position / max(1.0, workers))
        return max(1, math.ceil(self._mean * rounds))


class AdmissionLimiter(anyio.CapacityLimiter):
    """``total_tokens`` requests at once, ``max_queue`` waiting; ``OverloadedError`` (429) beyond that.

    The time each borrower holds its slot feeds ``meter``, which prices ``Retry-After``.
    """

    def __new__(cls, *args: object, **kwargs: object) -> AdmissionLimiter:
        # anyio.CapacityLimiter.__new__ returns its backend's class; this one delegates to it instead.
        return object.__new__(cls)

    def __init__(self, total_tokens: int, max_queue: int, meter: ServiceTimeMeter | None = None) -> None:
        self._inner = anyio.CapacityLimiter(total_tokens)
        self.max_queue = max_queue
        self.meter = meter or ServiceTimeMeter()
        self._held_since: dict[object, float] = {}

    # --- the gate ---------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return self._inner.statistics().tasks_waiting

    def _admit_or_refuse(self) -> None:
        stats = self._inner.statistics()
        if stats.borrowed_tokens < self._inner.total_tokens and not stats.tasks_waiting:
            return  # a free slot: no wait at all
        if stats.tasks_waiting >= self.max_queue:
            retry = self.meter.retry_after(stats.tasks_waiting + 1, self._inner.total_tokens)
            raise OverloadedError(
                f"{stats.tasks_waiting} requests already waiting (LLM_TWIN_MAX_QUEUE={self.max_queue})", retry
            )

    # --- anyio.CapacityLimiter ----------------------------------------------------------------

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        self.release()

    @property
    def total_tokens(self) -> float:
        return self._inner.total_tokens

    @total_tokens.setter
    def total_tokens(self, value: float) -> None:
        self._inner.total_tokens = value

    @property
    def borrowed_tokens(self) -> int:
        return self._inner.borrowed_tokens

    @property
    def available_tokens(self) -> float:
        return self._inner.available_tokens

    def acquire_nowait(self) -> None:
        self._inner.acquire_nowait()
        self._held_since[_task_key()] = time.monotonic()

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        self._inner.acquire_on_behalf_of_nowait(borrower)
        self._held_since[borrower] = time.monotonic()

    async def acquire(self) -> None:
        self._admit_or_refuse()
        await self._inner.acquire()
        self._held_since[_task_key()] = time.monotonic()

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        self._admit_or_refuse()
        await self._inner.acquire_on_behalf_of(borrower)
        self._held_since[borrower] = time.monotonic()

    def release(self) -> None:
        self._inner.release()
        self._measure(_task_key())

    def release_on_behalf_of(self, borrower: object) -> None:
        self._inner.release_on_behalf_of(borrower)
        self._measure(borrower)

    def statistics(self) -> anyio.CapacityLimiterStatistics:
        return self._inner.statistics()

    def _measure(self, borrower: object) -> None:
        since = self._held_since.pop(borrower, None)
        if since is not None:
            self.meter.record(time.monotonic() - since)


def _task_key() -> object:
    return ("task", anyio.get_current_task().id)


class ClientConnection(Protocol):
    """What the helpers need of a request (Starlette's ``Request`` has it)."""

    async def is_disconnected(self) -> bool: ...


async def until_admitted_or_gone(
    work: Awaitable[T], admitted: Callable[[], bool], client: ClientConnection
) -> T | None:
    """``await work``, but while ``admitted()`` is False watch the client: if it leaves first, cancel
    ``work`` (which then leaves the queue) and return None.

    Once admitted the watch stops: cancelling then would not stop the thread already working.
    """
    outcome: list[T] = []
    failure: list[Exception] = []

    async with anyio.create_task_group() as group:

        async def run() -> None:
            try:
                outcome.append(await work)
            except Exception as error:  # raised as itself below, not wrapped in an exception group
                failure.append(error)
            group.cancel_scope.cancel()

        async def watch() -> None:
            while not admitted():
                if await client.is_disconnected():
                    group.cancel_scope.cancel()
                    return
                await anyio.sleep(DISCONNECT_POLL_S)

        group.start_soon(run)
        group.start_soon(watch)
    if failure:
        raise failure[0]
    return outcome[0] if outcome else None


async def run_admitted(
    fn: Callable[[], T], limiter: anyio.CapacityLimiter, client: ClientConnection, niceness: int = 0
) -> T | None:
    """``fn()`` in a worker thread once ``limiter`` admits it (``OverloadedError`` when its queue is
    full); None when the client disconnected while it waited, so ``fn`` never ran. The thread runs
    at ``niceness`` (``llm_twin.scheduling``), below the event loop."""
    started = threading.Event()

    def admitted_fn() -> T:
        started.set()
        lower_thread_priority(niceness)
        return fn()

    return await until_admitted_or_gone(anyio.to_thread.run_sync(admitted_fn, limiter=limiter), started.is_set, client)
