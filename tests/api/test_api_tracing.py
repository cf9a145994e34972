"""Every step of a /rag call is traced, with the model settings and token counts on the spans."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rag_fakes import GUIDO, FakeLLM, FakeRetrieval, PeopleFakeRetrieval

from llm_fakes import FakeLLM as FakeHelperLLM
from llm_twin.api.app import create_app
from llm_twin.observability import (
    TracingConfigError,
    configure_tracing,
    export_stats,
    install_exporter,
    shutdown_tracing,
    trace_span,
)
from llm_twin.observability import conventions as oi
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings
from otlp_receiver import attributes, otlp_receiver


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


def test_otlp_without_the_exporter_package_is_a_clear_error(tmp_path, monkeypatch) -> None:
    # A dependency, but a trimmed install may lack it: the message says what to install.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
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


def test_span_tree_follows_openinference(client: TestClient, spans: InMemorySpanExporter) -> None:
    response = client.post("/rag", json={"query": "pattern matching", "author": "Guido van Rossum", "k": 2})
    assert response.status_code == 200
    finished = {span.name: span for span in spans.get_finished_spans()}
    kinds = {name: span.attributes.get(oi.SPAN_KIND) for name, span in finished.items()}
    assert kinds == {
        "POST /rag": oi.CHAIN,  # named by the route template
        "rag": oi.CHAIN,
        "rag.retrieve": oi.RETRIEVER,
        "rag.prompt": oi.CHAIN,
        "rag.generate": oi.LLM,
    }
    http, root = finished["POST /rag"], finished["rag"]
    assert http.attributes["http.route"] == "/rag"
    assert format(http.context.trace_id, "032x") == response.headers["X-Trace-Id"] == response.json()["trace_id"]

    assert root.attributes[oi.INPUT_VALUE] == "pattern matching"
    assert root.attributes[oi.OUTPUT_VALUE] == response.json()["answer"]

    retrieve = finished["rag.retrieve"].attributes
    assert retrieve[oi.K] == 2 and retrieve[oi.FUSION] == "rrf"
    assert retrieve[oi.AUTHOR_FILTER] == GUIDO.id
    assert list(retrieve[oi.EXPANDED_QUERIES]) == ["pattern matching"]
    assert retrieve["retrieval.documents.0.document.id"] == "chunk-1"
    assert retrieve["retrieval.documents.1.document.score"] == pytest.approx(0.5)
    assert "match statements" in retrieve["retrieval.documents.0.document.content"]
    assert "retrieval.documents.2.document.id" not in retrieve  # k=2

    generate = finished["rag.generate"].attributes
    assert generate[oi.LLM_MODEL_NAME] == "fake-llm"
    assert json.loads(generate[oi.LLM_INVOCATION_PARAMETERS])["temperature"] == 0.2
    assert generate[oi.LLM_TOKEN_COUNT_PROMPT] == 42
    assert generate[oi.LLM_TOKEN_COUNT_TOTAL] == 42 + generate[oi.LLM_TOKEN_COUNT_COMPLETION]
    assert generate["llm.input_messages.0.message.role"] == "system"
    assert generate["llm.output_messages.0.message.content"] == response.json()["answer"]


def test_trace_content_off_keeps_text_out_of_spans(tmp_path, spans: InMemorySpanExporter) -> None:
    settings = load_settings(data_dir=tmp_path, trace_content=False)
    with TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))) as client:
        assert client.post("/rag", json={"query": "pattern matching"}).status_code == 200
    for span in spans.get_finished_spans():
        for key, value in span.attributes.items():
            assert "pattern matching" not in str(value), (span.name, key)
    retrieve = next(s for s in spans.get_finished_spans() if s.name == "rag.retrieve")
    assert retrieve.attributes["retrieval.documents.0.document.id"] == "chunk-1"  # ids and scores stay


def test_incoming_traceparent_is_the_parent(client: TestClient, spans: InMemorySpanExporter) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = client.post(
        "/rag", json={"query": "pattern matching"}, headers={"traceparent": f"00-{trace_id}-{parent}-01"}
    )
    assert response.headers["X-Trace-Id"] == trace_id
    http = next(s for s in spans.get_finished_spans() if s.name == "POST /rag")
    assert format(http.parent.span_id, "016x") == parent


def test_otlp_export_reaches_a_receiver(tmp_path) -> None:
    with otlp_receiver() as receiver:
        settings = load_settings(data_dir=tmp_path, tracing="otlp", otlp_endpoint=receiver.url)
        try:
            with TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))) as client:
                trace_id = client.post("/rag", json={"query": "pattern matching"}).headers["X-Trace-Id"]
        finally:
            shutdown_tracing()  # flushes the batch
        assert {export.path for export in receiver.exports} == {"/v1/traces"}
        assert receiver.exports[0].headers["content-type"] == "application/x-protobuf"
        by_name = {span.name: span for span in receiver.spans}
        assert {"POST /rag", "rag", "rag.retrieve", "rag.generate"} <= set(by_name)
        assert by_name["rag"].trace_id.hex() == trace_id
        assert attributes(by_name["rag.generate"])[oi.SPAN_KIND] == oi.LLM
        assert attributes(by_name["rag.retrieve"])["retrieval.documents.0.document.id"] == "chunk-1"
    assert export_stats()["exported"] >= len(by_name)


def test_auto_mode_follows_the_standard_otel_variables(tmp_path, monkeypatch) -> None:
    from llm_twin.observability.tracing import resolve_mode

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert resolve_mode("auto") == "none"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1/v1/traces")
    assert resolve_mode("auto") == "otlp"
    assert resolve_mode("none") == "none"  # an explicit choice wins
