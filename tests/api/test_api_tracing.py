"""Every step of a /rag call is traced, with the model settings and token counts on the spans."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rag_fakes import FakeLLM, FakeRetrieval, PeopleFakeRetrieval

from llm_fakes import FakeLLM as FakeHelperLLM
from llm_twin.api.app import create_app
from llm_twin.observability import TracingConfigError, configure_tracing, install_exporter, shutdown_tracing, trace_span
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
    settings = load_settings(data_dir=tmp_path, temperature=0.2)
    with TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))) as test_client:
        yield test_client


@pytest.mark.parametrize("stream", [False, True])
def test_rag_request_produces_a_span_tree(client: TestClient, spans: InMemorySpanExporter, stream: bool) -> None:
    assert client.post("/rag", json={"query": "pattern matching", "stream": stream}).status_code == 200
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert {"POST /rag", "rag", "rag.retrieve", "rag.prompt", "rag.generate"} <= set(finished)
    http, root = finished["POST /rag"], finished["rag"]
    assert root.parent is not None and root.parent.span_id == http.context.span_id
    for child in ("rag.retrieve", "rag.prompt", "rag.generate"):
        assert finished[child].parent.span_id == root.context.span_id, child
    assert http.attributes["http.response.status_code"] == 200
    generate = finished["rag.generate"].attributes
    assert generate["gen_ai.request.model"] == "fake-llm"
    assert generate["gen_ai.request.temperature"] == 0.2
    assert generate["gen_ai.usage.input_tokens"] > 0 and generate["gen_ai.usage.output_tokens"] > 0
    assert "embedding.model" in finished["rag.retrieve"].attributes
    assert root.attributes["timings_ms.total"] >= root.attributes["timings_ms.generation"]
    assert "query" not in root.attributes  # the question text itself is not exported, only its length
    if stream:
        assert "ttft_ms" in generate


def test_failures_are_recorded_on_the_span(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError), trace_span("step", size=3):
        raise ValueError("bad")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code.name == "ERROR" and span.attributes["size"] == 3
    assert span.events[0].name == "exception"


def test_health_is_not_traced(client: TestClient, spans: InMemorySpanExporter) -> None:
    client.get("/health")
    assert spans.get_finished_spans() == ()


def test_otlp_without_the_exporter_package_is_a_clear_error(tmp_path) -> None:
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the OTLP exporter is installed here")
    for mode in ("otlp", "opik"):
        with pytest.raises(TracingConfigError, match="opentelemetry-exporter-otlp-proto-http"):
            configure_tracing(load_settings(data_dir=tmp_path, tracing=mode))


def test_console_mode_prints_spans(tmp_path, capsys) -> None:
    try:
        assert configure_tracing(load_settings(data_dir=tmp_path, tracing="console")) == "console"
        with trace_span("hello", answer=42):
            pass
    finally:
        shutdown_tracing()
    out = capsys.readouterr().out
    assert '"name": "hello"' in out and '"answer": 42' in out


def test_a_v1_follow_up_is_traced_with_its_rewritten_question(tmp_path, spans: InMemorySpanExporter) -> None:
    settings = load_settings(data_dir=tmp_path)
    retrieval = PeopleFakeRetrieval(FakeHelperLLM("What else did Guido van Rossum write?"))
    messages = [
        {"role": "user", "content": "What did Guido van Rossum write?"},
        {"role": "assistant", "content": "PEPs [1]."},
        {"role": "user", "content": "What else did he write?"},
    ]
    with TestClient(create_app(settings, RAGPipeline(retrieval, FakeLLM(), settings))) as client:
        response = client.post("/v1/chat/completions", json={"model": "twin", "messages": messages, "temperature": 0.7})
    assert response.status_code == 200, response.text
    finished = {span.name: span for span in spans.get_finished_spans()}
    http, root = finished["POST /v1/chat/completions"], finished["rag"]
    assert root.parent is not None and root.parent.span_id == http.context.span_id
    assert root.attributes["history_turns"] == 2
    assert root.attributes["conversation.rewritten_query"] == "What else did Guido van Rossum write?"
    assert finished["rag.retrieve"].attributes["author.reason"].startswith("carried over from the conversation")
    assert finished["rag.generate"].attributes["gen_ai.request.temperature"] == 0.7
