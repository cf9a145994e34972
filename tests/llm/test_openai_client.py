"""The OpenAI-compatible client against a real local HTTP server that speaks the chat completions API."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llm_twin.errors import LLMError, LLMTimeoutError, LLMUnavailableError
from llm_twin.llm.base import GenerationParams, LLMClient, SupportsDeadline, TokenScorer
from llm_twin.llm.factory import build_helper_llm, build_llm
from llm_twin.llm.openai_compat import OPENAI_BASE_URL, OpenAICompatibleClient
from llm_twin.settings import load_settings

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is RAG?"}]
PARAMS = GenerationParams(max_new_tokens=32, temperature=0.2, top_p=0.8, repetition_penalty=1.05, stop=("\n\n",))


@dataclass
class Reply:
    """One scripted answer; without a script the server answers normally."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class FakeOpenAI:
    url: str
    script: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


def completion_body(text: str) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": "served-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


def sse_events(pieces: list[str]) -> Iterator[str]:
    yield ": keep-alive comment\n\n"
    yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}) + "\n\n"
    for piece in pieces:
        yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}) + "\n\n"
    yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + "\n\n"
    yield "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}) + "\n\n"
    yield "data: [DONE]\n\n"
    yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "AFTER-DONE"}}]}) + "\n\n"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    state = FakeOpenAI(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            payload = json.loads(self.rfile.read(length))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "json": payload})
            reply = state.script.pop(0) if state.script else Reply()
            time.sleep(reply.delay_s)
            if reply.status != 200 or reply.body is not None:
                self._json(reply.status, reply.body or {"error": {"message": f"status {reply.status}"}}, reply.headers)
            elif payload.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()  # HTTP/1.0 without Content-Length: the body ends when we close
                for event in sse_events(["Retrieval", " augmented", " generation [1]."]):
                    self.wfile.write(event.encode())
                    self.wfile.flush()
            else:
                self._json(200, completion_body("RAG grounds answers in retrieved text [1]."), {})

        def _json(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


def make_client(url: str, **overrides: Any) -> OpenAICompatibleClient:
    options: dict[str, Any] = {"api_key": "sk-test", "timeout_s": 5.0, "max_retries": 2, "backoff_s": 0.01}
    options.update(overrides)
    client = OpenAICompatibleClient(url, "twin-model", **options)
    client.warm_up()
    return client


def test_complete_posts_chat_completions_and_parses_the_answer(server: FakeOpenAI) -> None:
    client = make_client(server.url)
    assert isinstance(client, LLMClient)
    result = client.complete(MESSAGES, PARAMS)
    assert result.text == "RAG grounds answers in retrieved text [1]."
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (12, 5, "stop")
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    sent = request["json"]
    assert sent["model"] == "twin-model" and sent["messages"] == MESSAGES and sent["stream"] is False
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (32, 0.2, 0.8)
    assert sent["stop"] == ["\n\n"] and sent["repetition_penalty"] == 1.05


def test_stream_parses_sse_deltas_until_done(server: FakeOpenAI) -> None:
    pieces = list(make_client(server.url).stream(MESSAGES, PARAMS))
    assert pieces == ["Retrieval", " augmented", " generation [1]."]
    assert server.requests[0]["json"]["stream"] is True


def test_503_then_200_is_retried(server: FakeOpenAI) -> None:
    server.script = [Reply(status=503)]
    result = make_client(server.url).complete(MESSAGES, PARAMS)
    assert result.text.startswith("RAG grounds")
    assert len(server.requests) == 2


def test_stream_retries_before_the_first_byte(server: FakeOpenAI) -> None:
    server.script = [Reply(status=502), Reply(status=429, headers={"Retry-After": "0"})]
    assert "".join(make_client(server.url).stream(MESSAGES, PARAMS)) == "Retrieval augmented generation [1]."
    assert len(server.requests) == 3


def test_persistent_5xx_gives_up_as_unavailable(server: FakeOpenAI) -> None:
    server.script = [Reply(status=503)] * 5
    with pytest.raises(LLMUnavailableError, match="503"):
        make_client(server.url, max_retries=1).complete(MESSAGES, PARAMS)
    assert len(server.requests) == 2  # one try plus one retry


def test_client_errors_are_not_retried(server: FakeOpenAI) -> None:
    server.script = [Reply(status=400, body={"error": {"message": "max_tokens is too large"}})]
    with pytest.raises(LLMError, match="max_tokens is too large") as caught:
        make_client(server.url).complete(MESSAGES, PARAMS)
    assert not isinstance(caught.value, (LLMUnavailableError, LLMTimeoutError))
    assert len(server.requests) == 1


def test_bad_credentials_are_unavailable_not_retried(server: FakeOpenAI) -> None:
    server.script = [Reply(status=401)]
    with pytest.raises(LLMUnavailableError, match="credentials"):
        make_client(server.url).complete(MESSAGES, PARAMS)
    assert len(server.requests) == 1


def test_slow_server_is_a_timeout_and_not_retried(server: FakeOpenAI) -> None:
    server.script = [Reply(delay_s=1.0)]
    with pytest.raises(LLMTimeoutError):
        make_client(server.url, timeout_s=0.2).complete(MESSAGES, PARAMS)
    assert len(server.requests) == 1


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError, match="cannot reach"):
        make_client(f"http://127.0.0.1:{port}/v1", max_retries=2).complete(MESSAGES, PARAMS)
    assert time.monotonic() - started < 3  # bounded backoff


def test_complete_within_bounds_the_wait(server: FakeOpenAI) -> None:
    client = make_client(server.url, timeout_s=5.0)
    assert isinstance(client, SupportsDeadline)
    assert client.complete_within(MESSAGES, PARAMS, timeout_s=2.0).text.startswith("RAG grounds")
    server.script = [Reply(delay_s=1.0)]
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        client.complete_within(MESSAGES, PARAMS, timeout_s=0.3)
    assert time.monotonic() - started < 0.9  # the request's own timeout was cut to the time left


def test_complete_within_does_not_retry_past_the_deadline(server: FakeOpenAI) -> None:
    server.script = [Reply(status=503, headers={"Retry-After": "5"})]
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError, match="within 1s"):
        make_client(server.url).complete_within(MESSAGES, PARAMS, timeout_s=1.0)
    assert time.monotonic() - started < 1.0 and len(server.requests) == 1


def test_next_token_logprobs_asks_for_one_token_with_top_logprobs(server: FakeOpenAI) -> None:
    top = [{"token": "Yes", "logprob": -0.2}, {"token": " no", "logprob": -1.8}, {"token": "Maybe", "logprob": -3.0}]
    body = {"choices": [{"logprobs": {"content": [{"token": "Yes", "logprob": -0.2, "top_logprobs": top}]}}]}
    server.script = [Reply(body=body)]
    client = make_client(server.url)
    assert isinstance(client, TokenScorer)
    assert client.next_token_logprobs(MESSAGES, ["Yes", "No"]) == {"Yes": -0.2, " no": -1.8}
    sent = server.requests[0]["json"]
    assert (sent["max_tokens"], sent["temperature"], sent["logprobs"], sent["top_logprobs"]) == (1, 0.0, True, 20)
    server.script = [Reply(body=completion_body("Yes"))]  # a server without logprobs support
    with pytest.raises(LLMError, match="no logprobs"):
        client.next_token_logprobs(MESSAGES, ["Yes", "No"])


def test_count_tokens_estimates_four_chars_per_token() -> None:
    client = OpenAICompatibleClient("http://127.0.0.1:1/v1", "m")
    assert client.count_tokens("") == 1
    assert client.count_tokens("x" * 400) == 101
    assert OpenAICompatibleClient("http://127.0.0.1:1/v1", "m", chars_per_token=2).count_tokens("x" * 400) == 201


def test_repetition_penalty_is_not_sent_to_openai_itself(server: FakeOpenAI) -> None:
    client = make_client(server.url, send_repetition_penalty=False)
    client.complete(MESSAGES, PARAMS)
    assert "repetition_penalty" not in server.requests[0]["json"]
    assert OpenAICompatibleClient(OPENAI_BASE_URL, "gpt-4o-mini")._send_repetition_penalty is False


def test_factory_builds_openai_generation_and_helper(monkeypatch: pytest.MonkeyPatch, server: FakeOpenAI) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    settings = load_settings(
        llm_backend="openai",
        llm_base_url=server.url,
        llm_model="twin-model",
        llm_api_key="sk-gen",
        llm_timeout_s=9,
        helper_llm_backend="openai",
        helper_llm_model="gpt-4o-mini",
        helper_llm_timeout_s=3,
    )
    generator = build_llm(settings)
    assert isinstance(generator, OpenAICompatibleClient)
    assert generator.complete(MESSAGES, PARAMS).text
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-gen"

    helper = build_helper_llm(settings)
    assert isinstance(helper, OpenAICompatibleClient)
    assert helper.base_url == OPENAI_BASE_URL and helper.model_name == "gpt-4o-mini"
    assert helper._api_key == "sk-from-env" and helper._timeout_s == 3


def test_openai_backend_without_base_url_is_unavailable() -> None:
    with pytest.raises(LLMUnavailableError, match="LLM_TWIN_LLM_BASE_URL"):
        build_llm(load_settings(llm_backend="openai", llm_base_url=None))
