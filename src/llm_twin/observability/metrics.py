"""Prometheus metrics of one service instance, in its own ``CollectorRegistry``.

``ServiceMetrics`` owns every metric name, label and bucket; callers report what happened in
their own terms (a request, the stage timings of an answer, an error code) and never touch a
metric object. A registry per instance (not prometheus-client's global one) lets several apps
live in one process (tests) without colliding.

Durations are in seconds, the Prometheus convention; the buckets run from a millisecond (an
embedding, a filtered search) to a minute (a long generation queued behind others).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from llm_twin.observability.tracing import export_stats

logger = logging.getLogger(__name__)

PREFIX: Final = "llm_twin"
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
)  # fmt: skip
COUNT_BUCKETS: Final = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)
SCORE_BUCKETS: Final = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0)

#: Stage timings an answer reports (``timings_ms``), as stage labels; anything else is not a stage
#: (a bounded label set: a new key in the pipeline is ignored until it is listed here).
STAGES: Final = frozenset(
    {
        "self_query",
        "expansion",
        "hyde",
        "embedding",
        "search",
        "rerank",
        "retrieval",
        "select",
        "prompt",
        "llm_queue",
        "ttft",
        "generation",
        "total",
    }
)
#: Routes label requests by template (``/rag``, not the raw path); unmatched paths share one label.
UNMATCHED_ROUTE: Final = "unmatched"


class ServiceMetrics:
    """Every metric of the service, registered in ``registry`` (a new one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self._request_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request latency until the last byte of the response (streams included).",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._in_progress = Gauge(f"{PREFIX}_http_requests_in_progress", "HTTP requests being answered.", registry=r)
        self._stage_seconds = Histogram(
            f"{PREFIX}_rag_stage_duration_seconds",
            "Pipeline stage latency per answer: self_query, expansion, embedding, search, rerank, prompt, "
            "ttft (start to first token, streams), llm_queue (wait for the local model), generation, total.",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._answers = Counter(f"{PREFIX}_rag_answers", "Answers completed.", ["mode"], registry=r)
        self._tokens = Counter(
            f"{PREFIX}_llm_tokens", "Tokens of generation: prompt (in) and completion (out).", ["direction"],
            registry=r,
        )  # fmt: skip
        self._rerank_candidates = Histogram(
            f"{PREFIX}_rerank_candidates", "Candidates handed to the reranker per answer.",
            buckets=COUNT_BUCKETS, registry=r,
        )  # fmt: skip
        self._sources = Histogram(
            f"{PREFIX}_rag_sources", "Sources in the prompt per answer.", buckets=COUNT_BUCKETS, registry=r
        )
        self._degradations = Counter(
            f"{PREFIX}_rag_degradations", "Answers given with a step degraded, by kind.", ["kind"], registry=r
        )
        self._errors = Counter(
            f"{PREFIX}_errors", "Error responses (and SSE error events) by error code.", ["code"], registry=r
        )
        self._feedback = Counter(f"{PREFIX}_feedback", "User feedback by verdict.", ["verdict"], registry=r)
        self._feedback_score = Histogram(
            f"{PREFIX}_feedback_score", "User feedback scores (-1, or 0..1).", buckets=SCORE_BUCKETS, registry=r
        )
        self._gauges = _GaugeSources()
        r.register(self._gauges)
        r.register(_SpanExportCollector())

    # --- HTTP ------------------------------------------------------------------------------------

    def request_started(self) -> None:
        self._in_progress.inc()

    def request_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        self._in_progress.dec()
        self._requests.labels(route=route, method=method, status=str(status)).inc()
        self._request_seconds.labels(route=route, method=method).observe(seconds)

    def error(self, code: str) -> None:
        self._errors.labels(code=code).inc()

    # --- answers ---------------------------------------------------------------------------------

    def answer(
        self,
        *,
        timings_ms: Mapping[str, float],
        streamed: bool,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        rerank_candidates: int | None,
        sources: int,
        degradations: Iterable[str],
    ) -> None:
        """One completed answer: its stage timings, tokens, candidates and what was degraded."""
        self._answers.labels(mode="stream" if streamed else "blocking").inc()
        for stage, ms in timings_ms.items():
            if stage in STAGES and ms >= 0:
                self._stage_seconds.labels(stage=stage).observe(ms / 1000.0)
        if prompt_tokens:
            self._tokens.labels(direction="prompt").inc(prompt_tokens)
        if completion_tokens:
            self._tokens.labels(direction="completion").inc(completion_tokens)
        if rerank_candidates is not None:
            self._rerank_candidates.observe(rerank_candidates)
        self._sources.observe(sources)
        for kind in degradations:
            self._degradations.labels(kind=kind).inc()

    # --- feedback ------------------------------------------------------------------------------

    def feedback(self, score: float) -> None:
        verdict = "positive" if score > 0.5 else "negative" if score < 0.5 else "neutral"
        self._feedback.labels(verdict=verdict).inc()
        self._feedback_score.observe(score)

    # --- values read at scrape time ---------------------------------------------------------------

    def watch(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read when scraped (``llm_twin_<name>``): queue lengths, busy workers."""
        self._gauges.set(f"{PREFIX}_{name}", documentation, read)

    def unwatch(self, name: str) -> None:
        self._gauges.remove(f"{PREFIX}_{name}")

    # --- exposition ------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    content_type: Final = CONTENT_TYPE_LATEST


class IngestMetrics:
    """What one ``llm-twin ingest`` run did, for Prometheus's textfile collector (a batch job has no
    endpoint to scrape: node_exporter reads the file it writes)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._documents = Counter(f"{PREFIX}_ingest_documents", "Documents read, by outcome.", ["outcome"], registry=r)
        self._chunks = Counter(f"{PREFIX}_ingest_chunks", "Chunks embedded and written to the store.", registry=r)
        self._bad_lines = Counter(f"{PREFIX}_ingest_bad_lines", "Malformed input lines skipped.", registry=r)
        self._seconds = Gauge(f"{PREFIX}_ingest_duration_seconds", "Duration of the ingest run.", registry=r)
        self._stored = Gauge(
            f"{PREFIX}_store_items", "Items in the store after the run, by kind.", ["kind"], registry=r
        )
        self._finished = Gauge(f"{PREFIX}_ingest_last_success_timestamp_seconds", "When the run ended.", registry=r)

    def run(
        self,
        *,
        written: int,
        skipped: int,
        chunks: int,
        bad_lines: int,
        seconds: float,
        stored: Mapping[str, int],
    ) -> None:
        self._documents.labels(outcome="written").inc(written)
        self._documents.labels(outcome="skipped").inc(skipped)
        self._chunks.inc(chunks)
        self._bad_lines.inc(bad_lines)
        self._seconds.set(seconds)
        for kind, count in stored.items():
            self._stored.labels(kind=kind).set(count)
        self._finished.set_to_current_time()

    def write(self, path: str) -> None:
        """Write atomically (a temporary file, then a rename), as the textfile collector expects."""
        write_to_textfile(path, self.registry)


class _GaugeSources(Collector):
    """Gauges whose value is read from a callback when scraped; a failing callback is skipped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, tuple[str, Callable[[], float]]] = {}

    def set(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        with self._lock:
            self._sources[name] = (documentation, read)

    def remove(self, name: str) -> None:
        with self._lock:
            self._sources.pop(name, None)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names vary at run time: no fixed description to check for collisions

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources.items())
        for name, (documentation, read) in sources:
            try:
                value = float(read())
            except Exception:  # a metric must never fail the scrape
                logger.debug("gauge %s failed", name, exc_info=True)
                continue
            yield GaugeMetricFamily(name, documentation, value=value)


class _SpanExportCollector(Collector):
    """The tracing exporter's counts (process-wide: there is one tracer provider per process)."""

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        stats = export_stats()
        family = CounterMetricFamily(
            f"{PREFIX}_spans", "Spans handed to the trace exporter, by outcome (dropped: queue full or shutdown).",
            labels=["outcome"],
        )  # fmt: skip
        for outcome in ("exported", "failed", "dropped"):
            family.add_metric([outcome], stats[outcome])
        yield family
        yield GaugeMetricFamily(f"{PREFIX}_spans_queued", "Spans waiting for export.", value=stats["queued"])
