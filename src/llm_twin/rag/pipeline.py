"""Retrieval-augmented generation: retrieve, build the grounded prompt, generate (or stream).

``RAGPipeline`` is blocking and thread-safe (it holds no per-request state; the local model
serialises itself with a fair queue), so the API runs one call per worker thread.

``stream()`` yields typed events, always in this order: one ``SourcesEvent`` (once retrieval is
done), ``TokenEvent`` pieces, one ``DoneEvent`` carrying the full ``RAGAnswer`` with timings and
the time to first token. Closing the generator early stops generation and frees the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from llm_twin.domain.limits import check_request
from llm_twin.errors import InvalidInputError
from llm_twin.llm.base import GenerationParams, LLMClient
from llm_twin.rag.prompts import GroundedPrompt, PromptBudgetError, build_prompt_for_client
from llm_twin.observability import activate, record_error, set_attributes, start_span, trace_span

if TYPE_CHECKING:
    from llm_twin.domain.authors import Author
    from llm_twin.domain.documents import EmbeddedChunk
    from llm_twin.retrieval.types import RetrievalResult
    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)

#: Answer given without calling the LLM when retrieval finds nothing: nothing to ground on.
NO_SOURCES_ANSWER = "I could not find anything in the indexed writing{by} that answers this question."


class Retriever(Protocol):
    """What the RAG pipeline needs from retrieval (``llm_twin.retrieval.pipeline.RetrievalPipeline``)."""

    def warm_up(self) -> None: ...

    def run(
        self, query: str, k: int | None = None, expand_to_n: int | None = None, author: str | None = None
    ) -> RetrievalResult: ...

    def close(self) -> None: ...


@dataclass
class RAGAnswer:
    query: str
    answer: str
    #: The chunks that made it into the prompt, in citation order: sources[0] is [1].
    sources: list[EmbeddedChunk]
    author: Author | None
    expanded_queries: list[str]
    rerank: str
    model: str
    #: Retrieval stages as reported by retrieval, plus ``retrieval``, ``prompt``, ``generation``,
    #: ``total`` and, when streaming, ``ttft`` (pipeline start to first token).
    timings_ms: dict[str, float]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    hypothetical_document: str | None = None


@dataclass(frozen=True)
class SourcesEvent:
    kind: ClassVar[Literal["sources"]] = "sources"
    sources: list[EmbeddedChunk]
    author: Author | None
    expanded_queries: list[str]
    rerank: str
    model: str
    timings_ms: dict[str, float]
    warnings: list[str]
    hypothetical_document: str | None = None


@dataclass(frozen=True)
class TokenEvent:
    kind: ClassVar[Literal["token"]] = "token"
    text: str


@dataclass(frozen=True)
class DoneEvent:
    kind: ClassVar[Literal["done"]] = "done"
    answer: RAGAnswer


RAGEvent = SourcesEvent | TokenEvent | DoneEvent


@dataclass
class PreparedRequest:
    """Everything before generation: retrieval outcome, the prompt, timings so far."""

    query: str
    started: float
    retrieval: RetrievalResult
    prompt: GroundedPrompt | None  # None when retrieval found nothing
    timings_ms: dict[str, float]

    @property
    def author(self) -> Author | None:
        return self.retrieval.author.author


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


class RAGPipeline:
    """``retrieval`` → grounded prompt → ``llm``; one instance per process, shared by all requests."""

    def __init__(self, retrieval: Retriever, llm: LLMClient, settings: Settings) -> None:
        self.retrieval = retrieval
        self.llm = llm
        self.settings = settings
        self._warm = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RAGPipeline:
        """Build retrieval (with the helper LLM) and the generation LLM; call ``warm_up()`` next."""
        from llm_twin.llm.factory import build_helper_llm, build_llm
        from llm_twin.retrieval.pipeline import RetrievalPipeline

        llm = build_llm(settings)
        retrieval = RetrievalPipeline(settings, helper_llm=build_helper_llm(settings))
        return cls(retrieval, llm, settings)

    # --- lifecycle ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the LLM and open retrieval (store, embedder, reranker); idempotent."""
        if self._warm:
            return
        with trace_span("rag.warm_up", llm__model=self.llm.model_name):
            self.llm.warm_up()
            self.retrieval.warm_up()
        self._warm = True

    @property
    def ready(self) -> bool:
        return self._warm

    def close(self) -> None:
        self.retrieval.close()

    @property
    def params(self) -> GenerationParams:
        s = self.settings
        return GenerationParams(
            max_new_tokens=s.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            repetition_penalty=s.repetition_penalty,
        )

    # --- blocking --------------------------------------------------------------------------

    def run(
        self, query: str, k: int | None = None, expand_to_n: int | None = None, author: str | None = None
    ) -> RAGAnswer:
        """Answer ``query`` in one blocking call."""
        with trace_span("rag", query_chars=len(query), k=k, expand_to_n=expand_to_n, author=author, stream=False) as root:
            prepared = self.prepare(query, k, expand_to_n, author)
            params = self.params
            completion_tokens = prompt_tokens = finish_reason = None
            if prepared.prompt is None:
                text = self._no_sources_answer(prepared)
                generation_ms = 0.0
            else:
                with trace_span("rag.generate", **self._generation_attributes(prepared, params)) as span:
                    started = time.perf_counter()
                    completion = self.llm.complete(prepared.prompt.messages, params)
                    generation_ms = _ms(time.perf_counter() - started)
                    text = completion.text.strip()
                    prompt_tokens = completion.prompt_tokens or prepared.prompt.prompt_tokens
                    completion_tokens = completion.completion_tokens
                    finish_reason = completion.finish_reason
                    compute = completion.extra.get("generation_seconds")
                    if isinstance(compute, (int, float)):  # local model: the rest was the queue
                        prepared.timings_ms["llm_queue"] = round(max(0.0, generation_ms - compute * 1000.0), 2)
                    set_attributes(span, {
                        "gen_ai.usage.input_tokens": prompt_tokens,
                        "gen_ai.usage.output_tokens": completion_tokens,
                        "gen_ai.response.finish_reasons": [finish_reason] if finish_reason else None,
                        "duration_ms": generation_ms,
                    })
            answer = self._finish(prepared, text, generation_ms, prompt_tokens, completion_tokens, finish_reason)
            set_attributes(root, {"timings_ms." + key: value for key, value in answer.timings_ms.items()})
            return answer

    # --- streaming -----------------------------------------------------------------------------

    def stream(
        self, query: str, k: int | None = None, expand_to_n: int | None = None, author: str | None = None
    ) -> Iterator[RAGEvent]:
        """Sources, then tokens as they are generated, then done (see the module docstring).

        Errors before the sources event (invalid input, store unavailable) raise from the first
        ``next()``; LLM errors raise after the sources event. Spans are never left current across
        a ``yield``, so the consumer may iterate from any thread.
        """
        root = start_span("rag", query_chars=len(query), k=k, expand_to_n=expand_to_n, author=author, stream=True)
        try:
            with activate(root):
                prepared = self.prepare(query, k, expand_to_n, author)
            yield SourcesEvent(
                sources=list(prepared.prompt.used_chunks) if prepared.prompt else [],
                author=prepared.author,
                expanded_queries=list(prepared.retrieval.expanded_queries),
                rerank=prepared.retrieval.rerank,
                model=self.llm.model_name,
                timings_ms=dict(prepared.timings_ms),
                warnings=list(prepared.retrieval.warnings),
                hypothetical_document=prepared.retrieval.hypothetical_document,
            )
            params = self.params
            pieces: list[str] = []
            started = time.perf_counter()
            if prepared.prompt is None:
                text = self._no_sources_answer(prepared)
                prepared.timings_ms["ttft"] = _ms(time.perf_counter() - prepared.started)
                yield TokenEvent(text)
                generation_ms = 0.0
                completion_tokens = prompt_tokens = None
            else:
                span = start_span("rag.generate", parent=root, **self._generation_attributes(prepared, params))
                try:
                    with closing(self.llm.stream(prepared.prompt.messages, params)) as tokens:
                        for piece in tokens:
                            if not pieces:
                                prepared.timings_ms["ttft"] = _ms(time.perf_counter() - prepared.started)
                                set_attributes(span, {"ttft_ms": prepared.timings_ms["ttft"]})
                            pieces.append(piece)
                            yield TokenEvent(piece)
                    generation_ms = _ms(time.perf_counter() - started)
                    text = "".join(pieces).strip()
                    prompt_tokens = prepared.prompt.prompt_tokens
                    completion_tokens = self._count(text)
                    set_attributes(span, {
                        "gen_ai.usage.input_tokens": prompt_tokens,
                        "gen_ai.usage.output_tokens": completion_tokens,
                        "duration_ms": generation_ms,
                    })
                except BaseException as error:
                    record_error(span, error)
                    raise
                finally:
                    span.end()
            if "ttft" not in prepared.timings_ms:  # the model produced nothing at all
                prepared.timings_ms["ttft"] = _ms(time.perf_counter() - prepared.started)
            answer = self._finish(prepared, text, generation_ms, prompt_tokens, completion_tokens, None)
            set_attributes(root, {"timings_ms." + key: value for key, value in answer.timings_ms.items()})
            yield DoneEvent(answer)
        except BaseException as error:
            record_error(root, error)
            raise
        finally:
            root.end()

    # --- internals ----------------------------------------------------------------------------

    def prepare(
        self, query: str, k: int | None = None, expand_to_n: int | None = None, author: str | None = None
    ) -> PreparedRequest:
        """Retrieval and the grounded prompt, without generating (``prompt`` is None when nothing was found).

        Public for benchmarks and evaluation: replaying ``prompt.messages`` times the model alone.
        """
        started = time.perf_counter()
        # Retrieval checks too; checking here keeps a bad request from reaching any retriever.
        query = check_request(query, k=k, expand_to_n=expand_to_n, author=author, expand_max=self.settings.expand_max)
        with trace_span("rag.retrieve", embedding__model=self.settings.embedding_model) as span:
            result = self.retrieval.run(query, k=k, expand_to_n=expand_to_n, author=author)
            retrieval_ms = _ms(time.perf_counter() - started)
            set_attributes(span, {
                "chunks": len(result.chunks),
                "rerank": result.rerank,
                "expanded_queries": len(result.expanded_queries),
                "author.id": result.author.author.id if result.author.author else None,
                "author.reason": result.author.reason,
            })
        timings = {key: value for key, value in result.timings_ms.items() if key != "total"}
        timings["retrieval"] = retrieval_ms

        prompt: GroundedPrompt | None = None
        if result.chunks:
            prompt_started = time.perf_counter()
            with trace_span("rag.prompt", candidates=len(result.chunks)) as span:
                twin_of = result.author.author.full_name if result.author.author else None
                try:
                    prompt = build_prompt_for_client(
                        query, result.chunks, self.llm, self.settings.max_new_tokens, twin_of=twin_of
                    )
                except PromptBudgetError:
                    raise InvalidInputError(
                        "query", f"too long for the model's {self.llm.context_window}-token context window"
                    ) from None
                set_attributes(span, {
                    "chunks.used": len(prompt.used_chunks),
                    "chunks.dropped": len(prompt.dropped),
                    "truncated": prompt.truncated,
                    "gen_ai.usage.input_tokens": prompt.prompt_tokens,
                })
            timings["prompt"] = _ms(time.perf_counter() - prompt_started)
            if not prompt.used_chunks:
                prompt = None  # nothing fits: answering would be ungrounded
        return PreparedRequest(query=query, started=started, retrieval=result, prompt=prompt, timings_ms=timings)

    def _generation_attributes(self, prepared: PreparedRequest, params: GenerationParams) -> dict[str, object]:
        return {
            "gen_ai__request__model": self.llm.model_name,
            "gen_ai__request__temperature": params.temperature,
            "gen_ai__request__top_p": params.top_p,
            "gen_ai__request__max_tokens": params.max_new_tokens,
            "gen_ai__usage__input_tokens": prepared.prompt.prompt_tokens if prepared.prompt else None,
            "sources": len(prepared.prompt.used_chunks) if prepared.prompt else 0,
        }

    def _finish(
        self,
        prepared: PreparedRequest,
        text: str,
        generation_ms: float,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        finish_reason: str | None,
    ) -> RAGAnswer:
        timings = prepared.timings_ms
        timings["generation"] = generation_ms
        timings["total"] = _ms(time.perf_counter() - prepared.started)
        return RAGAnswer(
            query=prepared.query,
            answer=text,
            sources=list(prepared.prompt.used_chunks) if prepared.prompt else [],
            author=prepared.author,
            expanded_queries=list(prepared.retrieval.expanded_queries),
            rerank=prepared.retrieval.rerank,
            model=self.llm.model_name,
            timings_ms=timings,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
            warnings=list(prepared.retrieval.warnings),
            hypothetical_document=prepared.retrieval.hypothetical_document,
        )

    def _no_sources_answer(self, prepared: PreparedRequest) -> str:
        author = prepared.author
        return NO_SOURCES_ANSWER.format(by=f" by {author.full_name}" if author else "")

    def _count(self, text: str) -> int | None:
        try:
            return self.llm.count_tokens(text) if text else 0
        except Exception:  # a count is telemetry: never fail an answer over it
            logger.debug("token count failed", exc_info=True)
            return None
