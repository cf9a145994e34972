"""``POST /rag`` with ``history``: the follow-up's standalone question comes back (JSON and the SSE
sources event), the conversation's author carries over, and the history is bounded with a 422."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rag_fakes import FakeLLM, PeopleFakeRetrieval
from test_api_contract import parse_sse

from llm_fakes import FakeLLM as FakeHelperLLM
from llm_twin.api.app import create_app
from llm_twin.domain.limits import MAX_HISTORY_CHARS, MAX_HISTORY_TURNS
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings

HISTORY = [
    {"role": "user", "content": "What did Barry Warsaw write about the PEP process?"},
    {"role": "assistant", "content": "PEPs are discussed on python-dev [1]."},
]
REWRITE = "What did Barry Warsaw write about PEP 8?"


@pytest.fixture
def retrieval() -> PeopleFakeRetrieval:
    return PeopleFakeRetrieval(FakeHelperLLM(REWRITE))


@pytest.fixture
def client(tmp_path: Path, retrieval: PeopleFakeRetrieval) -> Iterator[TestClient]:
    settings = load_settings(data_dir=tmp_path)
    with TestClient(create_app(settings, RAGPipeline(retrieval, FakeLLM(), settings))) as test_client:
        yield test_client


def test_a_follow_up_returns_its_standalone_question_and_the_carried_author(
    client: TestClient, retrieval: PeopleFakeRetrieval
) -> None:
    response = client.post("/rag", json={"query": "And what did he write about PEP 8?", "history": HISTORY})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rewritten_query"] == REWRITE
    assert body["author"]["full_name"] == "Barry Warsaw"
    assert body["sources"] and all(s["authors"] == ["Barry Warsaw"] for s in body["sources"])
    assert [(t.role, t.content) for t in retrieval.calls[-1]["history"]] == [(t["role"], t["content"]) for t in HISTORY]


def test_a_streamed_follow_up_sends_the_rewrite_in_the_sources_event(client: TestClient) -> None:
    response = client.post("/rag", json={"query": "And about PEP 8?", "history": HISTORY, "stream": True})
    events = parse_sse(response.text)
    assert events[0][0] == "sources" and events[0][1]["rewritten_query"] == REWRITE


def test_a_first_question_has_no_rewrite(client: TestClient) -> None:
    body = client.post("/rag", json={"query": "What did Guido van Rossum write?"}).json()
    assert body["rewritten_query"] is None and body["author"]["full_name"] == "Guido van Rossum"


@pytest.mark.parametrize(
    ("history", "field", "message"),
    [
        ([{"role": "user", "content": "q"}] * (MAX_HISTORY_TURNS + 1), "history", f"at most {MAX_HISTORY_TURNS}"),
        ([{"role": "user", "content": "x" * (MAX_HISTORY_CHARS + 1)}], "history", f"at most {MAX_HISTORY_CHARS}"),
        ([{"role": "system", "content": "be brief"}], "history.0.role", "'user' or 'assistant'"),
        ([{"role": "user"}], "history.0.content", "Field required"),
    ],
)
def test_history_beyond_its_limits_is_a_422_naming_the_field(
    client: TestClient, history: list, field: str, message: str
) -> None:
    response = client.post("/rag", json={"query": "and then?", "history": history})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["field"] == field and message in error["message"], error
