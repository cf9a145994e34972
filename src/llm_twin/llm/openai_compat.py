"""Generation through any OpenAI-compatible ``/chat/completions`` endpoint, over plain httpx.

Works with vLLM, TGI's Messages API, the llama.cpp server, and OpenAI itself. Plain httpx keeps
the ``openai`` SDK out of the dependencies; the wire format used here is small and stable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx

from llm_twin.errors import LLMError, LLMTimeoutError, LLMUnavailableError
from llm_twin.llm.base import ChatMessage, Completion, GenerationParams

if TYPE_CHECKING:
    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Worth another try: rate limits and server-side trouble. Other 4xx are our bug; retrying won't help.
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
#: How many alternatives a logprobs request asks for (OpenAI's maximum).
TOP_LOGPROBS = 20


@dataclass(frozen=True)
class _Deadline:
    at: float  # on the time.monotonic() clock
    budget_s: float  # what the caller allowed, for messages

    @classmethod
    def after(cls, seconds: float) -> _Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def left(self) -> float:
        return self.at - time.monotonic()


class OpenAICompatibleClient:
    """``LLMClient`` for an OpenAI-compatible chat completions API."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        context_window: int = 4096,
        chars_per_token: float = 4.0,
        send_repetition_penalty: bool | None = None,
    ) -> None:
        self.model_name = model
        self.context_window = context_window
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._chars_per_token = chars_per_token
        # ``repetition_penalty`` is a vLLM/TGI extension; api.openai.com rejects unknown fields.
        if send_repetition_penalty is None:
            send_repetition_penalty = urlparse(self.base_url).hostname != "api.openai.com"
        self._send_repetition_penalty = send_repetition_penalty
        self._http: httpx.Client | None = None
        self._warm_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAICompatibleClient:
        """The generation LLM: ``LLM_TWIN_LLM_BASE_URL`` / ``_LLM_MODEL`` / ``_LLM_API_KEY``."""
        if not settings.llm_base_url:
            raise LLMUnavailableError("LLM_TWIN_LLM_BASE_URL is required for the openai backend")
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else os.environ.get("OPENAI_API_KEY")
        return cls(
            settings.llm_base_url,
            settings.llm_model,
            api_key=key,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            context_window=settings.llm_n_ctx,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Open the connection pool (no request is sent: endpoints may bill or cold-start).

        The timeout applies to each network operation (connect, each read), so a stream may run
        longer than ``timeout_s`` as long as tokens keep arriving.
        """
        with self._warm_lock:
            if self._http is not None:
                return
            headers = {"Accept": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self._timeout_s))

    def close(self) -> None:
        with self._warm_lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    # --- LLMClient ---------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        # The remote tokenizer is unknown; round up so the prompt budget errs on the safe side.
        return int(len(text) / self._chars_per_token) + 1

    def complete(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        return self._complete(messages, params, deadline=None)

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generator[str, None, None]:
        """Yield content deltas from the server-sent events; retries happen only before the first byte."""
        response = self._send(self._payload(messages, params, stream=True), stream=True)
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ``event:``/``id:`` fields and ``:`` keep-alive comments
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError as error:
                    raise LLMError(f"malformed stream event from {self.base_url}") from error
                if "error" in event:
                    raise LLMError(f"stream error from {self.base_url}: {event['error']}")
                for choice in event.get("choices") or []:  # the usage-only last event has none
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
        except httpx.TimeoutException as error:
            raise LLMTimeoutError(f"{self.base_url} stopped sending for {self._timeout_s:g}s") from error
        except httpx.TransportError as error:
            raise LLMUnavailableError(f"connection to {self.base_url} lost mid-stream: {error}") from error
        finally:
            response.close()

    # --- capabilities (llm.base.SupportsDeadline, llm.base.TokenScorer) ------------------------

    def complete_within(self, messages: list[ChatMessage], params: GenerationParams, timeout_s: float) -> Completion:
        """``complete`` bounded as a whole: each try waits at most the time left, and no retry starts
        (nor backoff sleeps) past the deadline."""
        return self._complete(messages, params, deadline=_Deadline.after(timeout_s))

    def next_token_logprobs(self, messages: list[ChatMessage], candidates: Sequence[str]) -> dict[str, float]:
        """A one-token completion with ``top_logprobs`` (OpenAI, vLLM and the llama.cpp server support it).

        Only the top 20 tokens are reported, so an unlikely candidate may be missing from the result.
        """
        payload = {
            "model": self.model_name,
            "messages": list(messages),
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": TOP_LOGPROBS,
        }
        response = self._send(payload, stream=False)
        try:
            table = parse_openai_logprobs(response.json())
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise LLMError(f"no logprobs in the response from {self.base_url}: {error}") from error
        wanted = {c.strip().casefold() for c in candidates}
        return {token: logprob for token, logprob in table.items() if token.strip().casefold() in wanted}

    # --- internals ---------------------------------------------------------------------------

    def _complete(
        self, messages: list[ChatMessage], params: GenerationParams, *, deadline: _Deadline | None
    ) -> Completion:
        response = self._send(self._payload(messages, params, stream=False), stream=False, deadline=deadline)
        try:
            body = response.json()
            choice = body["choices"][0]
            usage = body.get("usage") or {}
            return Completion(
                text=(choice.get("message") or {}).get("content") or "",
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                finish_reason=choice.get("finish_reason"),
                extra={"model": body.get("model", self.model_name)},
            )
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise LLMError(f"malformed chat completion from {self.base_url}: {error}") from error

    def _payload(self, messages: list[ChatMessage], params: GenerationParams, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model_name,
            "messages": list(messages),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": stream,
        }
        if params.stop:
            payload["stop"] = list(params.stop)
        if self._send_repetition_penalty:
            payload["repetition_penalty"] = params.repetition_penalty
        return payload

    def _send(self, payload: dict[str, Any], *, stream: bool, deadline: _Deadline | None = None) -> httpx.Response:
        """POST with bounded retries on connect errors, 408/429/5xx; returns a 2xx response.

        With a ``deadline`` every try waits at most the time left, and none starts after it.
        """
        self.warm_up()
        assert self._http is not None
        attempts = self._max_retries + 1
        timeout_s = self._timeout_s
        for attempt in range(attempts):
            last = attempt == attempts - 1
            if deadline is not None:
                timeout_s = min(self._timeout_s, deadline.left())
                if timeout_s <= 0:
                    raise LLMTimeoutError(f"{self.base_url} did not answer within {deadline.budget_s:g}s")
            try:
                request = self._http.build_request(
                    "POST", "/chat/completions", json=payload, timeout=httpx.Timeout(timeout_s)
                )
                response = self._http.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                if last:
                    raise LLMUnavailableError(f"cannot reach {self.base_url}: {error}") from error
                self._sleep(attempt, None, f"connect error: {error}", deadline)
                continue
            except httpx.TimeoutException as error:
                # The server accepted the request but did not answer: retrying would double the wait.
                raise LLMTimeoutError(f"{self.base_url} did not answer within {round(timeout_s, 2):g}s") from error
            except httpx.TransportError as error:
                raise LLMUnavailableError(f"transport error talking to {self.base_url}: {error}") from error

            if response.is_success:
                return response
            detail = _error_detail(response)
            response.close()
            if response.status_code in RETRY_STATUS and not last:
                self._sleep(attempt, response.headers.get("retry-after"), f"HTTP {response.status_code}", deadline)
                continue
            if response.status_code in (408, 504):
                raise LLMTimeoutError(f"{self.base_url} timed out (HTTP {response.status_code})")
            if response.status_code in (401, 403):
                raise LLMUnavailableError(f"{self.base_url} refused the credentials (HTTP {response.status_code})")
            if response.status_code in RETRY_STATUS:
                raise LLMUnavailableError(f"{self.base_url} answered HTTP {response.status_code}: {detail}")
            raise LLMError(f"{self.base_url} rejected the request (HTTP {response.status_code}): {detail}")
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, retry_after: str | None, reason: str, deadline: _Deadline | None) -> None:
        delay = self._backoff_s * (2**attempt) * (1 + random.random() * 0.25)  # jitter: spread herds
        if retry_after:
            with contextlib.suppress(ValueError):  # HTTP-date form: keep the computed backoff
                delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_S))
        if deadline is not None and delay >= deadline.left():
            raise LLMTimeoutError(f"{self.base_url} did not answer within {deadline.budget_s:g}s ({reason})")
        logger.warning("%s from %s; retry %d/%d in %.2fs", reason, self.base_url, attempt + 1, self._max_retries, delay)
        time.sleep(delay)


def _error_detail(response: httpx.Response) -> str:
    """A short, log-safe description of an error body."""
    try:
        response.read()
    except httpx.HTTPError:
        return ""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message", error) if isinstance(error, dict) else error
    return str(message)[:300]


def parse_openai_logprobs(body: dict[str, Any]) -> dict[str, float]:
    """Token text -> log-probability for the first generated token: its top list and the token itself."""
    content = body["choices"][0]["logprobs"]["content"][0]
    table = {item["token"]: float(item["logprob"]) for item in content.get("top_logprobs") or []}
    table.setdefault(content["token"], float(content["logprob"]))
    return table
