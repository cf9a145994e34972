"""``"progress": true``: ``event: status`` before each stage of a streamed /rag answer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from fastapi.testclient import TestClient
from rag_fakes import FakeLLM, FakeRetrieval, PeopleFakeRetrieval

from llm_twin.api.app import create_app
from llm_twin.domain.conversation import Turn
from llm_twin.observability.progress import report_progress
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.retrieval.types import RetrievalResult
from llm_twin.settings import load_settings


class ReportingRetrieval(FakeRetrieval):
    """Reports its stages as the real retrieval pipeline does."""

    def run(
        self,
        query: str,
        k: int | None = None,
        expand_to_n: int | None = None,
        author: str | None = None,
        *,
        history: Sequence[Turn] = (),
    ) -> RetrievalResult:
        report_progress("author", "Resolving the author")
        report_progress("search", "Searching with 1 query", 1)
        return super().run(query, k, expand_to_n, author, history=history)


class ReportingPeopleRetrieval(PeopleFakeRetrieval):
    def run(
        self,
        query: str,
        k: int | None = None,
        expand_to_n: int | None = None,
        author: str | None = None,
        *,
        history: Sequence[Turn] = (),
    ) -> RetrievalResult:
        report_progress("author", "Resolving the author")
        return super().run(query, k, expand_to_n, author, history=history)


def events(text: str) -> list[tuple[str, dict]]:
    parsed = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        name = next(line[6:].strip() for line in lines if line.startswith("event:"))
        parsed.append((name, json.loads("".join(line[5:].strip() for line in lines if line.startswith("data:")))))
    return parsed


def make_client(tmp_path: Path, retrieval: FakeRetrieval) -> TestClient:
    settings = load_settings(data_dir=tmp_path)
    return TestClient(create_app(settings, RAGPipeline(retrieval, FakeLLM(), settings)), raise_server_exceptions=False)


def test_status_events_come_before_each_stage_with_elapsed_time(tmp_path: Path) -> None:
    with make_client(tmp_path, ReportingRetrieval()) as client:
        response = client.post("/rag", json={"query": "pattern matching?", "stream": True, "progress": True})
    assert response.status_code == 200
    stream = events(response.text)
    kinds = [name if name != "status" else f"status:{data['stage']}" for name, data in stream]
    assert kinds[:5] == ["status:author", "status:search", "status:read", "sources", "status:write"]
    assert kinds[5:-1] == ["token"] * 3 and kinds[-1] == "done"
    statuses = [data for name, data in stream if name == "status"]
    assert statuses[2] == {
        "stage": "read",
        "message": "Reading 3 sources",
        "elapsed_ms": statuses[2]["elapsed_ms"],
        "count": 3,
    }
    elapsed = [data["elapsed_ms"] for data in statuses]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0


def test_without_progress_the_stream_and_the_json_answer_are_unchanged(tmp_path: Path) -> None:
    with make_client(tmp_path, ReportingRetrieval()) as client:
        streamed = client.post("/rag", json={"query": "pattern matching?", "stream": True})
        blocking = client.post("/rag", json={"query": "pattern matching?", "progress": True})
    assert [name for name, _ in events(streamed.text)] == ["sources", "token", "token", "token", "done"]
    assert blocking.status_code == 200
    assert blocking.json()["answer"] == "Pattern matching was proposed [1]." and "stage" not in blocking.json()


def test_a_retrieval_error_after_a_status_event_arrives_as_an_error_event(tmp_path: Path) -> None:
    with make_client(tmp_path, ReportingPeopleRetrieval()) as client:
        body = {"query": "pattern matching?", "stream": True, "progress": True, "author": "Nobody Known"}
        response = client.post("/rag", json=body)
        without = client.post("/rag", json=body | {"progress": False})
    assert without.status_code == 422  # no progress: the error is still the HTTP status
    assert response.status_code == 200
    name, data = events(response.text)[-1]
    assert name == "error" and data["error"]["code"] == "invalid_input" and data["error"]["field"] == "author"
