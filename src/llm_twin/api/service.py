"""Process-wide service state (the one pipeline, the one request limit) and the sync→async bridge for streaming."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar, runtime_checkable

import anyio

from llm_twin.api.admission import AdmissionLimiter, ClientConnection, until_admitted_or_gone
from llm_twin.api.errors import LiveIndexUnavailableError, ServiceNotReadyError
from llm_twin.errors import LLMTwinError
from llm_twin.ingest.live import LiveIndex
from llm_twin.ingest.pipeline import IngestPipeline
from llm_twin.ingest.progress import ProgressSnapshot
from llm_twin.rag.pipeline import AnswerListener, RAGPipeline
from llm_twin.scheduling import lower_thread_priority
from llm_twin.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: After a failed start (store missing, model not loadable), retry at most this often.
RETRY_INTERVAL_S = 5.0


@runtime_checkable
class WritableRetrieval(Protocol):
    """A retrieval pipeline that can hand out a writer over its own store (the real one can)."""

    def open_writer(self) -> IngestPipeline: ...

    def refresh_authors(self) -> None: ...


class ServiceState:
    """Owns the ``RAGPipeline``: built and warmed once at startup, rebuilt on demand if that failed.

    A failed start (store missing or locked, model unavailable) leaves the API up: ``/health``
    answers, ``/ready`` and ``/rag`` return 503, and the next request after ``RETRY_INTERVAL_S``
    tries again, so running ``llm-twin ingest`` after ``serve`` needs no restart.

    ``limiter`` is the one limit on requests answered at once (``LLM_TWIN_API_WORKERS``): a blocking
    call holds a slot for its run, a stream for its producer's whole run; more requests wait in
    arrival order, and the local model's fair queue orders the generations among those admitted.
    It is apart from anyio's default pool, so queued requests never starve other sync work. At most
    ``LLM_TWIN_MAX_QUEUE`` wait: one more is refused at once with 429 (``api/admission.py``).

    ``index`` is the process's one writer (``POST/DELETE /documents``, ``ingest_paths`` ingested
    in the background from the start, a watched folder), over the store handle search uses.
    """

    def __init__(
        self,
        settings: Settings,
        pipeline: RAGPipeline | None = None,
        listeners: Sequence[AnswerListener] = (),
        *,
        ingest_paths: Sequence[Path] = (),
        watch_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.ingest_paths = list(ingest_paths)
        self.watch_dir = watch_dir
        self._index: LiveIndex | None = None
        self._jobs_started = False
        self._pipeline = pipeline
        #: Told about every completed answer (metrics), attached to the pipeline once it is built.
        self._listeners = list(listeners)
        self._owns_pipeline = pipeline is None
        self._ready = False
        self._error: BaseException | None = None
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()
        self.limiter = AdmissionLimiter(settings.api_workers, settings.max_queue)
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def pipeline(self) -> RAGPipeline | None:
        return self._pipeline

    @property
    def starting(self) -> bool:
        """A build is in progress (models loading)."""
        return not self._ready and self._lock.locked()

    async def start(self, background: bool = False) -> None:
        """Build and warm the pipeline in a worker thread; failures are logged, not raised.

        ``background``: return at once (the server accepts connections and ``/health`` answers
        while the model loads; ``/ready`` says "starting", ``/rag`` waits for the load).
        """
        if background:
            self._task = asyncio.create_task(self.start())
            return
        try:
            await self.require_pipeline(force=True)
        except Exception as error:
            logger.warning("service not ready: %s", error)

    async def require_pipeline(self, force: bool = False) -> RAGPipeline:
        """The warmed pipeline, or the error that keeps it from starting (mapped to 503 by the API)."""
        if self._ready and self._pipeline is not None:
            return self._pipeline
        async with self._lock:
            if self._ready and self._pipeline is not None:
                return self._pipeline
            if not force and self._error is not None and time.monotonic() - self._last_attempt < RETRY_INTERVAL_S:
                raise self._error
            self._last_attempt = time.monotonic()
            try:
                self._pipeline = await anyio.to_thread.run_sync(self._build)
            except LLMTwinError as error:
                self._error = error
                raise
            except Exception as error:
                logger.exception("pipeline failed to start")
                self._error = ServiceNotReadyError("pipeline failed to start")
                raise self._error from error
            self._ready, self._error = True, None
            return self._pipeline

    @property
    def index(self) -> LiveIndex | None:
        return self._index

    def ingest_progress(self) -> ProgressSnapshot | None:
        """The background ingest's progress (None: this service runs none and ran none)."""
        if self._index is None or not (self.ingest_paths or self.watch_dir):
            return None
        return self._index.snapshot()

    async def require_index(self) -> LiveIndex:
        """The writer; it works before search can (a service started on an empty data dir)."""
        if self._index is None:
            try:
                await self.require_pipeline()
            except LLMTwinError:
                if self._index is None:
                    raise
        if self._index is None:
            raise LiveIndexUnavailableError("this retrieval pipeline cannot write")
        return self._index

    def index_changed(self) -> None:
        """After a write: a start that failed for want of a store is retried by the next request."""
        if not self._ready:
            self._last_attempt = float("-inf")

    def _build(self) -> RAGPipeline:
        # Loading creates the model's thread pools, which keep this thread's priority.
        lower_thread_priority(self.settings.worker_niceness)
        pipeline = self._pipeline or RAGPipeline.from_settings(self.settings)
        for listener in self._listeners:
            pipeline.add_listener(listener)
        self._pipeline = pipeline  # keep it: a retry only needs to warm up again
        retrieval = pipeline.retrieval
        if self._index is None and isinstance(retrieval, WritableRetrieval):
            self._index = LiveIndex(
                retrieval.open_writer(), on_change=retrieval.refresh_authors, niceness=self.settings.ingest_niceness
            )
        if self._index is not None and not self._jobs_started and (self.ingest_paths or self.watch_dir):
            # Serve first: the collections exist before search opens them, and the ingest runs
            # while the models load and afterwards, beside the requests.
            self._index.prepare()
            if self.ingest_paths:
                self._index.start_ingest(self.ingest_paths)
            if self.watch_dir is not None:
                self._index.start_watch(self.watch_dir)
            self._jobs_started = True
        started = time.perf_counter()
        pipeline.warm_up()
        logger.info("pipeline ready in %.2fs (model %s)", time.perf_counter() - started, pipeline.llm.model_name)
        return pipeline

    async def close(self) -> None:
        if self._index is not None:  # background jobs stop after their group in progress
            await anyio.to_thread.run_sync(self._index.close)
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the loading thread itself cannot be interrupted; the process is exiting
            return
        if self._pipeline is not None:
            for listener in self._listeners:
                self._pipeline.remove_listener(listener)
        if self._pipeline is not None and self._owns_pipeline:
            await anyio.to_thread.run_sync(self._pipeline.close)
        self._ready = False


#: Producer tasks of the streams in flight (the loop itself only keeps weak references to tasks).
_running: set[asyncio.Task[None]] = set()

Message = tuple[Literal["item"], T] | tuple[Literal["error"], BaseException] | tuple[Literal["end"], None]


class ThreadedStream(Generic[T]):
    """Iterate a blocking generator in a worker thread and receive its items on the event loop.

    The whole generator runs in one thread, which holds a slot of ``limiter`` for the whole run
    (it starts once a slot is free; anyio's default limiter when None). It runs with the caller's
    contextvars, so trace context follows; the loop is never blocked; and ``stop()`` (client gone)
    makes the producer close the generator after the item in progress, which ends generation and
    frees the model. A stream stopped while it waits for a slot never starts.
    """

    def __init__(
        self,
        make_iterator: Callable[[], Iterator[T]],
        limiter: anyio.CapacityLimiter | None = None,
        niceness: int = 0,
    ) -> None:
        self._make_iterator = make_iterator
        self._limiter = limiter
        self._niceness = niceness
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Message[T]] = asyncio.Queue()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._finished = threading.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> ThreadedStream[T]:
        # The task copies the caller's contextvars, and anyio hands them on to the worker thread.
        task = self._task = self._loop.create_task(self._run())
        _running.add(task)
        task.add_done_callback(_running.discard)
        return self

    def stop(self) -> None:
        self._stop.set()
        if not self._started.is_set() and self._task is not None:
            # Still queued for a slot: leave the queue now (a slot taken meanwhile is handed back
            # unused, since the producer checks ``_stop`` first).
            self._task.cancel()

    @property
    def admitted(self) -> bool:
        """The producer holds a slot (it has started, or is about to)."""
        return self._started.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the producer to finish (the generator closed); False on timeout."""
        return self._finished.wait(timeout)

    async def get(self, timeout: float | None = None) -> Message[T]:
        """Next message; raises ``TimeoutError`` after ``timeout`` seconds without one."""
        if timeout is None:
            return await self._queue.get()
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _run(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._produce, limiter=self._limiter)
        except asyncio.CancelledError:
            if not self._started.is_set():  # stopped while queued; once started, the producer says when it ends
                self._finished.set()
            raise
        except Exception as error:  # refused before it ran (the queue is full): tell the consumer
            self._queue.put_nowait(("error", error))
            self._finished.set()

    def _produce(self) -> None:
        self._started.set()
        lower_thread_priority(self._niceness)
        try:
            if self._stop.is_set():  # the client left while this stream waited for a slot
                return
            iterator = self._make_iterator()
            try:
                for item in iterator:
                    if self._stop.is_set():
                        break
                    self._put(("item", item))
                    if self._stop.is_set():
                        break
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:  # generators: run their cleanup (frees the model) now
                    close()
        except BaseException as error:
            self._put(("error", error))
        else:
            self._put(("end", None))
        finally:
            self._finished.set()

    def _put(self, message: Message[T]) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, message)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stop.set()


async def open_stream(
    make_iterator: Callable[[], Iterator[T]],
    limiter: anyio.CapacityLimiter,
    client: ClientConnection,
    niceness: int = 0,
) -> tuple[ThreadedStream[T], T] | None:
    """Start a ``ThreadedStream`` and wait for its first item before the response commits to a 200.

    Errors before that item (bad author, store gone, queue full) raise here, so they keep their own
    HTTP status. None when the client left while queued: the stream never started.
    """
    stream: ThreadedStream[T] = ThreadedStream(make_iterator, limiter, niceness).start()
    try:
        message = await until_admitted_or_gone(stream.get(), lambda: stream.admitted, client)
    except BaseException:
        stream.stop()
        raise
    if message is None:
        stream.stop()
        return None
    match message:
        case ("item", first):
            return stream, first
        case ("error", error):
            raise error
        case _:  # pragma: no cover - the pipeline always starts with a status or sources event
            raise RuntimeError("stream ended before its first event")
