"""``POST /feedback``: a verdict on an answer, by its trace id, as a span in that trace and a metric."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rag_fakes import FakeLLM, FakeRetrieval
from test_api_metrics import scrape, value

from llm_twin.api.app import create_app
from llm_twin.observability import conventions as oi
from llm_twin.observability import install_exporter, shutdown_tracing
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    install_exporter(exporter)
    try:
        yield exporter
    finally:
        shutdown_tracing()


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    settings = load_settings(data_dir=tmp_path)
    with TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))) as test_client:
        yield test_client


def test_feedback_joins_the_answers_trace(client: TestClient, spans: InMemorySpanExporter) -> None:
    answer = client.post("/rag", json={"query": "pattern matching"}).json()
    response = client.post("/feedback", json={"trace_id": answer["trace_id"], "score": -1, "comment": "wrong PEP"})
    assert response.status_code == 200
    assert response.json() == {"status": "recorded", "trace_id": answer["trace_id"]}

    finished = spans.get_finished_spans()
    http = next(s for s in finished if s.name == "POST /rag")
    feedback = next(s for s in finished if s.name == "feedback")
    assert format(feedback.context.trace_id, "032x") == answer["trace_id"]
    assert feedback.parent.span_id == http.context.span_id  # shown under the answer's request
    assert feedback.attributes[oi.FEEDBACK_SCORE_VALUE] == -1
    assert feedback.attributes[oi.FEEDBACK_REASON] == "wrong PEP"
    assert feedback.events[0].name == "feedback" and feedback.events[0].attributes["feedback.score"] == -1

    client.post("/feedback", json={"trace_id": answer["trace_id"], "score": 1})
    client.post("/feedback", json={"trace_id": answer["trace_id"], "score": 0.75})
    samples = scrape(client)
    assert value(samples, "llm_twin_feedback_total", verdict="negative") == 1
    assert value(samples, "llm_twin_feedback_total", verdict="positive") == 2
    assert value(samples, "llm_twin_feedback_score_count") == 3
    assert value(samples, "llm_twin_feedback_score_bucket", le="0.0") == 1  # the thumbs down


def test_feedback_works_without_tracing(client: TestClient) -> None:
    trace_id = client.post("/rag", json={"query": "pattern matching"}).headers["X-Trace-Id"]
    assert client.post("/feedback", json={"trace_id": trace_id, "score": 0.5}).status_code == 200
    assert value(scrape(client), "llm_twin_feedback_total", verdict="neutral") == 1


def test_unknown_trace_is_404(client: TestClient) -> None:
    response = client.post("/feedback", json={"trace_id": "0" * 32, "score": 1})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_trace"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"trace_id": "not-a-trace", "score": 1}, "trace_id"),
        ({"trace_id": "A" * 32, "score": 1}, "trace_id"),
        ({"trace_id": "0" * 32, "score": -0.5}, "score"),
        ({"trace_id": "0" * 32, "score": 2}, "score"),
        ({"trace_id": "0" * 32}, "score"),
        ({"trace_id": "0" * 32, "score": 1, "comment": "x" * 2001}, "comment"),
        ({"trace_id": "0" * 32, "score": 1, "extra": True}, "extra"),
    ],
)
def test_bad_feedback_is_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    response = client.post("/feedback", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field
