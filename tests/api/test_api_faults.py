"""Faults through the real app: the LLM endpoint (a local stub server behind the real
OpenAI-compatible client) refusing connections, hanging past the deadline or answering garbage;
degraded stages reported in the answer; the request deadline shared by the stages."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rag_fakes import FakeLLM, FakeRetrieval

from llm_twin.api.app import create_app
from llm_twin.llm.openai_compat import OpenAICompatibleClient
from llm_twin.observability import install_exporter, shutdown_tracing
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.retrieval.types import RetrievalResult
from llm_twin.settings import Settings, load_settings

QUESTION = {"query": "What did Guido van Rossum write about pattern matching?"}


@dataclass
class Stub:
    url: str = ""
    mode: str = "ok"  # ok | hang | malformed | error500
    requests: list[dict] = field(default_factory=list)


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            state.requests.append(payload)
            if state.mode == "hang":
                time.sleep(5)
                return
            if state.mode == "error500":
                body = b'{"error": {"message": "overloaded"}}'
                self.send_response(500)
            elif state.mode == "malformed":
                body = b'{"choices": [ {"message": '  # cut off mid-object
                self.send_response(200)
            else:
                body = json.dumps(
                    {"choices": [{"message": {"content": "Pattern matching [1]."}, "finish_reason": "stop"}]}
                ).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}/v1"


def app_client(settings: Settings, llm, retrieval=None) -> TestClient:
    pipeline = RAGPipeline(retrieval or FakeRetrieval(), llm, settings)
    return TestClient(create_app(settings, pipeline), raise_server_exceptions=False)


def remote_llm(url: str) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(url, "stub-model", timeout_s=30.0, max_retries=2, backoff_s=0.01)


def test_the_stub_endpoint_answers_through_the_real_client(tmp_path, stub: Stub) -> None:
    with app_client(load_settings(data_dir=tmp_path), remote_llm(stub.url)) as client:
        response = client.post("/rag", json=QUESTION)
    assert response.status_code == 200, response.text
    assert response.json()["answer"] == "Pattern matching [1]."
    assert response.json()["degraded"] == []


@pytest.mark.parametrize("stream", [False, True])
def test_llm_refusing_connections_is_503_after_bounded_retries(tmp_path, stream: bool) -> None:
    started = time.perf_counter()
    with app_client(load_settings(data_dir=tmp_path), remote_llm(closed_port_url())) as client:
        response = client.post("/rag", json={**QUESTION, "stream": stream})
    assert time.perf_counter() - started < 10
    if stream:  # the sources went out already: the failure is the stream's error event
        assert response.status_code == 200
        assert '"code":"llm_unavailable"' in response.text
    else:
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "llm_unavailable"


def test_llm_hanging_past_the_request_deadline_is_504(tmp_path, stub: Stub) -> None:
    stub.mode = "hang"
    settings = load_settings(data_dir=tmp_path, request_deadline_s=1.0)
    started = time.perf_counter()
    with app_client(settings, remote_llm(stub.url)) as client:
        response = client.post("/rag", json=QUESTION)
    elapsed = time.perf_counter() - started
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] in {"llm_timeout", "deadline_exceeded"}
    assert elapsed < 3.5  # the deadline (1 s), not the client's own 30 s timeout
    assert len(stub.requests) == 1  # a read timeout is not retried: that would double the wait


def test_llm_answering_malformed_json_is_502(tmp_path, stub: Stub) -> None:
    stub.mode = "malformed"
    with app_client(load_settings(data_dir=tmp_path), remote_llm(stub.url)) as client:
        response = client.post("/rag", json=QUESTION)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "llm_error"
    assert "choices" not in response.text  # the body it choked on stays in the log


def test_llm_5xx_is_retried_then_503(tmp_path, stub: Stub) -> None:
    stub.mode = "error500"
    with app_client(load_settings(data_dir=tmp_path), remote_llm(stub.url)) as client:
        response = client.post("/rag", json=QUESTION)
    assert response.status_code == 503
    assert len(stub.requests) == 3  # one try and two retries (LLM_TWIN_LLM_MAX_RETRIES)


# --- degraded stages in the answer ------------------------------------------------------------------


class DegradedRetrieval(FakeRetrieval):
    def run(self, query, k=None, expand_to_n=None, author=None, **options) -> RetrievalResult:
        result = super().run(query, k, expand_to_n, author, **options)
        result.warnings = ["query expansion failed (LLMUnavailableError); searched with the original query only"]
        result.degraded = ["expansion_failed", "collection_unavailable:embedded_posts"]
        return result


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    install_exporter(exporter)
    try:
        yield exporter
    finally:
        shutdown_tracing()


def test_degraded_codes_reach_json_sse_and_the_trace(tmp_path, spans: InMemorySpanExporter) -> None:
    codes = ["expansion_failed", "collection_unavailable:embedded_posts"]
    with app_client(load_settings(data_dir=tmp_path), FakeLLM(), DegradedRetrieval()) as client:
        body = client.post("/rag", json={**QUESTION, "stream": False}).json()
        streamed = client.post("/rag", json={**QUESTION, "stream": True}).text
    assert body["degraded"] == codes and body["warnings"] and body["answer"]
    events = {}
    for block in streamed.strip().split("\n\n"):
        lines = block.splitlines()
        events[lines[0].removeprefix("event: ")] = json.loads(lines[1].removeprefix("data: "))
    assert events["sources"]["degraded"] == codes and events["done"]["degraded"] == codes
    roots = [span for span in spans.get_finished_spans() if span.name == "rag"]
    assert roots and all(list(span.attributes["degraded"]) == codes for span in roots)


# --- the request deadline ---------------------------------------------------------------------------


class SlowRetrieval(FakeRetrieval):
    def run(self, query, k=None, expand_to_n=None, author=None, **options) -> RetrievalResult:
        time.sleep(0.3)
        return super().run(query, k, expand_to_n, author, **options)


@pytest.mark.parametrize("stream", [False, True])
def test_a_deadline_spent_in_retrieval_skips_generation(tmp_path, stream: bool) -> None:
    llm = FakeLLM()
    settings = load_settings(data_dir=tmp_path, request_deadline_s=0.1)
    with app_client(settings, llm, SlowRetrieval()) as client:
        response = client.post("/rag", json={**QUESTION, "stream": stream})
    if stream:
        assert response.status_code == 200 and '"code":"deadline_exceeded"' in response.text
    else:
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
    assert llm.calls == 0  # no prompt was evaluated after the deadline


def test_a_stream_past_its_deadline_stops_generating(tmp_path) -> None:
    llm = FakeLLM(pieces=tuple(f"t{i} " for i in range(2000)))  # ~2 ms a piece: ~4 s in all
    settings = load_settings(data_dir=tmp_path, request_deadline_s=0.5)
    started = time.perf_counter()
    with app_client(settings, llm) as client:
        response = client.post("/rag", json={**QUESTION, "stream": True})
    assert time.perf_counter() - started < 3
    assert response.text.rstrip().splitlines()[-1].startswith("data: ")
    assert '"code":"deadline_exceeded"' in response.text
    assert llm.stream_closed.is_set()  # the model was freed
