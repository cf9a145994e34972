"""Request and response models of the HTTP API (also used by ``llm-twin ask --json``)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from llm_twin.domain.authors import Author
from llm_twin.domain.conversation import Role, Turn
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.domain.limits import (
    MAX_AUTHOR_CHARS,
    MAX_FEEDBACK_COMMENT_CHARS,
    MAX_HISTORY_CHARS,
    MAX_HISTORY_TURNS,
    MAX_K,
    MAX_QUERY_CHARS,
    MIN_EXPAND_TO_N,
    MIN_K,
    TRACE_ID_PATTERN,
)
from llm_twin.ingest.progress import ProgressSnapshot
from llm_twin.rag.answer import AnswerContext, DoneEvent, RAGAnswer, RAGEvent, SourcesEvent, StatusEvent, TokenEvent

if TYPE_CHECKING:
    from llm_twin.ingest.pipeline import IngestReport  # heavy (the embedder); only a parameter type

SNIPPET_CHARS = 240


class HistoryTurn(BaseModel):
    """One earlier turn of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str

    def to_turn(self) -> Turn:
        return Turn(role=self.role, content=self.content)


class RAGRequest(BaseModel):
    """The request as the schema declares it (types and bounds, for OpenAPI and clients); the rules
    themselves are ``llm_twin.domain.limits.check_request``, which the route applies."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "What did Guido van Rossum write about pattern matching?"}]},
    )

    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The question.")]
    k: Annotated[int | None, Field(ge=MIN_K, le=MAX_K, description="Sources to retrieve (default: settings).")] = None
    expand_to_n: Annotated[
        int | None,
        Field(
            ge=MIN_EXPAND_TO_N,
            description="Query variants incl. the original, at most LLM_TWIN_EXPAND_MAX; written only when the "
            "question's own search finds nothing close (LLM_TWIN_EXPAND_BELOW_COSINE, 0: always).",
        ),
    ] = None
    author: Annotated[
        str | None, Field(max_length=MAX_AUTHOR_CHARS, description="Only use this author's writing (name or alias).")
    ] = None
    stream: Annotated[
        StrictBool | None,
        Field(description="Server-Sent Events; when omitted, `Accept: text/event-stream` asks for a stream."),
    ] = None
    progress: Annotated[
        StrictBool,
        Field(
            description="With a stream: also send an `event: status` before each stage (stage, message, "
            "elapsed_ms). The stream (200) then starts at the first one, so an error found later in retrieval "
            "(e.g. an unknown `author`) arrives as `event: error` instead of an HTTP status."
        ),
    ] = False
    history: Annotated[
        list[HistoryTurn] | None,
        Field(
            max_length=MAX_HISTORY_TURNS,
            description="Earlier turns of the conversation, oldest first; `query` is then a follow-up, rewritten "
            "into a standalone question (`rewritten_query`), and the author named earlier carries over when it "
            f"names nobody. At most {MAX_HISTORY_TURNS} turns and {MAX_HISTORY_CHARS} characters.",
        ),
    ] = None

    @property
    def turns(self) -> list[Turn]:
        return [turn.to_turn() for turn in self.history or []]

    @field_validator("k", "expand_to_n", mode="before")
    @classmethod
    def _json_integer(cls, value: object) -> object:
        # Types as the schema declares them: `"k": "5"` or `true` is a client bug to report, not to guess
        # at (a JSON number with a zero fraction, 5.0, is an integer to JSON Schema, and stays accepted).
        if isinstance(value, (str, bool)):
            raise ValueError("Input should be a valid integer")
        return value

    @field_validator("author")
    @classmethod
    def _blank_author_is_none(cls, value: str | None) -> str | None:
        # A form's empty author field means "any author", not an invalid name.
        return value.strip() or None if value is not None else None


class Source(BaseModel):
    """One chunk the answer was grounded on; ``sources[i]`` is cited as ``[i+1]``."""

    id: str
    collection: str
    content_type: str
    title: str | None
    author_full_name: str = Field(description="All authors of the source document, comma-separated.")
    authors: list[str]
    link: str | None
    date: str | None = Field(default=None, description="The document's date, when the corpus has one.")
    document_id: str | None = Field(default=None, description="The document the chunk is part of.")
    score: float
    snippet: str

    @classmethod
    def from_chunk(cls, chunk: EmbeddedChunk) -> Source:
        text = " ".join(chunk.content.split())
        snippet = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"
        return cls(
            id=chunk.id,
            collection=chunk.collection,
            content_type=chunk.content_type,
            title=chunk.title or chunk.name,
            author_full_name=chunk.author_full_name,
            authors=list(chunk.authors) or [chunk.author_full_name],
            link=chunk.link,
            date=chunk.date,
            document_id=chunk.document_id,
            score=round(float(chunk.score), 6),
            snippet=snippet,
        )


class AuthorRef(BaseModel):
    id: str
    full_name: str

    @classmethod
    def from_author(cls, author: Author | None) -> AuthorRef | None:
        return cls(id=author.id, full_name=author.full_name) if author else None


class Usage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @classmethod
    def from_answer(cls, answer: RAGAnswer) -> Usage:
        return cls(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)


# --- the answer: the sources event (its context) + the done event (what generation added) ----------
# Three wire shapes of one ``RAGAnswer``. Each part is converted in one place (``from_context``,
# ``from_answer``); the JSON response is the two parts together.


class SourcesEventData(BaseModel):
    sources: list[Source]
    author: AuthorRef | None
    expanded_queries: list[str]
    model: str
    rerank: str
    timings_ms: dict[str, float]
    warnings: list[str] = Field(default_factory=list)
    degraded: list[str] = Field(
        default_factory=list,
        description="Machine-readable codes of the stages that degraded (empty: none), e.g. expansion_failed, "
        "self_query_helper_failed, hyde_failed, rerank_failed, collection_unavailable:<name>.",
    )
    hypothetical_document: str | None = None
    rewritten_query: str | None = None

    @classmethod
    def from_context(cls, context: AnswerContext) -> SourcesEventData:
        return cls(
            sources=[Source.from_chunk(c) for c in context.sources],
            author=AuthorRef.from_author(context.author),
            expanded_queries=context.expanded_queries,
            model=context.model,
            rerank=context.rerank,
            timings_ms=context.timings_ms,
            warnings=context.warnings,
            degraded=context.degraded,
            hypothetical_document=context.hypothetical_document,
            rewritten_query=context.rewritten_query,
        )


class TokenEventData(BaseModel):
    text: str


TRACE_ID_DESCRIPTION = "The request's trace id (also the X-Trace-Id header): find its trace, or send POST /feedback."


class DoneEventData(BaseModel):
    answer: str
    timings_ms: dict[str, float]
    model: str
    rerank: str
    usage: Usage
    trace_id: str | None = Field(default=None, description=TRACE_ID_DESCRIPTION)
    degraded: list[str] = Field(
        default_factory=list,
        description="Machine-readable codes of the stages that degraded (empty: none), e.g. expansion_failed, "
        "self_query_helper_failed, hyde_failed, rerank_failed, collection_unavailable:<name>.",
    )

    @classmethod
    def from_answer(cls, answer: RAGAnswer, trace_id: str | None = None) -> DoneEventData:
        return cls(
            answer=answer.answer,
            timings_ms=answer.timings_ms,
            model=answer.model,
            rerank=answer.rerank,
            usage=Usage.from_answer(answer),
            trace_id=trace_id,
            degraded=answer.degraded,
        )


class RAGResponse(BaseModel):
    # The JSON answer: the fields of the sources event and of the done event, in one object.
    answer: str
    sources: list[Source]
    author: AuthorRef | None = Field(description="The author the answer was restricted to, if any.")
    expanded_queries: list[str]
    timings_ms: dict[str, float]
    model: str
    rerank: str = Field(description='Reranker backend used, e.g. "cross-encoder", "llm" or "none".')
    usage: Usage
    warnings: list[str] = Field(default_factory=list)
    degraded: list[str] = Field(
        default_factory=list,
        description="Machine-readable codes of the stages that degraded (empty: none), e.g. expansion_failed, "
        "self_query_helper_failed, hyde_failed, rerank_failed, collection_unavailable:<name>.",
    )
    hypothetical_document: str | None = Field(
        default=None, description="The HyDE passage searched with (LLM_TWIN_HYDE), if any."
    )
    rewritten_query: str | None = Field(
        default=None,
        description="With `history`: the standalone question the follow-up was searched and answered as.",
    )
    trace_id: str | None = Field(default=None, description=TRACE_ID_DESCRIPTION)

    @classmethod
    def from_events(cls, sources: SourcesEventData, done: DoneEventData) -> RAGResponse:
        """Both parts together; the done event's timings (complete) replace the sources' snapshot."""
        return cls(**(dict(sources) | dict(done)))

    @classmethod
    def from_answer(cls, answer: RAGAnswer, trace_id: str | None = None) -> RAGResponse:
        return cls.from_events(SourcesEventData.from_context(answer), DoneEventData.from_answer(answer, trace_id))


class StatusEventData(BaseModel):
    stage: str = Field(description="rewrite, author, expand, search, rerank, read or write.")
    message: str
    elapsed_ms: float = Field(description="Since the request started.")
    count: int | None = None


EventData = SourcesEventData | TokenEventData | DoneEventData | StatusEventData


def event_data(event: RAGEvent, trace_id: str | None = None) -> EventData:
    """The wire payload of a pipeline event (SSE ``data``, ``llm-twin ask --stream --json``);
    ``trace_id`` goes into the done event."""
    if isinstance(event, SourcesEvent):
        return SourcesEventData.from_context(event)
    if isinstance(event, TokenEvent):
        return TokenEventData(text=event.text)
    if isinstance(event, DoneEvent):
        return DoneEventData.from_answer(event.answer, trace_id)
    if isinstance(event, StatusEvent):
        return StatusEventData(stage=event.stage, message=event.message, elapsed_ms=event.elapsed_ms, count=event.count)
    raise TypeError(f"unknown event {event!r}")


# --- feedback -------------------------------------------------------------------------------------


class FeedbackRequest(BaseModel):
    """A user's verdict on one answer, by the trace id the answer carried."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"trace_id": "0af7651916cd43dd8448eb211c80319c", "score": 1}]}
    )

    trace_id: Annotated[
        str, Field(pattern=TRACE_ID_PATTERN, description="32 lowercase hex digits: the answer's trace_id.")
    ]
    score: Annotated[
        float,
        Field(ge=-1.0, le=1.0, description="-1 (thumbs down) or 1 (thumbs up), or a grade from 0 (bad) to 1 (good)."),
    ]
    comment: Annotated[str | None, Field(max_length=MAX_FEEDBACK_COMMENT_CHARS, description="Why, optionally.")] = None

    @field_validator("score")
    @classmethod
    def _thumbs_or_grade(cls, value: float) -> float:
        if value < 0 and value != -1:
            raise ValueError("must be -1, 1, or between 0 and 1")
        return value

    @field_validator("comment")
    @classmethod
    def _blank_comment_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class FeedbackResponse(BaseModel):
    status: Literal["recorded"] = "recorded"
    trace_id: str


# --- authors ---------------------------------------------------------------------------------------


class AuthorAlias(BaseModel):
    """Another name the person writes under, and what links it to them."""

    name: str
    id: str
    linked_by: str = Field(description='"same name", "name rule" or "aliases file".')


class AuthorSummary(BaseModel):
    """One person: the shown name, the other names, documents per content type (all names together)."""

    id: str = Field(description="The shown author's id; `author` in /rag accepts the name or any other name.")
    name: str
    names: list[AuthorAlias]
    documents: dict[str, int] = Field(description="Documents per content type, e.g. article, post, repository.")
    total_documents: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AuthorSummary:
        return cls(
            id=row["id"],
            name=row["name"],
            names=[AuthorAlias(**name) for name in row["names"]],
            documents=row["documents"],
            total_documents=sum(row["documents"].values()),
        )


class AuthorsPage(BaseModel):
    """People in the corpus, most documents first; ``total`` counts every match of ``q``."""

    total: int
    offset: int
    limit: int
    q: str | None
    authors: list[AuthorSummary]


# --- health, errors -------------------------------------------------------------------------------


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class IngestProgressResponse(BaseModel):
    """Progress of the background ingest: one object, also read by the page and /metrics."""

    state: Literal["idle", "planning", "running", "done", "failed"] = Field(
        description="planning: reading and chunking; running: writing."
    )
    source: str | None = Field(description="What is being ingested.")
    documents_total: int
    documents_done: int = Field(description="Written, or skipped as unchanged.")
    documents_skipped: int
    chunks_total: int
    chunks_done: int
    elapsed_s: float
    chunks_per_s: float | None
    eta_s: float | None
    error: str | None = None

    @classmethod
    def from_snapshot(cls, snapshot: ProgressSnapshot) -> IngestProgressResponse:
        return cls(**dataclasses.asdict(snapshot))


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model: str
    embedding_model: str
    store: str = Field(description="Vector store backend.")
    rerank_backend: str = Field(description="As configured (LLM_TWIN_RERANK_BACKEND), e.g. auto.")
    rerank: str = Field(description="The reranker actually in use, e.g. cross-encoder or none.")
    tracing: str
    ingest: IngestProgressResponse | None = Field(
        default=None,
        description="The background ingest (`llm-twin serve --ingest/--watch`); questions are answered from "
        "what is indexed so far. Absent when the service runs none.",
    )


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_input, store_unavailable.")
    message: str = Field(description="Safe, human-readable explanation (never internals).")
    field: str | None = Field(default=None, description="The request field at fault, for invalid_input.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class DocumentsWrittenResponse(BaseModel):
    """What ``POST /documents`` did: new and changed documents written, unchanged ones skipped."""

    received: int = Field(description="Records in the request.")
    written: int = Field(description="New or changed documents (a changed one replaces all its old chunks).")
    skipped: int = Field(description="Unchanged documents (same text and embedding recipe as stored).")
    chunks_written: int
    counts: dict[str, int] = Field(description="What the store holds now: documents per type, authors, chunks.")
    seconds: float

    @classmethod
    def from_report(cls, report: IngestReport, received: int) -> DocumentsWrittenResponse:
        return cls(
            received=received,
            written=report.documents_written,
            skipped=report.documents_skipped,
            chunks_written=report.chunks_written,
            counts=report.counts,
            seconds=round(report.seconds, 3),
        )


class DocumentDeletedResponse(BaseModel):
    id: str
    deleted: dict[str, int] = Field(description="Chunks removed, per content type the id was stored under.")
