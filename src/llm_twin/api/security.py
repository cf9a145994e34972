"""Access control and request limits as pure-ASGI middleware, so every route is covered, including
routers and sub-apps mounted later (the OpenAI-compatible ``/v1`` API, ``/mcp``).

- ``ApiKeyMiddleware``: with ``LLM_TWIN_API_KEYS`` set, every path outside ``OPEN_PATHS`` needs
  ``Authorization: Bearer <key>`` (exactly what the OpenAI SDK sends); keys are compared in constant
  time against every configured key and never logged. It also applies the per-key token bucket
  (``LLM_TWIN_RATE_LIMIT_PER_MINUTE``).
- ``BodySizeLimitMiddleware``: 413 for a body over ``LLM_TWIN_MAX_BODY_BYTES``, from its
  ``Content-Length`` before anything is read, or while it arrives for a body without one.

Their refusals use the service's error shape, or OpenAI's under ``/v1`` (``refusal_body``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_twin.api.errors import is_openai_path, openai_error
from llm_twin.api.schemas import ErrorDetail, ErrorResponse

logger = logging.getLogger(__name__)

#: Paths that answer without a key: the page, probes, metrics (unless LLM_TWIN_METRICS_REQUIRE_KEY)
#: and the API docs. A prefix matches itself and what lies below it ("/static/app.js"), nothing else.
OPEN_PREFIXES = ("/static", "/health", "/ready", "/docs", "/redoc")
OPEN_EXACT = ("/", "/openapi.json", "/favicon.ico")
METRICS_PATH = "/metrics"
#: Buckets kept at most (least recently used dropped): keys are few, client addresses may not be.
MAX_BUCKETS = 10_000


def is_open_path(path: str, *, metrics_open: bool = True) -> bool:
    if path in OPEN_EXACT:
        return True
    prefixes = (*OPEN_PREFIXES, METRICS_PATH) if metrics_open else OPEN_PREFIXES
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


def refusal_body(path: str, status: int, code: str, message: str) -> dict[str, object]:
    """The error body for ``path``: OpenAI's shape under ``/v1``, the service's elsewhere (``api/errors.py``)."""
    detail = ErrorDetail(code=code, message=message)
    if is_openai_path(path):
        return openai_error(status, detail)[1].model_dump()
    return ErrorResponse(error=detail).model_dump(exclude_none=True)


async def send_refusal(
    scope: Scope, send: Send, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> None:
    """A complete JSON error response, sent straight to the ASGI server."""
    body = json.dumps(refusal_body(scope.get("path", ""), status, code, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _digest(key: str) -> bytes:
    # Comparing digests keeps the comparison constant-time in the keys' lengths too.
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyRing:
    """The configured keys, as digests; ``match`` compares against every one of them, always."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, presented: str) -> int | None:
        """Index of the matching key (for the rate limiter's bucket), or None."""
        candidate = _digest(presented)
        found: int | None = None
        for index, digest in enumerate(self._digests):  # no early exit: the time says nothing
            if hmac.compare_digest(candidate, digest) and found is None:
                found = index
        return found


class TokenBucketLimiter:
    """Token buckets per client: ``per_minute`` requests a minute, bursts of up to a minute's worth."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        return wait


class ApiKeyMiddleware:
    """401 without a valid key on protected paths; 429 past the per-key rate. Pure ASGI."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Iterable[str] = (),
        *,
        metrics_require_key: bool = False,
        rate_limit_per_minute: float = 0.0,
    ) -> None:
        self.app = app
        self.keys = KeyRing(keys)
        self.metrics_open = not metrics_require_key
        self.limiter = TokenBucketLimiter(rate_limit_per_minute) if rate_limit_per_minute > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_open_path(
            scope.get("path", ""), metrics_open=self.metrics_open
        ):
            await self.app(scope, receive, send)
            return
        client = self._client(scope)
        if self.keys:
            index = self._key_index(scope)
            if index is None:
                await self._refuse_key(scope, send)
                return
            client = f"key:{index}"
        if self.limiter is not None:
            wait = self.limiter.take(client)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await send_refusal(
                    scope,
                    send,
                    429,
                    "rate_limit_exceeded" if is_openai_path(scope.get("path", "")) else "rate_limited",
                    "too many requests for this API key; retry after the number of seconds in Retry-After",
                    {"Retry-After": str(retry)},
                )
                return
        await self.app(scope, receive, send)

    def _key_index(self, scope: Scope) -> int | None:
        header = _header(scope, b"authorization")
        if header is None:
            return None
        scheme, _, presented = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        return self.keys.match(presented.strip())

    @staticmethod
    def _client(scope: Scope) -> str:
        client = scope.get("client")
        return f"addr:{client[0]}" if client else "addr:unknown"

    @staticmethod
    async def _refuse_key(scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":  # no HTTP response to send before the handshake: close it
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_refusal(
            scope,
            send,
            401,
            "invalid_api_key" if is_openai_path(scope.get("path", "")) else "unauthorized",
            "a valid API key is required: send it as `Authorization: Bearer <key>`",
            {"WWW-Authenticate": "Bearer"},
        )


class BodySizeLimitMiddleware:
    """413 for bodies over ``max_bytes``: by ``Content-Length`` before reading, or by counting as they arrive.

    When a body without a (truthful) length crosses the limit, the 413 is sent at once and the app
    sees the client as gone (``http.disconnect``): whatever it answers afterwards is dropped.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        #: Paths (and what lies below them) that carry more than a question, e.g. ``/documents``.
        self.path_limits = dict(path_limits or {})

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.path_limits.items():
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit)
            return
        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await self._refuse(scope, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # the 413 went out already
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        await send_refusal(scope, send, 413, "payload_too_large", f"the request body is larger than {limit} bytes")
