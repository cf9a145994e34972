"""Graceful degradation on the small ingested corpus (real store, real embedder): each failure
degrades one stage, says so in words (``warnings``) and in codes (``degraded``), and the request
still answers; only a store that is down entirely fails it (503)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_fakes import FakeLLM
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.errors import LLMUnavailableError, StoreLockedError, StoreUnavailableError
from llm_twin.observability import install_exporter, shutdown_tracing
from llm_twin.retrieval.pipeline import RetrievalPipeline
from llm_twin.settings import Settings
from llm_twin.store import open_store

QUESTION = "How should Python code be formatted?"


class RaisingReranker:
    name = "cross-encoder"
    description = "cross-encoder (broken)"

    def warm_up(self) -> None:
        pass

    def run(self, query: str, chunks: list[EmbeddedChunk], top_k: int) -> list[EmbeddedChunk]:
        raise RuntimeError("onnxruntime: invalid input shape")


class OneCollectionFails:
    """The real store, except that one collection's engine calls fail (a broken shard)."""

    def __init__(self, store, broken: str) -> None:
        self._store, self.broken, self.backend = store, broken, store.backend

    def query_batch(self, collection, requests):
        if collection == self.broken:
            raise OSError("shard file is corrupt")
        return self._store.query_batch(collection, requests)

    def __getattr__(self, name):
        return getattr(self._store, name)


@pytest.fixture
def data_copy(ingested_settings: Settings, tmp_path: Path) -> Settings:
    """A private copy of the ingested data dir (a test may delete or lock parts of it)."""
    shutil.copytree(ingested_settings.data_dir, tmp_path / "data")
    return ingested_settings.model_copy(update={"data_dir": tmp_path / "data"})


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    install_exporter(exporter)
    try:
        yield exporter
    finally:
        shutdown_tracing()


def run_once(settings: Settings, **components) -> tuple:
    pipeline = RetrievalPipeline(settings, **components)
    try:
        pipeline.warm_up()
        return pipeline.run(QUESTION, k=3), pipeline
    finally:
        pipeline.close()


def test_helper_llm_down_searches_with_the_question_and_no_llm_author(
    ingested_settings: Settings, spans: InMemorySpanExporter
) -> None:
    settings = ingested_settings.model_copy(update={"expand_to_n": 3, "self_query_llm": True})
    helper = FakeLLM(error=LLMUnavailableError("connection refused"))
    result, _ = run_once(settings, helper_llm=helper)
    assert result.chunks  # still answered
    assert result.expanded_queries == [QUESTION]
    assert result.author.author is None
    assert result.degraded == ["self_query_helper_failed", "expansion_failed"]
    assert any("expansion" in w for w in result.warnings) and any("author lookup" in w for w in result.warnings)
    retrieval_span = next(s for s in spans.get_finished_spans() if s.name == "retrieval")
    assert list(retrieval_span.attributes["degraded"]) == result.degraded


def test_no_helper_configured_is_not_a_degradation(ingested_settings: Settings) -> None:
    result, _ = run_once(ingested_settings.model_copy(update={"expand_to_n": 1}))
    assert result.degraded == [] and result.warnings == []


def test_a_failing_reranker_keeps_the_fused_order(ingested_settings: Settings) -> None:
    plain, _ = run_once(ingested_settings)
    result, _ = run_once(ingested_settings, reranker=RaisingReranker())
    assert result.degraded == ["rerank_failed"]
    assert any("reranking failed" in w for w in result.warnings)
    assert [c.id for c in result.chunks] == [c.id for c in plain.chunks]  # the search's own order


def test_a_deleted_collection_leaves_the_others_answering(data_copy: Settings) -> None:
    shutil.rmtree(data_copy.vectors_dir / data_copy.collection_articles)
    result, _ = run_once(data_copy)
    assert result.chunks
    assert {c.collection for c in result.chunks} <= {data_copy.collection_posts, data_copy.collection_repositories}
    assert result.degraded == [f"collection_unavailable:{data_copy.collection_articles}"]


def test_a_collection_failing_mid_flight_leaves_the_others_answering(ingested_settings: Settings) -> None:
    store = OneCollectionFails(open_store(ingested_settings), ingested_settings.collection_posts)
    result, _ = run_once(ingested_settings, store=store)
    assert result.chunks
    assert all(c.collection != ingested_settings.collection_posts for c in result.chunks)
    assert result.degraded == [f"collection_unavailable:{ingested_settings.collection_posts}"]


def test_every_collection_gone_is_a_store_outage(data_copy: Settings) -> None:
    shutil.rmtree(data_copy.vectors_dir)
    with pytest.raises(StoreUnavailableError):
        run_once(data_copy)


def test_a_store_locked_by_another_process_is_store_unavailable(data_copy: Settings) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from llm_twin.store.edge import EdgeVectorStore
                store = EdgeVectorStore({str(data_copy.vectors_dir)!r})
                store.open_existing([{data_copy.collection_articles!r}, {data_copy.collection_posts!r},
                                     {data_copy.collection_repositories!r}])
                print("open", flush=True)
                sys.stdin.read()  # hold the store until the test closes stdin
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLockedError) as locked:
            run_once(data_copy)
        assert locked.value.http_status == 503 and locked.value.code == "store_unavailable"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
