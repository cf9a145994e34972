"""The retrieval pipeline: self-query || expansion || HyDE (opt-in) -> batched hybrid search -> rerank.

With ``expand_below_cosine`` (the default) and the sentence-embedding reranker, expansion waits:
self-query -> search and rerank the question alone -> only when no sentence found is that close to
the question, expansion -> search and rerank again with every query. On the twin dev set 13 of 90
questions were searched with reformulations, at MRR 0.908 against 0.898 always expanding and 0.904 never
(``benchmarks/results/twin_expansion.md``).

Built and warmed once per process (models, store, registry index); ``run()`` is thread-safe and
never writes: the author registry is opened read-only.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from llm_twin.domain.authors import Author
from llm_twin.domain.conversation import Turn
from llm_twin.domain.deadline import Deadline
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.domain.limits import check_request
from llm_twin.domain.twins import TwinCatalog
from llm_twin.embedding.bm25 import Bm25SparseEncoder
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.errors import StoreUnavailableError
from llm_twin.ingest.pipeline import IngestPipeline
from llm_twin.llm.base import LLMClient
from llm_twin.observability import conventions as oi
from llm_twin.observability.progress import report_progress
from llm_twin.observability.tracing import set_attributes, trace_span
from llm_twin.retrieval.conversation import FollowUp, FollowUpResolver, HelperLLMQuestionRewriter
from llm_twin.retrieval.expansion import QueryExpander
from llm_twin.retrieval.hyde import HydeResult, HypotheticalDocumentWriter
from llm_twin.retrieval.rerankers.factory import build_reranker
from llm_twin.retrieval.rerankers.sentence_embedding import BEST_SENTENCE_COSINE, SentenceEmbeddingReranker
from llm_twin.retrieval.search import QdrantHybridRetriever, SearchOutput, group_by_document
from llm_twin.retrieval.self_query import SelfQuery
from llm_twin.retrieval.types import (
    HYDE_FAILED,
    RERANK_FAILED,
    SELF_QUERY_HELPER_FAILED,
    AuthorMatch,
    ExpansionResult,
    Reranker,
    RetrievalResult,
    collection_unavailable,
)
from llm_twin.settings import Settings
from llm_twin.store import VectorStore, open_store, read_authors, registry_in_store
from llm_twin.store.base import SearchMode

T = TypeVar("T")

logger = logging.getLogger(__name__)


class RetrievalPipeline:
    def __init__(
        self,
        settings: Settings,
        store: VectorStore | None = None,
        embedder: OnnxSentenceEmbedder | None = None,
        helper_llm: LLMClient | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or open_store(settings)
        self.embedder = embedder or OnnxSentenceEmbedder.from_settings(settings)
        self.helper_llm = helper_llm
        # With a Qdrant server the authors live there (read-only here, re-read now and then);
        # the embedded engine's registry is the sqlite file beside the vectors.
        shared = registry_in_store(self.store, settings, read_only=True)
        self.self_query = SelfQuery.from_settings(settings, helper_llm, shared.authors if shared else None)
        self.follow_up = FollowUpResolver(HelperLLMQuestionRewriter(helper_llm, settings.helper_llm_timeout_s))
        self.expander = QueryExpander(helper_llm, settings.expand_max, settings.helper_llm_timeout_s)
        self.hyde = (
            HypotheticalDocumentWriter(
                helper_llm, settings.hyde_max_new_tokens, settings.helper_llm_timeout_s, settings.hyde_instruction
            )
            if settings.hyde
            else None
        )
        self.reranker = reranker or build_reranker(settings, helper_llm, self.embedder)
        self.retriever = QdrantHybridRetriever(
            self.store,
            self.embedder,
            Bm25SparseEncoder(avg_len=settings.bm25_avg_len),
            list(settings.collections.values()),
            mode=settings.search_mode,
            prefetch_limit=settings.prefetch_limit,
            rrf_k=settings.rrf_k,
            k_split=settings.k_split,
            fusion=settings.fusion,
            hyde_weight=settings.hyde_weight,
        )
        # Self-query and expansion (and HyDE) run side by side; all mostly wait on an LLM or the GIL-free
        # engine. A request hands at most two steps to this pool, so two workers per admitted request
        # (LLM_TWIN_API_WORKERS) keep it from becoming a second limit; threads start only when needed.
        self._pool = ThreadPoolExecutor(max_workers=2 * settings.api_workers, thread_name_prefix="retrieval")
        self._warm = False

    def warm_up(self) -> None:
        if self._warm:
            return
        with trace_span("retrieval.warm_up", embedding_model=self.settings.embedding_model):
            self._open_collections()
            self.retriever.warm_up()
            self.self_query.warm_up()
            self.follow_up.warm_up()
            self.expander.warm_up()
            if self.hyde is not None:
                self.hyde.warm_up()
            self.reranker.warm_up()
        logger.info(
            "retrieval ready: search=%s fusion=%s hyde=%s rerank=%s",
            self.settings.search_mode,
            self.settings.fusion,
            self.hyde is not None,
            self.reranker.name,
        )
        self._warm = True

    def open_writer(self) -> IngestPipeline:
        """An ingest pipeline over this pipeline's store handle and embedder (the embedded engine
        allows one handle per process, so a serving process writes through the one it reads with).
        The caller closes it; that leaves the shared store open."""
        return IngestPipeline(self.settings, store=self.store, embedder=self.embedder)

    def refresh_authors(self) -> None:
        """Re-read the author registry after a write in this process (new authors, new counts)."""
        self.self_query.refresh()

    def _open_collections(self) -> None:
        """Open every collection that can be; one missing or broken leaves the others serving (each
        search then reports it as ``collection_unavailable:<name>``); none at all is a store outage."""
        names = list(self.settings.collections.values())
        failures: list[StoreUnavailableError] = []
        for name in names:
            try:
                self.store.open_existing([name])
            except StoreUnavailableError as error:
                logger.warning("collection %s unavailable: %s", name, error)
                failures.append(error)
        if len(failures) == len(names):
            raise failures[0]

    def resolve_author(self, name: str) -> AuthorMatch:
        """An explicit author must name exactly one known author; otherwise a 422-style error."""
        return self.self_query.resolver.require(name)

    def authors(self) -> list[Author]:
        """Everyone in the author registry, read now through this pipeline's store (Qdrant server) or
        from the sqlite file (embedded)."""
        return read_authors(self.settings, self.store)

    def twins(self) -> TwinCatalog:
        """Everyone the registry knows as a twin (one per person, their other names as aliases)."""
        return self.self_query.resolver.twins

    # --- the run ----------------------------------------------------------------------------
    def run(
        self,
        query: str,
        k: int | None = None,
        expand_to_n: int | None = None,
        author: str | None = None,
        mode: SearchMode | None = None,
        history: Sequence[Turn] = (),
    ) -> RetrievalResult:
        """``history``: the conversation's earlier turns; a follow-up is then searched as a standalone
        question (``rewritten_query``), with the conversation's author when it names nobody."""
        self.warm_up()
        k = self.settings.k if k is None else k
        n = self.settings.expand_to_n if expand_to_n is None else expand_to_n
        asked = check_request(
            query, k=k, expand_to_n=n, author=author, history=history, expand_max=self.settings.expand_max
        )
        started = time.perf_counter()
        timings: dict[str, float] = {}
        warnings: list[str] = []
        degraded: list[str] = []
        with trace_span(
            "retrieval",
            query_chars=len(asked),
            expand_to_n=n,
            history_turns=len(history),
            attributes={
                oi.SPAN_KIND: oi.CHAIN,
                oi.K: k,
                oi.SEARCH_MODE: mode or self.settings.search_mode,
                oi.FUSION: self.settings.fusion,
            },
        ) as retrieval_span:
            timed = self._timed
            followup: FollowUp | None = None
            query = asked
            if history:  # before self-query and expansion, which then work on the standalone question
                report_progress("rewrite", "Rewriting the follow-up question")
                followup = self._follow_up(asked, history, timings)
                warnings.extend(followup.warnings)
                degraded.extend(followup.degraded)
                query = followup.question
            # With a confidence threshold, the question is searched alone first and expanded only when
            # that finds nothing close (``_expands_on_demand``); otherwise expansion runs beside self-query.
            on_demand = n > 1 and self._expands_on_demand()
            expansion_future = None
            if n > 1 and not on_demand:
                report_progress("expand", f"Expanding the question into {n} searches", n)
                # Each step runs in a copy of this context, so its span is a child of the retrieval span.
                expansion_future = self._pool.submit(
                    contextvars.copy_context().run, timed, "expansion", timings, self.expander.run, query, n
                )
            hyde_future = (
                self._pool.submit(contextvars.copy_context().run, timed, "hyde", timings, self.hyde.run, query)
                if self.hyde
                else None
            )
            if author is not None or followup is None or followup.author is None:
                report_progress("author", "Resolving the author")
            if author is not None:
                match = timed("self_query", timings, self.resolve_author, author)
            elif followup is not None and followup.author is not None:
                match = followup.author
            else:
                match = timed("self_query", timings, self.self_query.run, query)
                if followup is not None:
                    match = followup.grounded(match)
            if match.helper_failed:
                warnings.append(f"author lookup: {match.reason}; searched without an author filter")
                degraded.append(SELF_QUERY_HELPER_FAILED)
            hyde: HydeResult = hyde_future.result() if hyde_future else HydeResult(None)
            if hyde.error:
                warnings.append(hyde.error)
                degraded.append(HYDE_FAILED)
            author_ids = None
            if match.author is not None:
                # The filter covers every name the person writes under (``domain/people.py``).
                author_ids = tuple(self.self_query.resolver.author_ids(match.author))
            # Grouping by document and reranking each need a pool larger than k to choose from.
            grouped = self.settings.k_split == "relevance"
            pool = max(k, self.settings.rerank_top_n) if self.reranker.name != "none" or grouped else k
            search = _Search(pool, author_ids, mode, hyde.passage, timings, warnings, degraded)
            expansion: ExpansionResult
            if on_demand:
                queries = self._search_queries([query], match)
                found, chunks = self._search_and_rerank(queries, search)
                confidence = _best_sentence_cosine(chunks)
                set_attributes(retrieval_span, {"expansion.first_pass_cosine": confidence})
                if confidence is not None and confidence >= self.settings.expand_below_cosine:
                    expansion = ExpansionResult(queries=[query])
                    timings["expansion"] = 0.0  # skipped: what the request spent on it
                    set_attributes(retrieval_span, {"expansion.skipped": True})
                else:
                    report_progress("expand", f"Expanding the question into {n} searches", n)
                    expansion = timed("expansion", timings, self.expander.run, query, n)
            elif expansion_future is not None:
                expansion = expansion_future.result()
            else:
                expansion = timed("expansion", timings, self.expander.run, query, n)  # n == 1: no model call
            if expansion.error:
                warnings.append(expansion.error)
            if expansion.degraded:
                degraded.append(expansion.degraded)
            queries = self._search_queries(expansion.queries, match)
            if not on_demand or len(expansion.queries) > 1:
                found, chunks = self._search_and_rerank(queries, search)
            chunks = group_by_document(chunks, k, self.settings.max_chunks_per_document) if grouped else chunks[:k]
            timings["total"] = (time.perf_counter() - started) * 1000
            if degraded:
                set_attributes(retrieval_span, {"degraded": list(degraded)})
        return RetrievalResult(
            query=asked,
            rewritten_query=query if followup is not None else None,
            author=match,
            expanded_queries=expansion.queries,
            search_queries=queries,
            chunks=chunks,
            rerank=self.reranker.name,
            timings_ms={key: round(value, 2) for key, value in timings.items()},
            warnings=warnings,
            degraded=degraded,
            hypothetical_document=hyde.passage,
            rerank_candidates=len(found.chunks),
        )

    # --- steps of the run ---------------------------------------------------------------------
    def _expands_on_demand(self) -> bool:
        """Expansion waits for the question's own search when a threshold is set and the reranker
        reports the best-sentence cosine the threshold is about (the sentence-embedding reranker)."""
        return self.settings.expand_below_cosine > 0 and self.reranker.name == SentenceEmbeddingReranker.name

    def _search_queries(self, queries: list[str], match: AuthorMatch) -> list[str]:
        if match.author is not None and self.settings.search_topic_only:
            # The filter finds the person; the text, the topic.
            resolver = self.self_query.resolver
            return _unique([resolver.without_person(q, match.author) for q in queries])
        return queries

    def _search_and_rerank(self, queries: list[str], search: _Search) -> tuple[SearchOutput, list[EmbeddedChunk]]:
        """The ``retrieval.search`` and ``retrieval.rerank`` steps: candidates for ``queries``, reranked
        against the first; a failed reranker keeps the search order (ranking is an improvement)."""
        Deadline.check_current("search")
        report_progress(
            "search", f"Searching with {len(queries)} quer{'y' if len(queries) == 1 else 'ies'}", len(queries)
        )
        content = self.settings.trace_content
        with trace_span(
            "retrieval.search",
            queries=len(queries),
            author_filter=search.author_ids is not None,
            attributes={
                oi.SPAN_KIND: oi.RETRIEVER,
                oi.AUTHOR_FILTER: list(search.author_ids) if search.author_ids else None,
                oi.SEARCH_QUERIES: queries if content else None,
                oi.INPUT_VALUE: queries[0] if content else None,
            },
        ) as span:
            found = self.retriever.run(
                queries, search.pool, author_ids=search.author_ids, mode=search.mode, hypothetical=search.hypothetical
            )
            set_attributes(span, oi.documents(oi.RETRIEVAL_DOCUMENTS, found.chunks, content=False))
        search.timings.update(found.timings_ms)
        for name in found.unavailable:
            message = f"collection {name} is unavailable; answered from the others"
            if message not in search.warnings:
                search.warnings.append(message)
                search.degraded.append(collection_unavailable(name))
        t0 = time.perf_counter()
        if self.reranker.name != "none":
            report_progress("rerank", f"Reranking {len(found.chunks)} passages", len(found.chunks))
        with trace_span(
            "retrieval.rerank",
            backend=self.reranker.name,
            candidates=len(found.chunks),
            attributes={
                oi.SPAN_KIND: oi.RERANKER,
                oi.RERANKER_MODEL_NAME: getattr(self.reranker, "description", self.reranker.name),
                oi.RERANKER_TOP_K: search.pool,
                oi.RERANKER_QUERY: queries[0] if content else None,
            },
        ) as span:
            try:
                chunks = self.reranker.run(queries[0], found.chunks, top_k=search.pool)
            except Exception as error:  # ranking is an improvement, not a requirement: keep the search order
                logger.warning("reranker %s failed; kept the search order", self.reranker.name, exc_info=True)
                set_attributes(span, {"error.type": type(error).__name__})
                search.warnings.append(f"reranking failed ({type(error).__name__}); sources are in search order")
                search.degraded.append(RERANK_FAILED)
                chunks = list(found.chunks[: search.pool])
            set_attributes(span, oi.documents(oi.RERANKER_INPUT_DOCUMENTS, found.chunks, content=False))
            set_attributes(span, oi.documents(oi.RERANKER_OUTPUT_DOCUMENTS, chunks, content=False))
        search.timings["rerank"] = search.timings.get("rerank", 0.0) + (time.perf_counter() - t0) * 1000
        return found, chunks

    def _follow_up(self, query: str, history: Sequence[Turn], timings: dict[str, float]) -> FollowUp:
        """The ``retrieval.rewrite`` step; its span records what the follow-up became."""
        t0 = time.perf_counter()
        with trace_span("retrieval.rewrite", history_turns=len(history)) as span:
            followup = self.follow_up.run(query, history, self.self_query.resolver)
            carried = followup.author.author if followup.author else None
            set_attributes(
                span,
                {
                    # Question text, like input.value: only when the operator allows content on spans.
                    "conversation.rewritten_query": followup.question if self.settings.trace_content else None,
                    "conversation.carried_author": carried.full_name if carried else None,
                    "conversation.rewrite_error": followup.warnings[0] if followup.warnings else None,
                },
            )
        timings["rewrite"] = (time.perf_counter() - t0) * 1000
        return followup

    @staticmethod
    def _timed(name: str, timings: dict[str, float], fn: Callable[..., T], *args: Any) -> T:
        t0 = time.perf_counter()
        with trace_span(f"retrieval.{name}", attributes={oi.SPAN_KIND: oi.CHAIN}):
            try:
                return fn(*args)
            finally:
                timings[name] = (time.perf_counter() - t0) * 1000

    @property
    def store_backend(self) -> str:
        return self.store.backend

    @property
    def rerank_name(self) -> str:
        return self.reranker.name

    def close(self) -> None:
        """Closes what it was given too: the store, and the helper LLM's connections."""
        if self.helper_llm is not None:
            self.helper_llm.close()
        self._pool.shutdown(wait=False)
        self.retriever.close()
        self.store.close()


def _unique(queries: list[str]) -> list[str]:
    """First occurrence of each query, compared without case (stripping a name can make two equal)."""
    seen: set[str] = set()
    unique = []
    for query in queries:
        if query.casefold() not in seen:
            seen.add(query.casefold())
            unique.append(query)
    return unique


@dataclass(frozen=True)
class _Search:
    """What every search of one run shares; the lists and timings are the run's, filled in place."""

    pool: int
    author_ids: tuple[str, ...] | None
    mode: SearchMode | None
    hypothetical: str | None
    timings: dict[str, float]
    warnings: list[str]
    degraded: list[str]


def _best_sentence_cosine(chunks: Sequence[EmbeddedChunk]) -> float | None:
    """The closest sentence to the question among the reranked candidates (None: not scored)."""
    cosines = [c.metadata[BEST_SENTENCE_COSINE] for c in chunks if BEST_SENTENCE_COSINE in c.metadata]
    return max(cosines) if cosines else None
