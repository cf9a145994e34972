"""``POST /rag``: answer a question from the indexed writing, as JSON or as Server-Sent Events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from llm_twin.api.admission import CLIENT_GONE_STATUS, run_admitted
from llm_twin.api.deps import ServiceDep, SettingsDep
from llm_twin.api.errors import describe_error
from llm_twin.api.schemas import ErrorResponse, RAGRequest, RAGResponse, event_data
from llm_twin.api.service import ThreadedStream, open_stream
from llm_twin.domain.deadline import Deadline
from llm_twin.domain.limits import check_request
from llm_twin.observability.context import current_request, note_error
from llm_twin.rag.answer import RAGEvent

logger = logging.getLogger(__name__)

router = APIRouter(tags=["rag"])

#: SSE comment sent while nothing else is (queued behind other generations): keeps proxies and
#: clients from timing the connection out.
KEEPALIVE_S = 15.0

STREAM_DESCRIPTION = """
Answer ``query`` from the indexed writing, citing sources as ``[n]`` (``sources[n-1]``).

**Streaming.** With ``"stream": true`` (or, when ``stream`` is omitted, ``Accept: text/event-stream``)
the response is Server-Sent Events, each ``data`` one JSON object:

- ``event: status`` — only with ``"progress": true``: before each stage, ``stage`` (``rewrite``, ``author``,
  ``expand``, ``search``, ``rerank``, ``read``, ``write``), ``message`` (e.g. "Reading 5 sources"),
  ``elapsed_ms`` since the request started, ``count``; the stream then starts at the first one, so a
  retrieval error (e.g. an unknown author) arrives as ``event: error``;
- ``event: sources`` — once retrieval is done: ``sources``, ``author``, ``expanded_queries``, ``model``,
  ``rerank``, retrieval ``timings_ms``, ``rewritten_query`` (with ``history``);
- ``event: token`` — ``{"text": ...}`` per generated piece;
- ``event: done`` — ``answer`` (full text), ``timings_ms`` (incl. ``ttft`` and ``total``), ``model``,
  ``rerank``, ``usage``, ``trace_id`` (for ``POST /feedback``);
- ``event: error`` — ``{"error": {"code", "message"}}`` if the LLM fails after the stream started.

**Conversations.** ``history`` holds the earlier user/assistant turns; ``query`` is then a follow-up,
searched and answered as a standalone question (``rewritten_query``, written by the helper LLM), and
the author named in the latest user turn that named one carries over when the follow-up names nobody.

Errors before the stream starts (invalid input, store unavailable) are ordinary JSON error responses.
"""


#: One Server-Sent Event, as OpenAPI before 3.2 documents a stream (``schema`` describes each event).
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["sources", "token", "done", "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "JSON: SourcesEventData, TokenEventData, DoneEventData or ErrorResponse, by event.",
        },
    },
}


def sse(event: str, data: BaseModel) -> bytes:
    return f"event: {event}\ndata: {data.model_dump_json()}\n\n".encode()


def encode_event(event: RAGEvent, trace_id: str | None = None) -> bytes:
    data = event_data(event, trace_id)  # first: anything that is not an event is a TypeError
    return sse(event.kind, data)


def _trace_id() -> str | None:
    context = current_request()
    return context.trace_id if context else None


def wants_stream(body: RAGRequest, request: Request) -> bool:
    if body.stream is not None:
        return body.stream
    return "text/event-stream" in request.headers.get("accept", "").lower()


@router.post(
    "/rag",
    response_model=RAGResponse,
    summary="Answer a question, grounded in the indexed writing",
    description=STREAM_DESCRIPTION,
    responses={
        200: {"content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}},
        400: {"model": ErrorResponse, "description": "The body could not be read as JSON (e.g. not UTF-8)"},
        401: {"model": ErrorResponse, "description": "API keys are configured and none (or a wrong one) was sent"},
        413: {"model": ErrorResponse, "description": "The request body is larger than LLM_TWIN_MAX_BODY_BYTES"},
        422: {"model": ErrorResponse, "description": "Invalid input; `field` names it"},
        429: {
            "model": ErrorResponse,
            "description": "The wait queue is full (`overloaded`) or this key's rate is used up (`rate_limited`); "
            "`Retry-After` says when to come back",
        },
        502: {"model": ErrorResponse, "description": "The LLM failed"},
        503: {"model": ErrorResponse, "description": "Vector store or LLM unavailable"},
        504: {"model": ErrorResponse, "description": "The LLM or the request deadline ran out of time"},
    },
)
async def rag(body: RAGRequest, request: Request, service: ServiceDep, settings: SettingsDep) -> RAGResponse | Response:
    # The pipeline checks again; checking first gives invalid input its 422 even while the store is down
    # (which is also why the pipeline is not a dependency).
    history = body.turns
    query = check_request(
        body.query,
        k=body.k,
        expand_to_n=body.expand_to_n,
        author=body.author,
        history=history,
        expand_max=settings.expand_max,
    )
    deadline = Deadline.after(settings.request_deadline_s)  # from arrival: queueing counts
    pipeline = await service.require_pipeline()
    arguments: dict[str, Any] = {
        "query": query,
        "k": body.k,
        "expand_to_n": body.expand_to_n,
        "author": body.author,
        "history": history,
        "deadline": deadline,
    }
    streamed = wants_stream(body, request)
    logger.info(
        "rag request",
        extra={
            "question": query if settings.log_questions else None,  # only when LLM_TWIN_LOG_QUESTIONS allows it
            "question_chars": len(query),
            "history_turns": len(history) if history else 0,
            "k": body.k,
            "author": body.author,
            "stream": streamed,
        },
    )
    trace_id = _trace_id()

    if not streamed:
        # Queued behind LLM_TWIN_API_WORKERS (429 when LLM_TWIN_MAX_QUEUE wait already); a client
        # that leaves while queued never costs a prompt evaluation.
        answer = await run_admitted(
            partial(pipeline.run, **arguments), service.limiter, request, service.settings.worker_niceness
        )
        if answer is None:
            return Response(status_code=CLIENT_GONE_STATUS)
        return RAGResponse.from_answer(answer, trace_id)

    # The stream's producer holds one of the same worker slots as a blocking call, for its whole run;
    # waiting for its first event keeps retrieval errors on their own status codes.
    opened = await open_stream(
        partial(pipeline.stream, **arguments, progress=body.progress),
        service.limiter,
        request,
        service.settings.worker_niceness,
    )
    if opened is None:  # the client left while queued: the stream never started
        return Response(status_code=CLIENT_GONE_STATUS)
    stream, first = opened
    return StreamingResponse(
        _event_stream(stream, first, trace_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(
    stream: ThreadedStream[RAGEvent], first: RAGEvent | None, trace_id: str | None = None
) -> AsyncIterator[bytes]:
    """SSE bytes from the producer thread; closing this generator (client gone) stops generation."""
    try:
        if first is not None:
            yield encode_event(first, trace_id)
        while True:
            try:
                message = await stream.get(timeout=KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            match message:
                case ("item", event):
                    yield encode_event(event, trace_id)
                case ("error", error):
                    status, detail = describe_error(error)
                    logger.warning(
                        "stream failed after it started (%d %s): %s",
                        status,
                        detail.code,
                        error,
                        exc_info=error if status == 500 else None,
                    )
                    note_error(detail.code)
                    yield sse("error", ErrorResponse(error=detail))
                    return
                case _:
                    return
    finally:
        stream.stop()
