"""Request ids and trace ids: on every response, in the answer, and in every log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from rag_fakes import FakeLLM, FakeRetrieval
from test_api_contract import parse_sse

from llm_twin.api.app import create_app
from llm_twin.observability.logs import configure_logging
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import load_settings


@pytest.fixture(autouse=True)
def _package_logs_on() -> Iterator[None]:
    """In-process CLI tests quiet the package's loggers (as ``llm-twin ask`` does); undo that here."""
    package = logging.getLogger("llm_twin")
    level = package.level
    package.setLevel(logging.NOTSET)
    try:
        yield
    finally:
        package.setLevel(level)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The root logger's JSON lines, as ``llm-twin serve`` writes them with LLM_TWIN_LOG_FORMAT=json."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("json", "INFO", stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def make_client(tmp_path, **overrides: object) -> TestClient:
    settings = load_settings(data_dir=tmp_path, **overrides)
    return TestClient(create_app(settings, RAGPipeline(FakeRetrieval(), FakeLLM(), settings)))


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_request_id_in_and_out(tmp_path) -> None:
    with make_client(tmp_path) as client:
        given = client.get("/health", headers={"X-Request-ID": "client-id-1"})
        made = client.get("/health")
        hostile = client.get("/health", headers={"X-Request-ID": "bad id <script>"})
    assert given.headers["X-Request-ID"] == "client-id-1"
    assert len(made.headers["X-Request-ID"]) == 16
    assert hostile.headers["X-Request-ID"] != "bad id <script>"  # only sane tokens reach the logs
    assert len(made.headers["X-Trace-Id"]) == 32  # even untraced requests have one, for the logs


def test_trace_id_in_header_json_and_done_event(tmp_path) -> None:
    with make_client(tmp_path) as client:
        response = client.post("/rag", json={"query": "pattern matching"})
        streamed = client.post("/rag", json={"query": "pattern matching", "stream": True})
        failed = client.post("/rag", json={"query": ""})
    assert response.json()["trace_id"] == response.headers["X-Trace-Id"]
    done = dict(parse_sse(streamed.text))["done"]
    assert done["trace_id"] == streamed.headers["X-Trace-Id"] != response.headers["X-Trace-Id"]
    assert len(failed.headers["X-Trace-Id"]) == 32  # errors too: a complaint can name its trace


def test_json_log_lines_carry_request_and_trace_ids(tmp_path, log_lines: io.StringIO) -> None:
    with make_client(tmp_path, log_format="json") as client:
        response = client.post("/rag", json={"query": "secret question"}, headers={"X-Request-ID": "req-42"})
    lines = [r for r in records(log_lines) if r.get("request_id") == "req-42"]
    assert {r["logger"] for r in lines} >= {"llm_twin.api.routes.rag", "llm_twin.access"}
    assert {r["trace_id"] for r in lines} == {response.headers["X-Trace-Id"]}
    access = next(r for r in lines if r["logger"] == "llm_twin.access")
    assert access["status"] == 200 and access["route"] == "/rag" and access["duration_ms"] > 0
    rag = next(r for r in lines if r["logger"] == "llm_twin.api.routes.rag")
    assert rag["question_chars"] == len("secret question")
    assert "secret question" not in log_lines.getvalue()  # not logged unless allowed


def test_questions_are_logged_only_when_allowed(tmp_path, log_lines: io.StringIO) -> None:
    with make_client(tmp_path, log_questions=True) as client:
        client.post("/rag", json={"query": "what about pattern matching?"})
    rag = next(r for r in records(log_lines) if r["logger"] == "llm_twin.api.routes.rag")
    assert rag["question"] == "what about pattern matching?"


def test_text_format_names_the_ids(tmp_path) -> None:
    stream = io.StringIO()
    handler = configure_logging("text", "INFO", stream=stream)
    try:
        with make_client(tmp_path) as client:
            response = client.post("/rag", json={"query": "pattern matching"}, headers={"X-Request-ID": "req-7"})
    finally:
        logging.getLogger().removeHandler(handler)
    access = next(line for line in stream.getvalue().splitlines() if "llm_twin.access" in line)
    assert f"req=req-7 trace={response.headers['X-Trace-Id']}" in access
