"""The MCP server through the official SDK's client: over streamable HTTP at ``/mcp`` (the app on a
loopback port, fakes at the model/store boundary) and over stdio (``llm-twin mcp`` as a subprocess)."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.types import CallToolResult, TextResourceContents
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rag_fakes import FakeLLM, FakeRetrieval, write_registry
from test_api_cli import small_env

from llm_twin.domain.authors import Author
from llm_twin.errors import StoreUnavailableError
from llm_twin.observability import install_exporter, shutdown_tracing

T = TypeVar("T")
SECRET = "/secret/path/at/line/42 Traceback"
SRC = Path(__file__).resolve().parents[2] / "src"


def with_client(server: str | StdioServerParameters, use: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Client(server) as client:
            return await use(client)

    return anyio.run(main)


def call_tool(server: str | StdioServerParameters, name: str, arguments: dict[str, Any]) -> CallToolResult:
    return with_client(server, lambda client: client.call_tool(name, arguments))


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


@pytest.fixture
def mcp_url(live_server: tuple[str, FakeLLM]) -> str:
    return live_server[0] + "/mcp"


@pytest.fixture
def spans(live_server: tuple[str, FakeLLM]) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()  # after the app's startup, which configures tracing ("none")
    install_exporter(exporter)
    try:
        yield exporter
    finally:
        shutdown_tracing()


# --- streamable HTTP, fakes behind the pipeline ------------------------------------------------


def test_lists_both_tools_with_their_arguments_and_output_schemas(mcp_url: str) -> None:
    tools = {tool.name: tool for tool in with_client(mcp_url, lambda client: client.list_tools()).tools}
    assert set(tools) == {"search_writing", "ask_twin"}
    search, ask = tools["search_writing"].input_schema, tools["ask_twin"].input_schema
    assert search["required"] == ["query"] and set(search["properties"]) == {"query", "author", "k"}
    assert search["properties"]["k"]["maximum"] == 100
    assert ask["required"] == ["question"] and set(ask["properties"]) == {"question", "author"}
    assert "passages" in tools["search_writing"].output_schema["properties"]
    assert "sources" in tools["ask_twin"].output_schema["properties"]
    assert tools["ask_twin"].annotations.read_only_hint


def test_search_writing_returns_passages_without_generating(
    mcp_url: str, fake_retrieval: FakeRetrieval, fake_llm: FakeLLM
) -> None:
    result = call_tool(mcp_url, "search_writing", {"query": " pattern matching ", "author": "Guido", "k": 2})
    assert not result.is_error, text_of(result)
    found = result.structured_content
    assert found["author"]["full_name"] == "Guido van Rossum"
    assert [p["rank"] for p in found["passages"]] == [1, 2]
    first = found["passages"][0]
    assert first["title"] == "PEP 1" and first["author"] == "Guido van Rossum" and first["content_type"] == "article"
    assert first["link"] == "https://peps.python.org/pep-0001/" and first["score"] == 1.0
    assert first["text"].startswith("Structural pattern matching, part 1")
    assert "[1] PEP 1 — Guido van Rossum" in text_of(result) and "https://peps.python.org/pep-0002/" in text_of(result)
    assert fake_retrieval.calls == [
        {"query": "pattern matching", "k": 2, "expand_to_n": None, "author": "Guido", "history": ()}
    ]
    assert fake_llm.calls == 0  # retrieval only


def test_ask_twin_answers_through_the_pipeline_with_numbered_sources(
    mcp_url: str, fake_retrieval: FakeRetrieval, fake_llm: FakeLLM
) -> None:
    result = call_tool(mcp_url, "ask_twin", {"question": "What is pattern matching?"})
    assert not result.is_error, text_of(result)
    answer = result.structured_content
    assert answer["answer"] == "Pattern matching was proposed [1]." and answer["model"] == "fake-llm"
    assert [s["title"] for s in answer["sources"]] == ["PEP 1", "PEP 2", "PEP 3"]
    assert answer["sources"][0]["link"] == "https://peps.python.org/pep-0001/" and answer["author"] is None
    text = text_of(result)
    assert text.startswith("Pattern matching was proposed [1].") and "[3] PEP 3 — Guido van Rossum (article)" in text
    assert fake_llm.calls == 1 and fake_retrieval.calls[0]["query"] == "What is pattern matching?"


def test_the_authors_resource_lists_each_person_with_every_name(mcp_url: str, tmp_path: Path) -> None:
    write_registry(tmp_path)  # the live server's data dir

    async def use(client: Client) -> tuple[Any, Any]:
        return await client.list_resources(), await client.read_resource("twin://authors")

    listed, read = with_client(mcp_url, use)
    (resource,) = listed.resources
    assert str(resource.uri) == "twin://authors" and resource.mime_type == "application/json"
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    people = json.loads(content.text)
    assert [p["name"] for p in people] == ["Guido van Rossum", "Pablo Galindo Salgado"]  # most documents first
    assert people[1]["names"] == [
        {"name": "Pablo Galindo", "id": Author.from_name("Pablo Galindo").id, "linked_by": "name rule"}
    ]
    assert people[0]["documents"] == {"article": 4, "post": 1}
    assert people[1]["documents"] == {"article": 1, "repository": 1}  # summed over the person's names


def test_the_authors_resource_without_a_store_is_a_clear_error(mcp_url: str) -> None:
    async def use(client: Client) -> MCPError | None:
        try:
            await client.read_resource("twin://authors")
        except MCPError as error:  # inside the client's task group: caught here, not as an ExceptionGroup
            return error
        return None

    error = with_client(mcp_url, use)
    assert error is not None and error.message == StoreUnavailableError.public_message


@pytest.mark.parametrize(
    ("tool", "arguments", "argument"),
    [
        ("search_writing", {"query": ""}, "query"),
        ("search_writing", {"query": "x" * 2001}, "query"),
        ("search_writing", {"query": "ok", "k": 0}, "k"),
        ("search_writing", {"query": "ok", "k": 101}, "k"),
        ("search_writing", {"query": "ok", "k": "many"}, "k"),
        ("search_writing", {"k": 3}, "query"),
        ("ask_twin", {"question": "   "}, "question"),
        ("ask_twin", {"question": "ok", "author": " "}, "author"),
        ("ask_twin", {"question": "ok", "author": "x" * 201}, "author"),
        ("ask_twin", {}, "question"),
    ],
)
def test_a_bad_argument_is_an_error_result_naming_it(
    mcp_url: str, fake_retrieval: FakeRetrieval, tool: str, arguments: dict[str, Any], argument: str
) -> None:
    result = call_tool(mcp_url, tool, arguments)
    assert result.is_error and result.structured_content is None
    text = text_of(result)
    assert text.startswith(f"invalid argument {argument}: "), text
    assert "Traceback" not in text and "pydantic" not in text and "\n" not in text
    assert fake_retrieval.calls == []  # rejected before the pipeline


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (StoreUnavailableError(SECRET), StoreUnavailableError.public_message),
        (RuntimeError(SECRET), "internal server error"),
    ],
)
def test_a_failing_pipeline_is_an_error_result_without_internals(
    mcp_url: str, fake_retrieval: FakeRetrieval, error: BaseException, message: str
) -> None:
    fake_retrieval.error = error
    for tool, arguments in (("search_writing", {"query": "q"}), ("ask_twin", {"question": "q"})):
        result = call_tool(mcp_url, tool, arguments)
        assert result.is_error and text_of(result) == message


def test_tool_calls_are_traced_like_rag_requests(mcp_url: str, spans: InMemorySpanExporter) -> None:
    assert not call_tool(mcp_url, "ask_twin", {"question": "pattern matching"}).is_error
    assert not call_tool(mcp_url, "search_writing", {"query": "pattern matching", "k": 1}).is_error
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert {"mcp.ask_twin", "rag", "rag.retrieve", "rag.generate", "mcp.search_writing"} <= set(finished)
    assert finished["rag"].parent.span_id == finished["mcp.ask_twin"].context.span_id
    by_id = {span.context.span_id: span for span in spans.get_finished_spans()}
    for tool in ("mcp.ask_twin", "mcp.search_writing"):  # inside the HTTP request's span, as /rag is
        assert by_id[finished[tool].parent.span_id].name == "POST /mcp"
    assert finished["mcp.ask_twin"].attributes["sources"] == 3
    assert finished["mcp.search_writing"].attributes["passages"] == 1


@pytest.fixture
def one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_TWIN_API_WORKERS", "1")  # read when live_server builds its settings


def test_tool_calls_wait_for_the_same_worker_slots_as_rag_requests(
    one_worker: None, live_server: tuple[str, FakeLLM], fake_llm: FakeLLM
) -> None:
    url = live_server[0]
    fake_llm.gate = threading.Event()
    rag = threading.Thread(target=lambda: httpx.post(url + "/rag", json={"query": "q"}, timeout=30))
    rag.start()
    try:
        assert fake_llm.entered.wait(10)  # /rag is generating in the only slot

        async def use(client: Client) -> tuple[bool, CallToolResult]:
            results: list[CallToolResult] = []
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(lambda: _append(results, client.call_tool("search_writing", {"query": "q"})))
                await anyio.sleep(1.0)
                waited = not results  # retrieval alone takes milliseconds: it waited for the slot
                fake_llm.gate.set()
            return waited, results[0]

        waited, result = with_client(url + "/mcp", use)
        assert waited and not result.is_error
    finally:
        fake_llm.gate.set()
        rag.join(10)


async def _append(results: list[T], awaitable: Awaitable[T]) -> None:
    results.append(await awaitable)


# --- stdio: `llm-twin mcp` as a subprocess -----------------------------------------------------


def stdio_server(data_dir: Path, **extra: str) -> StdioServerParameters:
    env = {
        **os.environ,
        **small_env(data_dir, **extra),
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    return StdioServerParameters(
        command=sys.executable, args=["-c", "from llm_twin.cli import app; app()", "mcp"], env=env
    )


def test_stdio_serves_the_tools_and_authors_and_reports_errors(tmp_path: Path) -> None:
    """No model is loaded: an unreachable OpenAI-compatible endpoint stands in, and the store is empty."""
    write_registry(tmp_path)
    server = stdio_server(tmp_path, LLM_TWIN_LLM_BACKEND="openai", LLM_TWIN_LLM_BASE_URL="http://127.0.0.1:9/v1")

    async def use(client: Client) -> tuple[Any, ...]:
        tools = await client.list_tools()
        people = await client.read_resource("twin://authors")
        bad = await client.call_tool("search_writing", {"query": "ok", "k": 0})
        no_store = await client.call_tool("ask_twin", {"question": "What is pattern matching?"})
        return tools, people, bad, no_store

    tools, people, bad, no_store = with_client(server, use)
    assert {tool.name for tool in tools.tools} == {"search_writing", "ask_twin"}
    assert json.loads(people.contents[0].text)[0]["name"] == "Guido van Rossum"
    assert bad.is_error and text_of(bad) == "invalid argument k: must be between 1 and 100"
    assert no_store.is_error and text_of(no_store) == StoreUnavailableError.public_message


@pytest.mark.slow
def test_stdio_answers_from_the_real_store_and_model(demo_data_dir: Path) -> None:
    async def use(client: Client) -> tuple[CallToolResult, CallToolResult]:
        search = await client.call_tool("search_writing", {"query": "structural pattern matching", "k": 3})
        ask = await client.call_tool(
            "ask_twin", {"question": "What did Guido van Rossum write about pattern matching?"}
        )
        return search, ask

    search, ask = with_client(stdio_server(demo_data_dir), use)
    assert not search.is_error, text_of(search)
    passages = search.structured_content["passages"]
    assert len(passages) == 3 and all(p["text"] and p["author"] and p["score"] for p in passages)
    assert any("pattern" in (p["title"] or "").lower() + p["text"].lower() for p in passages)
    assert not ask.is_error, text_of(ask)
    answer = ask.structured_content
    assert answer["answer"] and answer["sources"] and answer["author"]["full_name"] == "Guido van Rossum"
    assert all("Guido van Rossum" in source["authors"] for source in answer["sources"])
    assert "Sources:" in text_of(ask)
