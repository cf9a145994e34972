"""The OpenAI-compatible API (``/v1``): talk to a twin from any OpenAI client.

``GET /v1/models`` lists the twins: ``twin`` (every author; self-query finds who a question is
about) and ``twin-<name>`` per person in the registry, which restricts the answer to their writing.
``POST /v1/chat/completions`` answers the last user message through the same pipeline, limits,
worker slots and tracing as ``/rag``; the earlier user and assistant messages are the conversation
(``history``). The answer text ends with its numbered references, so a client that shows only text
still shows the sources; ``sources`` (and ``author``, ``rewritten_query``, ``warnings``) carry them as data.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from llm_twin.api.admission import CLIENT_GONE_STATUS, run_admitted
from llm_twin.api.deps import ServiceDep, SettingsDep
from llm_twin.api.errors import describe_error, openai_error
from llm_twin.api.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageIn,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    Model,
    ModelList,
    OpenAIErrorResponse,
    Usage,
)
from llm_twin.api.schemas import AuthorRef, Source
from llm_twin.api.service import ServiceState, ThreadedStream, open_stream
from llm_twin.domain.conversation import SOURCES_HEADING, Turn
from llm_twin.domain.deadline import Deadline
from llm_twin.domain.limits import check_request
from llm_twin.domain.twins import TwinCatalog
from llm_twin.errors import InvalidInputError
from llm_twin.rag.answer import AnswerContext, DoneEvent, RAGAnswer, RAGEvent, SourcesEvent, TokenEvent
from llm_twin.rag.pipeline import RAGPipeline

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["openai"])

#: SSE comment sent while nothing else is (queued behind other generations); clients skip comments.
KEEPALIVE_S = 15.0

#: One Server-Sent Event of a streamed completion (OpenAPI before 3.2: ``schema`` describes each event).
CHUNK_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "description": "A ChatCompletionChunk as JSON; the last event is [DONE]."}
    },
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OpenAIErrorResponse, "description": "Invalid input; `param` names it"},
    404: {"model": OpenAIErrorResponse, "description": "Unknown model (`code`: model_not_found)"},
    502: {"model": OpenAIErrorResponse, "description": "The LLM failed"},
    401: {"model": OpenAIErrorResponse, "description": "API keys are configured and none (or a wrong one) was sent"},
    413: {"model": OpenAIErrorResponse, "description": "The request body is larger than LLM_TWIN_MAX_BODY_BYTES"},
    429: {
        "model": OpenAIErrorResponse,
        "description": "The wait queue is full or the key's rate is used up; see Retry-After",
    },
    503: {"model": OpenAIErrorResponse, "description": "Vector store or LLM unavailable"},
    504: {"model": OpenAIErrorResponse, "description": "The LLM or the request deadline ran out of time"},
}


# --- models -------------------------------------------------------------------------------------


def _catalog(pipeline: RAGPipeline) -> TwinCatalog:
    return pipeline.retrieval.twins()


def _created(service: ServiceState) -> int:
    """When the twins last changed: the registry's modification time (ingest writes it)."""
    try:
        return int(service.settings.registry_path.stat().st_mtime)
    except OSError:
        return 0


@router.get("/models", response_model=ModelList, summary="The twins, as models", responses=ERRORS)
async def list_models(service: ServiceDep) -> ModelList:
    catalog = _catalog(await service.require_pipeline())
    created = _created(service)
    return ModelList(
        data=[Model(id=t.model_id, created=created, author=AuthorRef.from_author(t.author)) for t in catalog]
    )


@router.get("/models/{model}", response_model=Model, summary="One twin", responses=ERRORS)
async def get_model(model: str, service: ServiceDep) -> Model:
    twin = _catalog(await service.require_pipeline()).get(model)
    return Model(id=twin.model_id, created=_created(service), author=AuthorRef.from_author(twin.author))


# --- chat completions ---------------------------------------------------------------------------


def _text(message: ChatMessageIn, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise InvalidInputError(f"messages[{index}].content", f"only text content is supported, not {part.type!r}")
        texts.append(part.text)
    return "\n".join(texts)


def to_conversation(messages: Sequence[ChatMessageIn]) -> tuple[str, list[Turn]]:
    """The question (the last message, from the user) and the earlier user/assistant turns."""
    last = len(messages) - 1
    if messages[last].role != "user" or not _text(messages[last], last).strip():
        raise InvalidInputError("messages", "the last message must be a user message with the question")
    history: list[Turn] = []
    for i, message in enumerate(messages[:last]):
        text = _text(message, i)
        if message.role in ("user", "assistant") and text.strip():  # empty turns (tool calls) say nothing
            history.append(Turn(role=message.role, content=text))
    return _text(messages[last], last), history


def references(sources: Sequence[Source]) -> str:
    """The numbered references appended to the answer text ("" without sources).

    Each source keeps its number (the answer cites ``[n]``), but the chunks of one document share a
    line: "[1][2] Style Guide for Python Code — https://peps.python.org/pep-0008/".
    """
    if not sources:
        return ""
    numbers: dict[tuple[str, str | None], list[int]] = {}
    for n, source in enumerate(sources, 1):
        numbers.setdefault((source.title or source.id, source.link), []).append(n)
    lines = []
    for (title, link), ns in numbers.items():
        cited = "".join(f"[{n}]" for n in ns)
        lines.append(f"{cited} {title} — {link}" if link else f"{cited} {title}")
    return f"\n\n{SOURCES_HEADING}\n" + "\n".join(lines)


def finish_reason(answer: RAGAnswer) -> FinishReason:
    return "length" if answer.finish_reason == "length" else "stop"


def usage(answer: RAGAnswer) -> Usage:
    prompt, completion = answer.prompt_tokens or 0, answer.completion_tokens or 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _extension(context: AnswerContext) -> dict[str, Any]:
    return {
        "sources": [Source.from_chunk(chunk) for chunk in context.sources],
        "author": AuthorRef.from_author(context.author),
        "rewritten_query": context.rewritten_query,
        "warnings": list(context.warnings),
        "degraded": list(context.degraded),
    }


def _check(body: ChatCompletionRequest, expand_max: int) -> tuple[str, list[Turn]]:
    """The question and history, checked by the same rules as ``/rag`` (reported on ``messages``)."""
    question, history = to_conversation(body.messages)
    try:
        question = check_request(question, history=history, expand_max=expand_max)
    except InvalidInputError as error:
        what = "the earlier messages" if error.field == "history" else "the last user message"
        raise InvalidInputError("messages", f"{what}: {error.message}") from None
    return question, history


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="Talk to a twin (OpenAI chat completions)",
    responses={200: {"content": {"text/event-stream": {"schema": CHUNK_EVENT_SCHEMA}}}, **ERRORS},
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, service: ServiceDep, settings: SettingsDep
) -> ChatCompletion | Response:
    question, history = _check(body, settings.expand_max)
    deadline = Deadline.after(settings.request_deadline_s)  # from arrival: queueing counts
    pipeline = await service.require_pipeline()
    twin = _catalog(pipeline).get(body.model)
    params = pipeline.generation_params(
        max_new_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop,
    )
    arguments: dict[str, Any] = {
        "query": question,
        "author": twin.author.id if twin.author else None,
        "history": history,
        "params": params,
        "deadline": deadline,
    }
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    if not body.stream:
        # 429 beyond LLM_TWIN_MAX_QUEUE waiting; a client that leaves while queued costs no prompt evaluation.
        answer = await run_admitted(
            partial(pipeline.run, **arguments), service.limiter, request, service.settings.worker_niceness
        )
        if answer is None:
            return Response(status_code=CLIENT_GONE_STATUS)
        sources = [Source.from_chunk(chunk) for chunk in answer.sources]
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=twin.model_id,
            choices=[
                Choice(
                    message=AssistantMessage(content=answer.answer + references(sources)),
                    finish_reason=finish_reason(answer),
                )
            ],
            usage=usage(answer),
            **_extension(answer),
        )

    # The producer holds one of /rag's worker slots for its whole run; the sources event comes
    # before any token, so errors until then keep their HTTP status.
    opened = await open_stream(
        partial(pipeline.stream, **arguments), service.limiter, request, service.settings.worker_niceness
    )
    if opened is None:  # the client left while queued: the stream never started
        return Response(status_code=CLIENT_GONE_STATUS)
    stream, first = opened
    if not isinstance(first, SourcesEvent):  # pragma: no cover - without progress, sources come first
        stream.stop()
        raise RuntimeError("RAG stream did not start with its sources event")
    chunks = _ChunkWriter(completion_id, created, twin.model_id)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _chunk_stream(stream, first, chunks, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _ChunkWriter:
    """``data:`` lines of one completion's chunks (same id, time and model on each)."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self.base = {"id": completion_id, "created": created, "model": model}

    def delta(self, delta: Delta, finish: FinishReason | None = None, **extension: Any) -> bytes:
        chunk = ChatCompletionChunk(**self.base, choices=[ChunkChoice(delta=delta, finish_reason=finish)], **extension)
        return data(chunk)

    def usage(self, answer: RAGAnswer) -> bytes:
        return data(ChatCompletionChunk(**self.base, choices=[], usage=usage(answer)))


def data(payload: BaseModel) -> bytes:
    return f"data: {payload.model_dump_json(exclude_none=True)}\n\n".encode()


async def _chunk_stream(
    stream: ThreadedStream[RAGEvent], first: SourcesEvent, chunks: _ChunkWriter, include_usage: bool
) -> AsyncIterator[bytes]:
    """Chunks from the producer thread; closing this generator (client gone) stops generation."""
    sources = [Source.from_chunk(chunk) for chunk in first.sources]
    try:
        yield chunks.delta(Delta(role="assistant", content=""))
        while True:
            try:
                message = await stream.get(timeout=KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            match message:
                case ("item", TokenEvent(text=text)):
                    if text:
                        yield chunks.delta(Delta(content=text))
                case ("item", DoneEvent(answer=answer)):
                    tail = references(sources)
                    if tail:
                        yield chunks.delta(Delta(content=tail))
                    yield chunks.delta(Delta(), finish_reason(answer), **_extension(answer))
                    if include_usage:
                        yield chunks.usage(answer)
                    yield b"data: [DONE]\n\n"
                    return
                case ("error", error):
                    status, detail = describe_error(error)
                    logger.warning(
                        "stream failed after it started (%d %s): %s",
                        status,
                        detail.code,
                        error,
                        exc_info=error if status == 500 else None,
                    )
                    yield data(openai_error(status, detail)[1])
                    return
                case _:
                    return
    finally:
        stream.stop()
