"""Export to Opik's OTLP endpoint, and a backend that is down never reaches a request."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from rag_fakes import FakeLLM, FakeRetrieval

from llm_twin.api.app import create_app
from llm_twin.observability import conventions as oi
from llm_twin.observability import export_stats, shutdown_tracing
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings
from otlp_receiver import attributes, otlp_receiver

#: Opik's OpenTelemetry traces path under its API base URL (its OTLP "base endpoint" + /v1/traces).
OPIK_TRACES_PATH = "/api/v1/private/otel/v1/traces"


@pytest.fixture(autouse=True)
def _no_tracing_left() -> Iterator[None]:
    yield
    shutdown_tracing()


def test_opik_mode_sends_spans_with_the_workspace_and_project_headers(tmp_path, monkeypatch) -> None:
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OPIK_URL_OVERRIDE", receiver.url + "/api")
        monkeypatch.setenv("OPIK_API_KEY", "test-key")
        monkeypatch.setenv("OPIK_WORKSPACE", "test-workspace")
        settings = load_settings(data_dir=tmp_path, tracing="opik", opik_project="twin-tests")
        with TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))) as client:
            response = client.post("/rag", json={"query": "pattern matching"})
            assert response.status_code == 200
        shutdown_tracing()

        assert receiver.exports, "nothing was exported"
        for export in receiver.exports:
            assert export.path == OPIK_TRACES_PATH
            assert export.headers["authorization"] == "test-key"
            assert export.headers["comet-workspace"] == "test-workspace"
            assert export.headers["projectname"] == "twin-tests"
        by_name = {span.name: span for span in receiver.spans}
        assert {"POST /rag", "rag", "rag.retrieve", "rag.prompt", "rag.generate"} <= set(by_name)
        tree = ("POST /rag", "rag", "rag.retrieve", "rag.prompt", "rag.generate")
        assert {by_name[name].trace_id.hex() for name in tree} == {response.json()["trace_id"]}
        generate = attributes(by_name["rag.generate"])
        assert generate[oi.SPAN_KIND] == oi.LLM and generate[oi.LLM_MODEL_NAME] == "fake-llm"


def _black_hole() -> tuple[socket.socket, str]:
    """A port that accepts connections and never answers: the worst kind of backend outage."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_unresponsive_backend_never_slows_or_fails_a_request(tmp_path) -> None:
    sock, url = _black_hole()
    before = export_stats()
    timeout_s = 2.0  # each export waits this long for the black hole
    settings = load_settings(data_dir=tmp_path, tracing="otlp", otlp_endpoint=url, otlp_timeout_s=timeout_s)
    try:
        with TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))) as client:
            for stream in (False, True, False, True):
                started = time.perf_counter()
                response = client.post("/rag", json={"query": "pattern matching", "stream": stream})
                assert response.status_code == 200 and "event: error" not in response.text
                assert time.perf_counter() - started < timeout_s * 0.75  # never waits for an export
            deadline = time.monotonic() + 3 * timeout_s
            while export_stats()["failed"] == before["failed"] and time.monotonic() < deadline:
                time.sleep(0.1)  # the worker's first batch times out meanwhile
        started = time.perf_counter()
        shutdown_tracing()
        assert time.perf_counter() - started < 3.5  # a short flush, not the SDK's 30 s
    finally:
        sock.close()
    after = export_stats()
    lost = (after["failed"] - before["failed"]) + (after["dropped"] - before["dropped"])
    assert lost >= 4 * 5  # every span of the four requests failed or was dropped, none exported
    assert after["exported"] == before["exported"]


def test_failed_exports_show_in_metrics(tmp_path) -> None:
    sock, url = _black_hole()
    sock.close()  # now nothing listens: connection refused
    settings = load_settings(data_dir=tmp_path, tracing="otlp", otlp_endpoint=url, otlp_timeout_s=0.3)
    with TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings))) as client:
        assert client.post("/rag", json={"query": "pattern matching"}).status_code == 200
        deadline = time.monotonic() + 5
        failed = 0.0
        while time.monotonic() < deadline and not failed:
            time.sleep(0.2)
            for family in text_string_to_metric_families(client.get("/metrics").text):
                for sample in family.samples:
                    if sample.name == "llm_twin_spans_total" and sample.labels == {"outcome": "failed"}:
                        failed = sample.value
        assert failed >= 5
