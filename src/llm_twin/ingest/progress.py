"""Progress of a background ingest, in one object that ``/ready``, ``/metrics``, the page and the
CLI read (the writer thread updates it; readers take consistent snapshots)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Literal

IngestState = Literal["idle", "planning", "running", "done", "failed"]


@dataclass(frozen=True)
class ProgressSnapshot:
    state: IngestState
    #: What is being ingested (file names), for people reading /ready.
    source: str | None
    documents_total: int
    #: Written or skipped as unchanged.
    documents_done: int
    documents_skipped: int
    chunks_total: int
    chunks_done: int
    elapsed_s: float
    #: Chunks written per second since the first write; None before it.
    chunks_per_s: float | None
    eta_s: float | None
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ("planning", "running")

    def line(self) -> str:
        """One log line (non-TTY progress)."""
        text = (
            f"ingest {self.state}: documents {self.documents_done}/{self.documents_total} "
            f"({self.documents_skipped} unchanged), chunks {self.chunks_done}/{self.chunks_total}"
        )
        if self.chunks_per_s is not None:
            text += f", {self.chunks_per_s:.1f} chunks/s"
        if self.eta_s is not None:
            text += f", ETA {format_duration(self.eta_s)}"
        return text + f", elapsed {format_duration(self.elapsed_s)}"


def format_duration(seconds: float) -> str:
    minutes, whole = divmod(round(seconds), 60)
    return f"{minutes}m{whole:02d}s" if minutes else f"{whole}s"


class IngestProgress:
    """Counters of the running (or last) ingest job; thread-safe, cheap to read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: IngestState = "idle"
        self._source: str | None = None
        self._documents_total = self._documents_done = self._documents_skipped = 0
        self._chunks_total = self._chunks_done = 0
        self._started = self._first_write = self._ended = 0.0
        self._error: str | None = None

    def begin(self, source: str) -> None:
        with self._lock:
            self._state, self._source, self._error = "planning", source, None
            self._documents_total = self._documents_done = self._documents_skipped = 0
            self._chunks_total = self._chunks_done = 0
            self._started, self._first_write, self._ended = time.monotonic(), 0.0, 0.0

    def planned(self, *, documents: int, skipped: int, chunks: int) -> None:
        with self._lock:
            self._state = "running"
            self._documents_total, self._documents_done, self._documents_skipped = documents, skipped, skipped
            self._chunks_total = chunks
            self._first_write = time.monotonic()

    def advance(self, *, documents: int, chunks: int) -> None:
        with self._lock:
            self._documents_done += documents
            self._chunks_done += chunks

    def skip(self, documents: int, chunks: int) -> None:
        """Documents someone else wrote meanwhile (a POST with the same version): done, not written."""
        with self._lock:
            self._documents_done += documents
            self._documents_skipped += documents
            self._chunks_total -= chunks

    def end(self, error: str | None = None) -> None:
        with self._lock:
            self._state = "failed" if error else "done"
            self._error = error
            self._ended = time.monotonic()

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            now = self._ended or time.monotonic()
            elapsed = now - self._started if self._started else 0.0
            rate = eta = None
            writing = now - self._first_write if self._first_write else 0.0
            if self._chunks_done and writing > 0:
                rate = self._chunks_done / writing
                if self._state == "running":
                    eta = max(0.0, self._chunks_total - self._chunks_done) / rate
            return ProgressSnapshot(
                state=self._state,
                source=self._source,
                documents_total=self._documents_total,
                documents_done=self._documents_done,
                documents_skipped=self._documents_skipped,
                chunks_total=self._chunks_total,
                chunks_done=self._chunks_done,
                elapsed_s=round(elapsed, 2),
                chunks_per_s=round(rate, 2) if rate is not None else None,
                eta_s=round(eta, 1) if eta is not None else None,
                error=self._error,
            )
