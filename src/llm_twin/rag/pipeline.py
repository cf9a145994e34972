"""Retrieval-augmented generation: retrieve, build the grounded prompt, generate (or stream).

``RAGPipeline`` is blocking and thread-safe (it holds no per-request state; the local model
serialises itself with a fair queue), so the API runs one call per worker thread.

One orchestration serves both entry points: prepare (retrieval and the prompt) → the sources
event → generation → the done event. ``stream()`` yields those events as they happen (see
``llm_twin.rag.answer``); ``run()`` consumes the same steps with one blocking ``complete()`` call,
which reports exact usage, the finish reason and, for the local model, the time spent queued.
Closing a stream early stops generation and frees the model.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from llm_twin.domain.authors import Author
from llm_twin.domain.conversation import Turn
from llm_twin.domain.deadline import Deadline, deadline_scope
from llm_twin.domain.limits import check_request
from llm_twin.errors import DeadlineExceededError, InvalidInputError
from llm_twin.llm.base import GenerationParams, LLMClient, SupportsDeadline
from llm_twin.observability import activate, record_error, set_attributes, start_span, trace_span
from llm_twin.observability import conventions as oi
from llm_twin.observability.progress import report_progress, reporting_progress
from llm_twin.rag.answer import AnswerContext, DoneEvent, RAGAnswer, RAGEvent, SourcesEvent, StatusEvent, TokenEvent
from llm_twin.rag.context import ExtractiveContextSelector
from llm_twin.rag.prompts import (
    GroundedPrompt,
    PromptBudgetError,
    asking_for_sentences,
    build_prompt_for_client,
    citations_only,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from llm_twin.domain.authors import Author
    from llm_twin.domain.documents import EmbeddedChunk
    from llm_twin.domain.twins import TwinCatalog
    from llm_twin.retrieval.types import RetrievalResult
    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)

#: Answer given without calling the LLM when retrieval finds nothing: nothing to ground on.
NO_SOURCES_ANSWER = "I could not find anything in the indexed writing{by} that answers this question."


class Retriever(Protocol):
    """What the RAG pipeline needs from retrieval (``llm_twin.retrieval.pipeline.RetrievalPipeline``)."""

    @property
    def store_backend(self) -> str:
        """The vector store in use: "embedded" or "qdrant-server"."""
        ...

    @property
    def rerank_name(self) -> str:
        """The reranker in use: "cross-encoder", "llm" or "none"."""
        ...

    def warm_up(self) -> None: ...

    def run(
        self,
        query: str,
        k: int | None = None,
        expand_to_n: int | None = None,
        author: str | None = None,
        *,
        history: Sequence[Turn] = (),
    ) -> RetrievalResult: ...

    def authors(self) -> list[Author]:
        """Everyone in the author registry, read now (an ingest since the last read shows up)."""
        ...

    def twins(self) -> TwinCatalog:
        """Everyone who can be a twin, as model ids (one per person)."""
        ...

    def close(self) -> None: ...


@dataclass
class PreparedRequest:
    """Everything before generation: retrieval outcome, the prompt, timings so far."""

    query: str
    started: float
    retrieval: RetrievalResult
    prompt: GroundedPrompt | None  # None when retrieval found nothing
    timings_ms: dict[str, float]
    #: The generation parameters of this request (the configured ones unless it overrode some).
    params: GenerationParams | None = None

    @property
    def author(self) -> Author | None:
        return self.retrieval.author.author


@dataclass
class Generation:
    """What the generation step produced."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    ms: float = 0.0


@dataclass(frozen=True)
class AnswerReport:
    """What the pipeline tells its listeners (metrics) about each completed answer."""

    answer: RAGAnswer
    streamed: bool
    #: Candidates the search handed to the reranker, when retrieval reports it.
    rerank_candidates: int | None = None
    #: What was degraded (a kind per warning: expansion, hyde, other).
    degradations: list[str] = field(default_factory=list)


AnswerListener = Callable[[AnswerReport], None]


def degradation_kinds(warnings: list[str]) -> list[str]:
    """A bounded kind per retrieval warning (for counting): the step that fell back."""
    kinds = []
    for warning in warnings:
        text = warning.lower()
        kinds.append(
            "expansion" if "expansion" in text or "reformulation" in text else "hyde" if "hyde" in text else "other"
        )
    return kinds


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


class RAGPipeline:
    """``retrieval`` → grounded prompt → ``llm``; one instance per process, shared by all requests."""

    def __init__(
        self,
        retrieval: Retriever,
        llm: LLMClient,
        settings: Settings,
        selector: ExtractiveContextSelector | None = None,
    ) -> None:
        self.retrieval = retrieval
        self.llm = llm
        self.settings = settings
        #: None: the retrieved chunks go to the prompt whole (and no evidence floor applies).
        self.selector = selector
        self._warm = False
        self._listeners: list[AnswerListener] = []

    def add_listener(self, listener: AnswerListener) -> None:
        """Call ``listener`` with an ``AnswerReport`` after each completed answer (in the answering thread).

        Adding the same listener again does nothing."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: AnswerListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @classmethod
    def from_settings(cls, settings: Settings) -> RAGPipeline:
        """Build retrieval (with the helper LLM) and the generation LLM; call ``warm_up()`` next."""
        from llm_twin.llm.factory import build_helper_llm, build_llm
        from llm_twin.retrieval.pipeline import RetrievalPipeline

        llm = build_llm(settings)
        retrieval = RetrievalPipeline(settings, helper_llm=build_helper_llm(settings))
        selector = (
            ExtractiveContextSelector(
                retrieval.embedder, budget_tokens=settings.context_budget_tokens, count_tokens=llm.count_tokens
            )
            if settings.context_selection == "sentences"
            else None
        )
        return cls(retrieval, llm, settings, selector)

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
        self.llm.close()

    @property
    def params(self) -> GenerationParams:
        s = self.settings
        return GenerationParams(
            max_new_tokens=s.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            repetition_penalty=s.repetition_penalty,
        )

    def generation_params(
        self,
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> GenerationParams:
        """The configured parameters with one request's overrides (None keeps the setting)."""
        base = self.params
        return dataclasses.replace(
            base,
            max_new_tokens=base.max_new_tokens if max_new_tokens is None else max_new_tokens,
            temperature=base.temperature if temperature is None else temperature,
            top_p=base.top_p if top_p is None else top_p,
            stop=base.stop if stop is None else tuple(stop),
        )

    # --- answering ------------------------------------------------------------------------------

    def run(
        self,
        query: str,
        k: int | None = None,
        expand_to_n: int | None = None,
        author: str | None = None,
        *,
        history: Sequence[Turn] = (),
        params: GenerationParams | None = None,
        deadline: Deadline | None = None,
    ) -> RAGAnswer:
        """Answer ``query`` in one blocking call (the steps of ``stream()``, generated with ``complete()``).

        ``history``: the conversation's earlier turns (the question is then a follow-up, see
        ``llm_twin.retrieval.conversation``); ``params``: this request's generation parameters
        (``generation_params()``), the configured ones when None; ``deadline``: the request's overall
        deadline, shared by every stage (``domain/deadline.py``).
        """
        answer: RAGAnswer | None = None
        for event in self._answer(query, k, expand_to_n, author, history, params, streamed=False, deadline=deadline):
            if isinstance(event, DoneEvent):
                answer = event.answer
        if answer is None:  # pragma: no cover - _answer always ends with a done event
            raise RuntimeError("the RAG pipeline ended without an answer")
        return answer

    def stream(
        self,
        query: str,
        k: int | None = None,
        expand_to_n: int | None = None,
        author: str | None = None,
        *,
        history: Sequence[Turn] = (),
        params: GenerationParams | None = None,
        progress: bool = False,
        deadline: Deadline | None = None,
    ) -> Generator[RAGEvent, None, None]:
        """Sources, then tokens as they are generated, then done (see ``llm_twin.rag.answer``).

        Errors before the sources event (invalid input, store unavailable) raise from the first
        ``next()`` (with ``progress``: from the ``next()`` after the last status event before them);
        LLM errors raise after the sources event. Spans are never left current across a ``yield``,
        so the consumer may iterate from any thread. ``progress``: a ``StatusEvent`` before each
        stage (retrieval then runs in a helper thread, so its stages can be sent while it works).
        """
        return self._answer(
            query, k, expand_to_n, author, history, params, streamed=True, progress=progress, deadline=deadline
        )

    def _answer(
        self,
        query: str,
        k: int | None,
        expand_to_n: int | None,
        author: str | None,
        history: Sequence[Turn],
        params: GenerationParams | None,
        *,
        streamed: bool,
        progress: bool = False,
        deadline: Deadline | None = None,
    ) -> Generator[RAGEvent, None, None]:
        """The one orchestration: prepare → sources → generate → done, traced under one ``rag`` span."""
        content = self.settings.trace_content
        started = time.perf_counter()
        root = start_span(
            "rag",
            query_chars=len(query),
            expand_to_n=expand_to_n,
            author=author,
            stream=streamed,
            history_turns=len(history),
            attributes={oi.SPAN_KIND: oi.CHAIN, oi.K: k, oi.INPUT_VALUE: query if content else None},
        )
        try:
            params = params or self.params
            # The deadline is current only while preparing (``prepare`` has no yield; the reporting
            # variant re-enters it around each step): the consumer may resume this generator from
            # another thread, whose context would not hold it.
            if deadline is not None:
                deadline.check("retrieval")  # e.g. the request waited out its time in the queue
            if progress:
                prepared = yield from self._prepare_reporting(
                    started, root, query, k, expand_to_n, author, history=history, params=params, deadline=deadline
                )
            else:
                with activate(root), deadline_scope(deadline):
                    prepared = self.prepare(query, k, expand_to_n, author, history=history, params=params)
            if prepared.retrieval.degraded:
                set_attributes(root, {"degraded": list(prepared.retrieval.degraded)})
            if prepared.retrieval.rewritten_query is not None and self.settings.trace_content:
                set_attributes(root, {"conversation.rewritten_query": prepared.retrieval.rewritten_query})
            sources = self._sources(prepared)
            yield sources
            if prepared.prompt is None:
                generation = Generation(self._no_sources_answer(prepared))
                if streamed:
                    self._first_token(prepared)
                yield TokenEvent(generation.text)
            else:
                if progress:
                    yield self._status(started, "write", "Writing the answer")
                if deadline is not None:
                    deadline.check("generation")
                generation = yield from self._generate(prepared, prepared.prompt, root, streamed, deadline)
            if streamed and "ttft" not in prepared.timings_ms:  # the model produced nothing at all
                self._first_token(prepared)
            answer = self._finish(sources, prepared, generation)
            set_attributes(root, {"timings_ms." + key: value for key, value in answer.timings_ms.items()})
            set_attributes(
                root,
                {
                    oi.OUTPUT_VALUE: answer.answer if content else None,
                    oi.DEGRADATIONS: answer.warnings or None,
                    oi.LLM_TOKEN_COUNT_PROMPT: answer.prompt_tokens,
                    oi.LLM_TOKEN_COUNT_COMPLETION: answer.completion_tokens,
                },
            )
            self._notify(answer, prepared, streamed)
            yield DoneEvent(answer)
        except BaseException as error:
            record_error(root, error)
            raise
        finally:
            root.end()

    def _generate(
        self,
        prepared: PreparedRequest,
        prompt: GroundedPrompt,
        root: Span,
        streamed: bool,
        deadline: Deadline | None = None,
        *,
        retried: bool = False,
    ) -> Generator[TokenEvent, None, Generation]:
        """The ``rag.generate`` step: tokens as the model writes them, or the whole text from one call.

        An answer of block numbers alone ("[1] [2][3]", a small model copying the citation example)
        is asked for once more with ``asking_for_sentences``; the prompt cache makes that retry cost
        the few new tokens plus the new answer. While streaming, leading block numbers are held back
        until words follow, so the client never sees the discarded attempt.
        """
        params = prepared.params or self.params
        span = start_span("rag.generate", parent=root, attributes=self._generation_attributes(prepared, params))
        started = time.perf_counter()
        retry = False
        try:
            if streamed:
                pieces: list[str] = []
                held: list[str] | None = []  # None once words have been sent
                with closing(self.llm.stream(prompt.messages, params)) as tokens:
                    for piece in tokens:
                        pieces.append(piece)
                        if held is not None:
                            held.append(piece)
                            so_far = "".join(held)
                            if not so_far.strip() or citations_only(so_far):
                                continue
                            piece, held = so_far, None
                            set_attributes(span, {"ttft_ms": self._first_token(prepared)})
                        yield TokenEvent(piece)
                        if deadline is not None and deadline.expired:  # closing the tokens frees the model
                            raise DeadlineExceededError(
                                f"request deadline of {deadline.budget_s:g}s passed during generation"
                            )
                ms = _ms(time.perf_counter() - started)
                text = "".join(pieces).strip()
                retry = citations_only(text) and not retried
                if held and not retry:  # nothing but held pieces, and no retry left: send what it said
                    set_attributes(span, {"ttft_ms": self._first_token(prepared)})
                    yield TokenEvent("".join(held))
                count = self._count(text)
                # A stream does not say why it ended; a text as long as the budget was cut by it
                # (the count re-tokenizes the text, so this can be off by a token at the edge).
                finish = "length" if count is not None and count >= params.max_new_tokens else "stop"
                generation = Generation(text, prompt.prompt_tokens, count, finish, ms=ms)
            else:
                bounded = False
                with activate(span):
                    if deadline is not None and isinstance(self.llm, SupportsDeadline):
                        # Bounded as a whole (queue wait, retries, generation) by what is left.
                        completion = self.llm.complete_within(prompt.messages, params, deadline.remaining())
                        bounded = True
                    else:
                        completion = self.llm.complete(prompt.messages, params)
                text = completion.text.strip()
                retry = citations_only(text) and not retried
                completion_tokens = completion.completion_tokens
                if completion_tokens is None and bounded:  # a bounded local call streams: no usage reported
                    completion_tokens = self._count(text)
                generation = Generation(
                    text,
                    completion.prompt_tokens or prompt.prompt_tokens,
                    completion_tokens,
                    completion.finish_reason,
                    ms=_ms(time.perf_counter() - started),
                )
                compute = completion.extra.get("generation_seconds")
                if isinstance(compute, (int, float)):  # local model: the rest was the queue
                    prepared.timings_ms["llm_queue"] = round(max(0.0, generation.ms - compute * 1000.0), 2)
            total = (generation.prompt_tokens or 0) + (generation.completion_tokens or 0)
            set_attributes(
                span,
                {
                    "gen_ai.usage.input_tokens": generation.prompt_tokens,
                    "gen_ai.usage.output_tokens": generation.completion_tokens,
                    "gen_ai.response.finish_reasons": [generation.finish_reason] if generation.finish_reason else None,
                    "duration_ms": generation.ms,
                    "llm_twin.citations_only_retry": retry or None,
                    oi.LLM_TOKEN_COUNT_PROMPT: generation.prompt_tokens,
                    oi.LLM_TOKEN_COUNT_COMPLETION: generation.completion_tokens,
                    oi.LLM_TOKEN_COUNT_TOTAL: total or None,
                    oi.OUTPUT_VALUE: generation.text if self.settings.trace_content else None,
                },
            )
            if self.settings.trace_content:
                set_attributes(
                    span, oi.messages(oi.LLM_OUTPUT_MESSAGES, [{"role": "assistant", "content": generation.text}])
                )
        except BaseException as error:
            record_error(span, error)
            raise
        finally:
            span.end()
        if retry:
            if deadline is not None:
                deadline.check("generation")
            again = yield from self._generate(
                prepared, asking_for_sentences(prompt), root, streamed, deadline, retried=True
            )
            return dataclasses.replace(again, ms=generation.ms + again.ms)
        if not streamed:
            yield TokenEvent(generation.text)  # the whole answer is one piece
        return generation

    # --- internals ----------------------------------------------------------------------------

    @staticmethod
    def _status(started: float, stage: str, message: str, count: int | None = None) -> StatusEvent:
        return StatusEvent(stage=stage, message=message, count=count, elapsed_ms=_ms(time.perf_counter() - started))

    def _prepare_reporting(
        self,
        started: float,
        root: Span,
        query: str,
        k: int | None,
        expand_to_n: int | None,
        author: str | None,
        *,
        history: Sequence[Turn],
        params: GenerationParams,
        deadline: Deadline | None = None,
    ) -> Generator[StatusEvent, None, PreparedRequest]:
        """``prepare()`` in a helper thread, yielding its stages' status events as they are reported.

        A generator cannot yield from inside the blocking retrieval call, so the call runs beside it and
        reports into a queue. The thread runs in a copy of this context (the ``rag`` span's parent).
        """
        events: queue.Queue[StatusEvent | None] = queue.Queue()
        outcome: list[PreparedRequest | BaseException] = []

        def report(stage: str, message: str, count: int | None) -> None:
            events.put(self._status(started, stage, message, count))

        def work() -> None:
            try:
                with reporting_progress(report), activate(root), deadline_scope(deadline):
                    outcome.append(self.prepare(query, k, expand_to_n, author, history=history, params=params))
            except BaseException as error:  # handed to the generator, which raises it
                outcome.append(error)
            finally:
                events.put(None)

        context = contextvars.copy_context()
        worker = threading.Thread(target=context.run, args=(work,), name="rag-prepare", daemon=True)
        worker.start()
        try:
            while (event := events.get()) is not None:
                yield event
        finally:
            # Closed early (the client left): retrieval cannot be interrupted, but it is bounded;
            # waiting keeps this request's worker slot held until the thread is done with the store.
            worker.join()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def prepare(
        self,
        query: str,
        k: int | None = None,
        expand_to_n: int | None = None,
        author: str | None = None,
        *,
        history: Sequence[Turn] = (),
        params: GenerationParams | None = None,
    ) -> PreparedRequest:
        """Retrieval and the grounded prompt, without generating (``prompt`` is None when nothing was found).

        Public for benchmarks and evaluation: replaying ``prompt.messages`` times the model alone.
        """
        started = time.perf_counter()
        params = params or self.params
        # Retrieval checks too; checking here keeps a bad request from reaching any retriever.
        query = check_request(
            query, k=k, expand_to_n=expand_to_n, author=author, history=history, expand_max=self.settings.expand_max
        )
        content = self.settings.trace_content
        with trace_span(
            "rag.retrieve",
            embedding__model=self.settings.embedding_model,
            attributes={
                oi.SPAN_KIND: oi.RETRIEVER,
                oi.INPUT_VALUE: query if content else None,
                oi.K: k if k is not None else self.settings.k,
                oi.FUSION: self.settings.fusion,
            },
        ) as span:
            result = self.retrieval.run(query, k=k, expand_to_n=expand_to_n, author=author, history=history)
            retrieval_ms = _ms(time.perf_counter() - started)
            set_attributes(
                span,
                {
                    "chunks": len(result.chunks),
                    "rerank": result.rerank,
                    "expanded_queries": len(result.expanded_queries),
                    "author.id": result.author.author.id if result.author.author else None,
                    "author.reason": result.author.reason,
                    "conversation.rewritten_query": result.rewritten_query if content else None,
                    oi.AUTHOR_FILTER: result.author.author.id if result.author.author else None,
                    oi.AUTHOR_REASON: result.author.reason,
                    oi.EXPANDED_QUERIES: list(result.expanded_queries) if content else None,
                    oi.RERANK_CANDIDATES: result.rerank_candidates,
                    oi.DEGRADATIONS: list(result.warnings) or None,
                    **oi.documents(oi.RETRIEVAL_DOCUMENTS, result.chunks, content=content),
                },
            )
        timings = {key: value for key, value in result.timings_ms.items() if key != "total"}
        timings["retrieval"] = retrieval_ms

        if result.chunks:
            n = len(result.chunks)
            report_progress("read", f"Reading {n} source{'' if n == 1 else 's'}", n)
        chunks = self._select(result, timings) if self.selector is not None else result.chunks
        prompt: GroundedPrompt | None = None
        if chunks:
            prompt_started = time.perf_counter()
            with trace_span("rag.prompt", candidates=len(chunks), attributes={oi.SPAN_KIND: oi.CHAIN}) as span:
                twin_of = result.author.author.full_name if result.author.author else None
                # A follow-up is answered as its standalone question: the model does not see the history.
                question = result.rewritten_query or query
                try:
                    prompt = build_prompt_for_client(
                        question,
                        chunks,
                        self.llm,
                        params.max_new_tokens,
                        twin_of=twin_of,
                        links=self.settings.context_links,
                    )
                except PromptBudgetError:
                    raise InvalidInputError(
                        "query", f"too long for the model's {self.llm.context_window}-token context window"
                    ) from None
                set_attributes(
                    span,
                    {
                        "chunks.used": len(prompt.used_chunks),
                        "chunks.dropped": len(prompt.dropped),
                        "truncated": prompt.truncated,
                        "gen_ai.usage.input_tokens": prompt.prompt_tokens,
                    },
                )
            timings["prompt"] = _ms(time.perf_counter() - prompt_started)
            if not prompt.used_chunks:
                prompt = None  # nothing fits: answering would be ungrounded
        return PreparedRequest(
            query=query, started=started, retrieval=result, prompt=prompt, timings_ms=timings, params=params
        )

    def _select(self, result: RetrievalResult, timings: dict[str, float]) -> list[EmbeddedChunk]:
        """The sentences that bear on the question; none when even the best is below the evidence floor
        (the answer then says the writing does not cover it, without calling the model)."""
        assert self.selector is not None
        if not result.chunks:
            return []
        started = time.perf_counter()
        # Scored against the topic (the question without the resolved author, when retrieval made one).
        topic = (result.search_queries or result.expanded_queries or [result.query])[0]
        with trace_span("rag.select", candidates=len(result.chunks), attributes={oi.SPAN_KIND: oi.CHAIN}) as span:
            selected = self.selector.run(topic, result.chunks)
            grounded = selected.evidence >= self.settings.evidence_floor
            set_attributes(
                span,
                {
                    "evidence": round(selected.evidence, 4),
                    "evidence_floor": self.settings.evidence_floor,
                    "grounded": grounded,
                    "tokens.kept": selected.tokens,
                    "tokens.retrieved": selected.tokens_before,
                    "chunks.kept": len(selected.chunks),
                },
            )
        timings["select"] = _ms(time.perf_counter() - started)
        return selected.chunks if grounded else []

    def _generation_attributes(self, prepared: PreparedRequest, params: GenerationParams) -> dict[str, object]:
        prompt = prepared.prompt
        attributes: dict[str, object] = {
            "gen_ai.request.model": self.llm.model_name,
            "gen_ai.request.temperature": params.temperature,
            "gen_ai.request.top_p": params.top_p,
            "gen_ai.request.max_tokens": params.max_new_tokens,
            "gen_ai.request.stop_sequences": list(params.stop) or None,
            "gen_ai.usage.input_tokens": prompt.prompt_tokens if prompt else None,
            "sources": len(prompt.used_chunks) if prompt else 0,
            oi.SPAN_KIND: oi.LLM,
            oi.LLM_MODEL_NAME: self.llm.model_name,
            oi.LLM_INVOCATION_PARAMETERS: oi.as_json(
                {
                    "temperature": params.temperature,
                    "top_p": params.top_p,
                    "max_tokens": params.max_new_tokens,
                    "repetition_penalty": params.repetition_penalty,
                    "stop": list(params.stop) or None,
                }
            ),
        }
        if prompt is not None and self.settings.trace_content:
            attributes[oi.INPUT_VALUE] = prompt.messages[-1]["content"] if prompt.messages else None
            attributes.update(oi.messages(oi.LLM_INPUT_MESSAGES, prompt.messages))
        return attributes

    def _sources(self, prepared: PreparedRequest) -> SourcesEvent:
        """The sources event; a snapshot, since the timings keep growing while generation runs."""
        return SourcesEvent(
            query=prepared.query,
            rewritten_query=prepared.retrieval.rewritten_query,
            sources=list(prepared.prompt.used_chunks) if prepared.prompt else [],
            author=prepared.author,
            expanded_queries=list(prepared.retrieval.expanded_queries),
            rerank=prepared.retrieval.rerank,
            model=self.llm.model_name,
            timings_ms=dict(prepared.timings_ms),
            warnings=list(prepared.retrieval.warnings),
            degraded=list(prepared.retrieval.degraded),
            hypothetical_document=prepared.retrieval.hypothetical_document,
        )

    def _first_token(self, prepared: PreparedRequest) -> float:
        prepared.timings_ms["ttft"] = _ms(time.perf_counter() - prepared.started)
        return prepared.timings_ms["ttft"]

    def _finish(self, context: AnswerContext, prepared: PreparedRequest, generation: Generation) -> RAGAnswer:
        timings = prepared.timings_ms
        timings["generation"] = generation.ms
        timings["total"] = _ms(time.perf_counter() - prepared.started)
        return RAGAnswer.from_context(
            context,
            answer=generation.text,
            timings_ms=timings,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            finish_reason=generation.finish_reason,
        )

    def _notify(self, answer: RAGAnswer, prepared: PreparedRequest, streamed: bool) -> None:
        if not self._listeners:
            return
        report = AnswerReport(
            answer,
            streamed,
            rerank_candidates=prepared.retrieval.rerank_candidates,
            # Machine-readable codes when the answer carries them; else a kind per warning.
            degradations=[str(code) for code in getattr(answer, "degraded", None) or ()]
            or degradation_kinds(answer.warnings),
        )
        for listener in list(self._listeners):
            try:
                listener(report)
            except Exception:  # telemetry never fails an answer
                logger.warning("answer listener failed", exc_info=True)

    def _no_sources_answer(self, prepared: PreparedRequest) -> str:
        author = prepared.author
        return NO_SOURCES_ANSWER.format(by=f" by {author.full_name}" if author else "")

    def _count(self, text: str) -> int | None:
        try:
            return self.llm.count_tokens(text) if text else 0
        except Exception:  # a count is telemetry: never fail an answer over it
            logger.debug("token count failed", exc_info=True)
            return None
