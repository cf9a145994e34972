"""What a /rag call produces: one answer type, and the events a streamed answer arrives in.

``AnswerContext`` is everything known before generation: the sources, the author, how the question
was searched, the timings so far. A ``RAGAnswer`` is that context plus the generated text and its
usage. A stream sends the context first (``SourcesEvent``), then ``TokenEvent`` pieces, then the
whole answer (``DoneEvent``); the API's JSON models are built from these two shapes. A stream asked
for progress also sends a ``StatusEvent`` before each stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from llm_twin.domain.authors import Author
    from llm_twin.domain.documents import EmbeddedChunk


@dataclass(frozen=True, kw_only=True)
class AnswerContext:
    """What an answer is grounded on, known once retrieval and the prompt are done."""

    query: str
    #: The chunks that made it into the prompt, in citation order: sources[0] is [1].
    sources: list[EmbeddedChunk]
    author: Author | None
    expanded_queries: list[str]
    rerank: str
    model: str
    #: Retrieval stages as reported by retrieval, plus ``retrieval`` and ``prompt``. A ``RAGAnswer``
    #: adds ``generation``, ``total``, ``llm_queue`` (local model, blocking call) and, when
    #: streaming, ``ttft`` (pipeline start to first token).
    timings_ms: dict[str, float]
    #: For people: what went wrong or was left out, in words.
    warnings: list[str] = field(default_factory=list)
    #: For programs: a code per stage that degraded (``llm_twin.retrieval.types.Degradation``), e.g.
    #: ``expansion_failed``, ``rerank_failed``, ``collection_unavailable:embedded_posts``.
    degraded: list[str] = field(default_factory=list)
    hypothetical_document: str | None = None
    #: A follow-up's standalone question (what was searched and answered); None on a first turn.
    rewritten_query: str | None = None


@dataclass(frozen=True, kw_only=True)
class RAGAnswer(AnswerContext):
    """The context plus what generation produced."""

    answer: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    @classmethod
    def from_context(
        cls,
        context: AnswerContext,
        *,
        answer: str,
        timings_ms: dict[str, float],
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        finish_reason: str | None = None,
    ) -> RAGAnswer:
        shared = {f.name: getattr(context, f.name) for f in fields(AnswerContext)}
        shared["timings_ms"] = timings_ms  # the complete timings, not the snapshot taken before generation
        return cls(
            **shared,
            answer=answer,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
        )


@dataclass(frozen=True, kw_only=True)
class SourcesEvent(AnswerContext):
    """The answer's context, sent as soon as retrieval is done, before any token."""

    kind: ClassVar[Literal["sources"]] = "sources"


@dataclass(frozen=True)
class TokenEvent:
    kind: ClassVar[Literal["token"]] = "token"
    text: str


@dataclass(frozen=True)
class DoneEvent:
    kind: ClassVar[Literal["done"]] = "done"
    answer: RAGAnswer


@dataclass(frozen=True, kw_only=True)
class StatusEvent:
    """A stage starts (only when the stream was asked for progress): ``stage`` is a stable code
    (rewrite, author, expand, search, rerank, read, write), ``message`` says it for a person,
    ``elapsed_ms`` is the time since the request started, ``count`` the number in the message."""

    kind: ClassVar[Literal["status"]] = "status"
    stage: str
    message: str
    elapsed_ms: float
    count: int | None = None


RAGEvent = SourcesEvent | TokenEvent | DoneEvent | StatusEvent
