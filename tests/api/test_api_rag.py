"""The real app end to end: ingested store, ONNX embedder, SmolLM2 GGUF, through HTTP (TestClient).

One app per module (the model loads once); answers are short (``max_new_tokens=12``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import slow_settings
from llm_twin.api.app import create_app

pytestmark = pytest.mark.slow

GUIDO_QUESTION = "What did Guido van Rossum write about pattern matching?"


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if lines:
            name = next(line[6:].strip() for line in lines if line.startswith("event:"))
            events.append((name, json.loads("".join(line[5:].strip() for line in lines if line.startswith("data:")))))
    return events


@pytest.fixture(scope="module")
def client(demo_data_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(slow_settings(demo_data_dir)), raise_server_exceptions=False) as test_client:
        yield test_client


def test_ready_reports_the_loaded_model(client: TestClient) -> None:
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["model"] == "smollm2-135m-instruct"
    assert ready.json()["store"] == "embedded"


def test_rag_answers_from_guidos_writing(client: TestClient) -> None:
    response = client.post("/rag", json={"query": GUIDO_QUESTION})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"].strip()
    assert body["model"] == "smollm2-135m-instruct" and body["rerank"] == "none"
    assert body["author"]["full_name"] == "Guido van Rossum"  # self-query found the name in the question
    assert 1 <= len(body["sources"]) <= 3
    assert all("Guido van Rossum" in source["authors"] for source in body["sources"])
    assert any("attern" in (source["title"] or "") for source in body["sources"])
    assert body["expanded_queries"] == [GUIDO_QUESTION]
    assert body["hypothetical_document"] is None  # HyDE is opt-in (LLM_TWIN_HYDE)
    assert body["timings_ms"]["generation"] > 0 and body["timings_ms"]["total"] >= body["timings_ms"]["retrieval"]


def test_rag_streams_sources_then_tokens_then_done(client: TestClient) -> None:
    response = client.post("/rag", json={"query": GUIDO_QUESTION, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and names.count("token") >= 2
    assert set(names[1:-1]) == {"token"}
    sources, done = events[0][1], events[-1][1]
    assert sources["sources"] and all("Guido van Rossum" in s["authors"] for s in sources["sources"])
    assert done["answer"] == "".join(data["text"] for name, data in events if name == "token").strip()
    assert 0 < done["timings_ms"]["ttft"] <= done["timings_ms"]["total"]
    assert done["rerank"] == "none"


def test_explicit_author_filters_every_source(client: TestClient) -> None:
    response = client.post("/rag", json={"query": "What is a PEP and how is it reviewed?", "author": "barry warsaw"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["author"]["full_name"] == "Barry Warsaw"
    assert body["sources"] and all("Barry Warsaw" in source["authors"] for source in body["sources"])


def test_unknown_author_is_422(client: TestClient) -> None:
    response = client.post("/rag", json={"query": "pattern matching", "author": "Nobody Atall"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "author"


def test_empty_query_is_422(client: TestClient) -> None:
    response = client.post("/rag", json={"query": ""})
    assert response.status_code == 422 and response.json()["error"]["field"] == "query"


def test_health_answers_while_an_answer_is_generated(client: TestClient) -> None:
    lock = client.app.state.service.pipeline.llm.shared.lock  # the local model's fair queue
    finished: dict[str, float] = {}

    def ask() -> None:
        client.post("/rag", json={"query": GUIDO_QUESTION, "stream": True})
        finished["rag"] = time.perf_counter()

    worker = threading.Thread(target=ask)
    worker.start()
    deadline = time.monotonic() + 60
    while not lock.locked() and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.002)
    health = client.get("/health")
    finished["health"] = time.perf_counter()
    worker.join(120)
    assert health.status_code == 200
    assert finished["health"] < finished["rag"]


def test_concurrent_requests_queue_instead_of_failing(client: TestClient) -> None:
    payloads = [{"query": GUIDO_QUESTION, "stream": i % 2 == 1} for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        responses = list(pool.map(lambda p: client.post("/rag", json=p), payloads))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert sse_events(responses[1].text)[-1][0] == "done"


def test_missing_store_is_503_but_alive(tmp_path: Path) -> None:
    with TestClient(create_app(slow_settings(tmp_path / "empty"))) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "store_unavailable"
        response = client.post("/rag", json={"query": GUIDO_QUESTION})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "store_unavailable"
        assert str(tmp_path) not in response.text
