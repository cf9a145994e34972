"""The span export path: counted, bounded, and quick to shut down whatever the backend does."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_twin.observability import install_exporter, shutdown_tracing, trace_span
from llm_twin.observability.tracing import BoundedBatchProcessor, CountingExporter, ExportStats
from llm_twin.scheduling import EXPORT_NICENESS, thread_niceness


class StuckExporter:
    """Blocks every export until released: a backend that hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[int] = []

    def export(self, spans) -> SpanExportResult:
        self.batches.append(len(spans))
        self.release.wait(10)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class FailingExporter(StuckExporter):
    def export(self, spans) -> SpanExportResult:
        raise ConnectionError("backend down")


def _ended_spans(count: int) -> list:
    exporter = InMemorySpanExporter()
    install_exporter(exporter)
    try:
        for i in range(count):
            with trace_span(f"s{i}"):
                pass
        return list(exporter.get_finished_spans())
    finally:
        shutdown_tracing()


def test_a_full_queue_drops_new_spans_and_counts_them() -> None:
    stats = ExportStats()
    stuck = StuckExporter()
    processor = BoundedBatchProcessor(stuck, queue_size=4, stats=stats)
    spans = _ended_spans(10)
    started = time.perf_counter()
    for span in spans:
        processor.on_end(span)
    assert time.perf_counter() - started < 0.1  # never waits for the backend
    counts = stats.snapshot()
    assert counts["dropped"] == 6 and counts["queued"] == 4
    stuck.release.set()
    processor.shutdown()
    counts = stats.snapshot()
    assert counts["exported"] == 4 and counts["queued"] == 0 and counts["dropped"] == 6


def test_shutdown_with_a_hung_backend_is_short() -> None:
    stats = ExportStats()
    stuck = StuckExporter()
    processor = BoundedBatchProcessor(stuck, queue_size=1000, stats=stats)
    for span in _ended_spans(600):  # more than one batch: the worker starts exporting at once
        processor.on_end(span)
    time.sleep(0.1)
    started = time.perf_counter()
    unblock = threading.Timer(5, stuck.release.set)  # the hung export would only return after 5 s
    unblock.daemon = True
    unblock.start()
    processor.shutdown()
    assert time.perf_counter() - started < 5  # the SDK alone would wait for the hung export, then flush
    assert stats.snapshot()["exported"] < 600


def test_exceptions_from_the_exporter_count_as_failures() -> None:
    stats = ExportStats()
    counting = CountingExporter(FailingExporter(), stats)
    assert counting.export(_ended_spans(3)) == SpanExportResult.FAILURE
    assert stats.snapshot() == {"exported": 0, "failed": 3, "dropped": 0, "queued": 0}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_batch_worker_exports_at_the_lowest_priority() -> None:
    """Serialising spans (document text included) must not take CPU from a request on a small host."""
    base = thread_niceness() or 0
    if base >= EXPORT_NICENESS:
        pytest.skip("the tests run niced already")
    seen: list[int | None] = []

    class NicenessExporter(StuckExporter):
        def export(self, spans) -> SpanExportResult:
            seen.append(thread_niceness())
            return SpanExportResult.SUCCESS

    processor = BoundedBatchProcessor(NicenessExporter(), queue_size=100, stats=ExportStats())
    for span in _ended_spans(3):
        processor.on_end(span)
    processor.shutdown()
    assert seen and all(value == EXPORT_NICENESS for value in seen)
    assert thread_niceness() == base  # the thread that ended the spans is untouched
