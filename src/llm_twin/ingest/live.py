"""``LiveIndex``: the one writer of a serving process (documents posted, deleted, ingested in the
background or from a watched folder) over the store handle the search path already holds.

Writes are serialised by one lock held per step (reading and author registration, one group of
chunks, a delete), never for a whole job, so a document posted during a
long background ingest waits for one group at most, and searches never wait for it: they read the
store concurrently and see every group as soon as it is flushed. Idempotence is the ingest
pipeline's (content hashes in the ledger, deterministic point ids, old points deleted first), so a
restart in the middle of a background ingest resumes where the ledger ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from llm_twin.domain.documents import CONTENT_TYPES, Chunk, ContentType, Document
from llm_twin.errors import InvalidInputError
from llm_twin.ingest import pipeline as pipeline_module
from llm_twin.ingest.pipeline import IngestPipeline, IngestReport
from llm_twin.ingest.progress import IngestProgress, ProgressSnapshot
from llm_twin.ingest.reader import BadLine, RawRecord
from llm_twin.scheduling import lower_thread_priority

logger = logging.getLogger(__name__)

#: While a long ingest runs, authors' document counts (and the resolver built on them) are
#: brought up to date at most this often; new authors themselves are visible before the first write.
REFRESH_INTERVAL_S = 30.0
#: Non-TTY progress: one log line at most this often.
LOG_INTERVAL_S = 15.0

Planned = list[tuple[Document, list[tuple[Chunk, str]]]]


def interleave(documents: Sequence[Document]) -> list[Document]:
    """The documents ordered so that every content type advances at the same pace (each type's
    i-th of n documents at position (i + 0.5) / n): early answers already see all three."""
    by_type: dict[ContentType, list[Document]] = {}
    for doc in documents:
        by_type.setdefault(doc.content_type, []).append(doc)
    keyed = [
        ((i + 0.5) / len(docs), CONTENT_TYPES.index(ct), i, doc)
        for ct, docs in by_type.items()
        for i, doc in enumerate(docs)
    ]
    return [doc for *_, doc in sorted(keyed, key=lambda row: row[:3])]


def bad_input(bad: list[BadLine], unit: str) -> InvalidInputError:
    """The first bad record as a 422 naming its position and field (``line 3.text``)."""
    first = bad[0]
    field = f"{unit} {first.line}"
    named = first.reason.split("'")
    if "field" in first.reason and len(named) >= 3:
        field += f".{named[1]}"
    more = f" (and {len(bad) - 1} more bad {unit}s)" if len(bad) > 1 else ""
    return InvalidInputError(field, f"{first.reason}{more}; nothing was written")


class LiveIndex:
    """Adds, replaces and deletes documents of a running service; runs background ingest jobs."""

    def __init__(self, writer: IngestPipeline, on_change: Callable[[], None] | None = None, niceness: int = 0) -> None:
        self.writer = writer
        #: Background jobs run at this nice value (``llm_twin.scheduling``): answering comes first.
        self.niceness = niceness
        self.progress = IngestProgress()
        self._on_change = on_change
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False
        #: One job at a time (a start-up ingest and the watcher): they share one progress.
        self._job_lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the collections if missing (a service started on an empty data dir), load the embedder."""
        with self._lock:
            self.writer.warm_up()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop background jobs after the group in progress, then release the writer's own resources."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        with self._lock:
            self.writer.close()

    def stop(self) -> None:
        """Ask background jobs to stop after the group in progress (``close()`` also waits for them)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def snapshot(self) -> ProgressSnapshot:
        return self.progress.snapshot()

    # --- writes from requests ----------------------------------------------------------------
    def add(self, items: Iterable[RawRecord | BadLine], unit: str = "line") -> IngestReport:
        """Validate every record, then write the new and changed ones; any bad record: nothing written."""
        items = list(items)
        with self._lock:
            self.writer.warm_up()
            documents, bad = self.writer.documents(items)
            if bad:
                raise bad_input(bad, unit)
            report = self.writer.ingest_documents(documents, optimize=False)
        self._changed()
        return report

    def delete(self, document_id: str, content_type: ContentType | None = None) -> dict[str, int]:
        """{content type: chunks removed}; empty when the document is unknown."""
        with self._lock:
            self.writer.warm_up()
            removed = self.writer.delete_document(document_id, content_type)
        if removed:
            self._changed()
        return removed

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    # --- background jobs ---------------------------------------------------------------------
    def start_ingest(self, paths: list[Path]) -> threading.Thread:
        """Ingest ``paths`` in a background thread; progress in ``snapshot()``."""
        thread = threading.Thread(target=self._job, args=(list(paths),), name="ingest", daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def start_watch(self, directory: Path) -> threading.Thread:
        """Ingest the folder's JSONL files, then every new or changed one as it lands (``watchfiles``).

        A file caught half-written has a bad last line, skipped with a warning; the write that
        completes it is another change, and the re-read skips what is already in by hash.
        """
        thread = threading.Thread(target=self._watch, args=(Path(directory),), name="ingest-watch", daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def _watch(self, directory: Path) -> None:
        from watchfiles import Change, watch

        existing = sorted(directory.glob("*.jsonl"))
        if existing:
            self._job(existing)
        logger.info("watching %s for JSONL files", directory)
        for changes in watch(directory, stop_event=self._stop, recursive=False, debounce=500, step=100):
            paths = sorted({Path(p) for change, p in changes if change != Change.deleted and p.endswith(".jsonl")})
            paths = [p for p in paths if p.is_file()]
            if paths and not self._stop.is_set():
                self._job(paths)

    def _job(self, paths: list[Path]) -> None:
        lower_thread_priority(self.niceness)
        try:
            with self._job_lock:
                if not self._stop.is_set():
                    self.ingest_files(paths)
        except Exception:  # reported in the progress (and /ready); the service keeps answering
            logger.exception("background ingest failed")

    def ingest_files(self, paths: list[Path]) -> IngestReport:
        """Read, plan and write ``paths`` group by group (blocking; background jobs and the watcher)."""
        started = time.perf_counter()
        self.progress.begin(", ".join(Path(p).name for p in paths))
        try:
            report = self._ingest_files(paths)
        except BaseException as error:
            self.progress.end(error=f"{type(error).__name__}: {error}")
            raise
        report.seconds = time.perf_counter() - started
        if self._stop.is_set():
            self.progress.end(error="stopped before the end (the next start resumes it)")
        else:
            self.progress.end()
        logger.info(self.progress.snapshot().line())
        return report

    def _ingest_files(self, paths: list[Path]) -> IngestReport:
        writer = self.writer
        with self._lock:
            writer.warm_up()
            documents, bad = writer.read(paths)
            writer.record_authors(documents)
            pending, skipped = writer.pending(documents)
        for line in bad:
            logger.warning("skipped %s", line)
        self._changed()  # the new authors can be named in questions before their writing is in
        planned: Planned = [(doc, writer.chunk(doc)) for doc in interleave(pending)]
        self.progress.planned(
            documents=len(documents), skipped=skipped, chunks=sum(len(chunks) for _, chunks in planned)
        )
        report = IngestReport(counts={}, seconds=0.0, bad_lines=bad, documents_skipped=skipped)
        last_refresh = last_log = time.monotonic()
        for group in _groups(planned, pipeline_module.GROUP_CHUNKS):
            if self._stop.is_set():
                return report
            self._write(group, report)
            now = time.monotonic()
            if now - last_log >= LOG_INTERVAL_S:
                logger.info(self.progress.snapshot().line())
                last_log = now
            if now - last_refresh >= REFRESH_INTERVAL_S:
                with self._lock:
                    writer.registry.refresh_counts()
                self._changed()
                last_refresh = now
        with self._lock:
            # No index build here: the embedded engine holds the GIL while it builds HNSW, which
            # would pause every request of this process for the whole build (measured: minutes
            # for demo-sized collections on 2 cores). New points stay in plain segments, searched
            # exactly (tens of ms more per search at demo size); `llm-twin ingest` with the service
            # stopped builds the index, and a Qdrant server builds it in the background by itself.
            writer.finish(optimize=False)
        self._changed()
        report.counts = writer.counts()
        return report

    def _write(self, group: Planned, report: IngestReport) -> None:
        with self._lock:
            # A document posted meanwhile in this exact version is already there: not again.
            fresh = [(doc, chunks) for doc, chunks in group if not self.writer.is_current(doc)]
            if fresh:
                self.writer.write_group(fresh, self.writer.nonempty_types(), report, None)
        written = {id(doc) for doc, _ in fresh}
        stale = [chunks for doc, chunks in group if id(doc) not in written]
        if stale:
            self.progress.skip(len(stale), sum(len(chunks) for chunks in stale))
        self.progress.advance(documents=len(fresh), chunks=sum(len(chunks) for _, chunks in fresh))


def _groups(planned: Planned, size: int) -> Iterable[Planned]:
    group: Planned = []
    chunks = 0
    for doc, pieces in planned:
        group.append((doc, pieces))
        chunks += len(pieces)
        if chunks >= size:
            yield group
            group, chunks = [], 0
    if group:
        yield group
