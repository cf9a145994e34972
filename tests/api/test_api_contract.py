"""The HTTP contract with fakes at the model/store boundary: shapes, validation, error mapping, SSE.

The real pipeline (store, embedder, SmolLM2) is exercised in ``test_api_rag.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from rag_fakes import FakeLLM, FakeRetrieval

from llm_twin.api.app import create_app
from llm_twin.errors import (
    InvalidInputError,
    LLMError,
    LLMTimeoutError,
    LLMUnavailableError,
    StoreLockedError,
    StoreUnavailableError,
)
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings

SECRET = "/secret/path/at/line/42 Traceback"


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if not lines:
            continue
        name = next(line[6:].strip() for line in lines if line.startswith("event:"))
        data = "".join(line[5:].strip() for line in lines if line.startswith("data:"))
        events.append((name, json.loads(data)))
    return events


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path, expand_max=3)


@pytest.fixture
def client(settings, fake_retrieval: FakeRetrieval, fake_llm: FakeLLM) -> Iterator[TestClient]:
    pipeline = RAGPipeline(fake_retrieval, fake_llm, settings)
    with TestClient(create_app(settings, pipeline), raise_server_exceptions=False) as test_client:
        yield test_client


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert error["field"] == field
        assert field in error["message"]
    assert "Traceback" not in response.text and SECRET not in response.text
    return error


# --- happy path ------------------------------------------------------------------------------


def test_rag_json_response_shape(client: TestClient, fake_retrieval: FakeRetrieval) -> None:
    response = client.post(
        "/rag", json={"query": "  What about pattern matching?  ", "k": 2, "author": "Guido van Rossum"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "Pattern matching was proposed [1]."
    assert [s["id"] for s in body["sources"]] == ["chunk-1", "chunk-2"]
    assert set(body["sources"][0]) >= {"id", "collection", "title", "author_full_name", "link", "score"}
    assert body["author"] == {"id": body["author"]["id"], "full_name": "Guido van Rossum"}
    assert body["model"] == "fake-llm" and body["rerank"] == "none"
    assert body["expanded_queries"] == ["What about pattern matching?"]
    assert {"search", "retrieval", "prompt", "generation", "total"} <= set(body["timings_ms"])
    assert "total" in body["timings_ms"] and body["timings_ms"]["total"] >= body["timings_ms"]["generation"]
    # the query reaches retrieval stripped, with the request's options
    assert fake_retrieval.calls[-1] == {
        "query": "What about pattern matching?",
        "k": 2,
        "expand_to_n": None,
        "author": "Guido van Rossum",
        "history": [],
    }


def test_rag_without_author_reports_null(client: TestClient) -> None:
    body = client.post("/rag", json={"query": "pattern matching"}).json()
    assert body["author"] is None


@pytest.mark.parametrize("how", ["body", "accept"])
def test_rag_streams_sources_tokens_done(client: TestClient, how: str) -> None:
    kwargs = (
        {"json": {"query": "pattern matching", "stream": True}}
        if how == "body"
        else {"json": {"query": "pattern matching"}, "headers": {"accept": "text/event-stream"}}
    )
    response = client.post("/rag", **kwargs)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done"
    assert set(names[1:-1]) == {"token"} and len(names) == 2 + 3
    sources, done = events[0][1], events[-1][1]
    assert [s["id"] for s in sources["sources"]] == ["chunk-1", "chunk-2", "chunk-3"]
    assert sources["rerank"] == "none" and sources["model"] == "fake-llm"
    assert "".join(data["text"] for name, data in events if name == "token").strip() == done["answer"]
    assert done["rerank"] == "none"
    assert {"ttft", "generation", "total"} <= set(done["timings_ms"])


def test_json_response_is_the_sources_and_done_events_together(client: TestClient) -> None:
    from llm_twin.api.schemas import DoneEventData, RAGResponse, SourcesEventData

    assert set(RAGResponse.model_fields) == set(SourcesEventData.model_fields) | set(DoneEventData.model_fields)
    body = client.post("/rag", json={"query": "pattern matching"}).json()
    events = dict(parse_sse(client.post("/rag", json={"query": "pattern matching", "stream": True}).text))
    sources, done = events["sources"], events["done"]
    assert set(body) == set(sources) | set(done)
    # usage: counted from the stream, reported by complete(); trace_id: one per request
    for key in set(body) - {"timings_ms", "usage", "trace_id"}:
        assert body[key] == sources.get(key, done.get(key)), key


def test_explicit_stream_false_wins_over_accept(client: TestClient) -> None:
    response = client.post("/rag", json={"query": "x", "stream": False}, headers={"accept": "text/event-stream"})
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["answer"]


def test_no_sources_answers_without_calling_the_llm(settings, fake_llm: FakeLLM) -> None:
    pipeline = RAGPipeline(FakeRetrieval(chunks=[]), fake_llm, settings)
    with TestClient(create_app(settings, pipeline)) as client:
        body = client.post("/rag", json={"query": "anything"}).json()
        events = parse_sse(client.post("/rag", json={"query": "anything", "stream": True}).text)
    assert body["sources"] == [] and "could not find" in body["answer"]
    assert [name for name, _ in events] == ["sources", "token", "done"]
    assert fake_llm.calls == 0


def test_health_ready_docs_and_page(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["model"] == "fake-llm"
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/rag", "/health", "/ready"} <= set(spec["paths"])
    assert "RAGResponse" in spec["components"]["schemas"]
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text and "/static/app.js" in page.text
    assert "sseEvents" in client.get("/static/app.js").text


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   \n\t "}, "query"),
        ({"query": "x" * 2001}, "query"),
        ({}, "query"),
        ({"query": 5}, "query"),
        ({"query": "ok", "k": 0}, "k"),
        ({"query": "ok", "k": 101}, "k"),
        ({"query": "ok", "k": "many"}, "k"),
        ({"query": "ok", "expand_to_n": 0}, "expand_to_n"),
        ({"query": "ok", "expand_to_n": 4}, "expand_to_n"),  # above LLM_TWIN_EXPAND_MAX=3
        ({"query": "ok", "stream": "perhaps"}, "stream"),
        ({"query": "ok", "qeury": "typo"}, "qeury"),
    ],
)
def test_invalid_input_is_422_naming_the_field(client: TestClient, payload: dict, field: str) -> None:
    assert_error(client.post("/rag", json=payload), 422, "invalid_input", field)


def test_query_at_the_limit_is_accepted(client: TestClient) -> None:
    assert client.post("/rag", json={"query": "x" * 2000}).status_code == 200


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/rag", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_input", "body")


def test_invalid_input_from_retrieval_is_422(client: TestClient, fake_retrieval: FakeRetrieval) -> None:
    fake_retrieval.error = InvalidInputError("author", "no author matches 'Nobody'")
    error = assert_error(client.post("/rag", json={"query": "q", "author": "Nobody"}), 422, "invalid_input", "author")
    assert "Nobody" in error["message"]
    # streaming requests get the same JSON error: the stream has not started yet
    assert_error(
        client.post("/rag", json={"query": "q", "author": "Nobody", "stream": True}), 422, "invalid_input", "author"
    )


# --- error mapping -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (StoreUnavailableError(SECRET), 503, "store_unavailable"),
        (StoreLockedError(SECRET), 503, "store_unavailable"),
        (LLMUnavailableError(SECRET), 503, "llm_unavailable"),
        (LLMTimeoutError(SECRET), 504, "llm_timeout"),
        (LLMError(SECRET), 502, "llm_error"),
        (TimeoutError(SECRET), 504, "timeout"),
        (RuntimeError(SECRET), 500, "internal_error"),
        (KeyError(SECRET), 500, "internal_error"),
    ],
)
def test_errors_map_to_status_without_leaking(
    client: TestClient, fake_retrieval: FakeRetrieval, fake_llm: FakeLLM, error: Exception, status: int, code: str
) -> None:
    if isinstance(error, LLMError):
        fake_llm.error = error
    else:
        fake_retrieval.error = error
    assert_error(client.post("/rag", json={"query": "q"}), status, code)


def test_llm_failure_mid_stream_is_an_error_event(client: TestClient, fake_llm: FakeLLM) -> None:
    fake_llm.stream_error = LLMTimeoutError(SECRET)
    response = client.post("/rag", json={"query": "q", "stream": True})
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["sources", "token", "error"]
    assert events[-1][1]["error"]["code"] == "llm_timeout"
    assert SECRET not in response.text


def test_llm_unavailable_before_first_token_in_stream(client: TestClient, fake_llm: FakeLLM) -> None:
    fake_llm.error = LLMUnavailableError(SECRET)
    events = parse_sse(client.post("/rag", json={"query": "q", "stream": True}).text)
    assert [name for name, _ in events] == ["sources", "error"]
    assert events[-1][1]["error"]["code"] == "llm_unavailable"


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/rag"), 405, "method_not_allowed")


def test_store_missing_at_startup_is_503_then_recovers(settings, fake_llm: FakeLLM, monkeypatch) -> None:
    from llm_twin.api import service

    monkeypatch.setattr(service, "RETRY_INTERVAL_S", 0.0)
    retrieval = FakeRetrieval()
    retrieval.warm_error = StoreUnavailableError("no vector store under " + SECRET)
    with TestClient(create_app(settings, RAGPipeline(retrieval, fake_llm, settings))) as client:
        assert client.get("/health").status_code == 200
        assert_error(client.get("/ready"), 503, "store_unavailable")
        assert_error(client.post("/rag", json={"query": "q"}), 503, "store_unavailable")
        # invalid input still wins over the unavailable store
        assert_error(client.post("/rag", json={"query": ""}), 422, "invalid_input", "query")
        retrieval.warm_error = None  # e.g. `llm-twin ingest` has run meanwhile
        assert client.get("/ready").status_code == 200
        assert client.post("/rag", json={"query": "q"}).status_code == 200


# --- concurrency --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_health_answers_while_generation_is_running(client: TestClient, fake_llm: FakeLLM, stream: bool) -> None:
    fake_llm.gate = threading.Event()
    results: dict[str, object] = {}

    def ask() -> None:
        results["rag"] = client.post("/rag", json={"query": "q", "stream": stream})

    worker = threading.Thread(target=ask)
    worker.start()
    try:
        assert fake_llm.entered.wait(10), "generation never started"
        health = client.get("/health")  # the model is busy right now
        assert health.status_code == 200
        assert "rag" not in results  # the generation is still held at the gate
    finally:
        fake_llm.gate.set()
        worker.join(10)
    assert results["rag"].status_code == 200  # type: ignore[attr-defined]


def test_background_start_serves_health_while_loading(
    settings, fake_retrieval: FakeRetrieval, fake_llm: FakeLLM
) -> None:
    gate = threading.Event()
    fake_retrieval.warm_up = lambda: gate.wait(10)  # type: ignore[method-assign]  # a slow model load
    app = create_app(settings, RAGPipeline(fake_retrieval, fake_llm, settings), background_start=True)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert_error(client.get("/ready"), 503, "starting")
        gate.set()
        assert client.post("/rag", json={"query": "q"}).status_code == 200  # waits for the load
        assert client.get("/ready").status_code == 200
