"""Batched hybrid search over the three collections.

All queries are embedded in one call, and each collection gets one batch request holding every
query (dense, BM25 or hybrid with in-engine RRF), instead of one call per query x collection.
The batches return ids and scores; payloads are fetched only for the k chunks kept.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.embedding.bm25 import Bm25SparseEncoder, Sparse
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.errors import StoreUnavailableError
from llm_twin.observability import conventions as oi
from llm_twin.observability.tracing import trace_span
from llm_twin.store.base import Hit, SearchMode, SearchRequest, VectorStore

logger = logging.getLogger(__name__)

#: Extra hits asked of the engine per list. RRF gives equal scores (a chunk at rank r in either
#: branch alone scores 1/(k+r)), and the engine orders equal scores differently from one process
#: to the next. Over two branches such a tie holds at most two points (the same rank in either
#: branch alone, or swapped ranks in both), so two more hits, cut after a sort that breaks ties by
#: id, make results the same on every run and replica. Each extra hit costs ~3 us to convert.
TIE_SLACK = 2


def stable_top(hits: list[Hit], limit: int) -> list[Hit]:
    """Best first, ties broken by id, cut to ``limit``."""
    return sorted(hits, key=lambda h: (-h.score, h.id))[:limit]


@dataclass
class _Candidate:
    id: str
    collection: str
    score: float


def blend_sparse(query: Sparse, passage: Sparse, weight: float) -> Sparse:
    """BM25 query terms plus ``weight`` times the passage's terms (query2doc-style expansion)."""
    terms = dict(zip(query.indices, query.values, strict=True))
    for index, value in zip(passage.indices, passage.values, strict=True):
        terms[index] = terms.get(index, 0.0) + weight * value
    ordered = sorted(terms)
    return Sparse(indices=ordered, values=[terms[i] for i in ordered])


def group_by_document(ranked: list[EmbeddedChunk], k: int, per_document: int) -> list[EmbeddedChunk]:
    """Documents in the order of their best chunk; each contributes up to ``per_document`` chunks
    (best first) before the next document gets a slot. Cut to ``k``."""
    by_document: dict[tuple[str, str], list[EmbeddedChunk]] = {}
    for chunk in ranked:
        by_document.setdefault((chunk.collection, chunk.document_id), []).append(chunk)
    out: list[EmbeddedChunk] = []
    for chunks in by_document.values():
        out.extend(chunks[:per_document])
        if len(out) >= k:
            break
    return out[:k]


@dataclass
class SearchOutput:
    chunks: list[EmbeddedChunk]  # deduplicated by chunk id, best score kept, best first
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: Collections that failed (missing, engine error): the chunks come from the others.
    unavailable: list[str] = field(default_factory=list)


def hit_to_chunk(hit: Hit, collection: str) -> EmbeddedChunk:
    return EmbeddedChunk.from_payload(hit.payload, point_id=hit.id, collection=collection, score=hit.score)


class QdrantHybridRetriever:
    """Dense (MiniLM) + sparse (BM25) retrieval fused with RRF in the engine, batched per collection."""

    def __init__(
        self,
        store: VectorStore,
        embedder: OnnxSentenceEmbedder,
        bm25: Bm25SparseEncoder,
        collections: list[str],
        mode: SearchMode = "hybrid",
        prefetch_limit: int = 50,
        rrf_k: int = 60,
        k_split: str = "balanced",
        fusion: Literal["rrf", "dbsf"] = "rrf",
        hyde_weight: float = 0.5,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.bm25 = bm25
        self.collections = collections
        self.mode = mode
        self.prefetch_limit = prefetch_limit
        self.rrf_k = rrf_k
        self.k_split = k_split
        self.fusion = fusion
        self.hyde_weight = hyde_weight

    def warm_up(self) -> None:
        self.embedder.warm_up()

    def quota(self, k: int) -> int:
        """k split equally across collections (at least 1 each)."""
        return max(1, math.ceil(k / len(self.collections)))

    def run(
        self,
        queries: list[str],
        k: int,
        author_ids: tuple[str, ...] | None = None,
        mode: SearchMode | None = None,
        hypothetical: str | None = None,
    ) -> SearchOutput:
        """The union over all queries and collections, deduplicated by chunk id keeping the best
        score, then cut to ``k`` following ``k_split``.

        The searches return ids and scores only; payloads are fetched afterwards for the chosen
        ``k`` (one ``retrieve`` per collection), not for every candidate of every query.
        """
        mode = mode or self.mode
        if self.k_split == "relevance" and mode == "hybrid":
            return self._run_relevance(queries, k, author_ids, hypothetical)
        limit = self.quota(k) if self.k_split == "equal" else k
        timings: dict[str, float] = {}
        requests = self._requests(queries, limit, author_ids, mode, hypothetical, timings, with_payload=False)
        t1 = time.perf_counter()
        unavailable: list[str] = []
        by_collection = self._query_all(requests, unavailable)
        best: dict[str, _Candidate] = {}
        for collection, results in zip(self.collections, by_collection, strict=True):
            for hits in results:
                for hit in stable_top(hits, limit):
                    seen = best.get(hit.id)
                    if seen is None or hit.score > seen.score:
                        best[hit.id] = _Candidate(hit.id, collection, hit.score)
        ranked = sorted(best.values(), key=lambda c: (-c.score, c.id))
        chosen = ranked if self.k_split == "equal" else self._select(ranked, k)
        chunks = self._with_payloads(chosen, unavailable)
        timings["search"] = (time.perf_counter() - t1) * 1000
        return SearchOutput(chunks=chunks, timings_ms=timings, unavailable=unavailable)

    def _run_relevance(
        self, queries: list[str], k: int, author_ids: tuple[str, ...] | None, hypothetical: str | None
    ) -> SearchOutput:
        """Slots by relevance across collections, one source in one place.

        Each collection answers a dense and a BM25 list per query. A cosine is comparable across
        collections (one embedder) and a BM25 score nearly so, while a per-collection fusion is not:
        every collection's best hit gets the same RRF score, so each would claim a slot whatever it
        holds. So the lists are merged across collections first, and RRF runs over those global
        ranks (and over the queries, as in RAG-fusion): a collection with nothing relevant ranks
        low everywhere and gives nothing.

        The caller asks for a pool larger than the k it keeps, reranks it, and groups it by
        document (``group_by_document``).
        """
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        dense, sparse = self.encode(queries, "hybrid", hypothetical)
        timings["embedding"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        depth = max(self.prefetch_limit, k)
        requests = [
            SearchRequest(limit=depth + TIE_SLACK, mode="dense", dense=d, author_ids=author_ids, with_payload=False)
            for d in dense
        ] + [
            SearchRequest(limit=depth + TIE_SLACK, mode="sparse", sparse=s, author_ids=author_ids, with_payload=False)
            for s in sparse
        ]
        unavailable: list[str] = []
        by_collection = self._query_all(requests, unavailable)
        fused: dict[str, _Candidate] = {}
        for i in range(len(requests)):
            merged = [
                _Candidate(hit.id, collection, hit.score)
                for collection, results in zip(self.collections, by_collection, strict=True)
                for hit in results[i]
            ]
            merged.sort(key=lambda c: (-c.score, c.id))
            for rank, candidate in enumerate(merged[:depth], start=1):
                seen = fused.setdefault(candidate.id, _Candidate(candidate.id, candidate.collection, 0.0))
                seen.score += 1.0 / (self.rrf_k + rank)
        ranked = sorted(fused.values(), key=lambda c: (-c.score, c.id))
        chunks = self._with_payloads(ranked[:k], unavailable)
        timings["search"] = (time.perf_counter() - t1) * 1000
        return SearchOutput(chunks=chunks, timings_ms=timings, unavailable=unavailable)

    def _with_payloads(self, chosen: list[_Candidate], unavailable: list[str] | None = None) -> list[EmbeddedChunk]:
        wanted: dict[str, list[str]] = {}
        for c in chosen:
            wanted.setdefault(c.collection, []).append(c.id)
        payloads: dict[str, dict[str, dict]] = {}
        for collection, ids in wanted.items():
            try:
                payloads[collection] = self.store.retrieve(collection, ids)
            except Exception:
                if unavailable is None:
                    raise
                logger.warning("collection %s failed while fetching payloads", collection, exc_info=True)
                payloads[collection] = {}
                if collection not in unavailable:
                    unavailable.append(collection)
        # A point deleted between the search and the fetch (a concurrent re-ingest) is dropped.
        return [
            hit_to_chunk(Hit(id=c.id, score=c.score, payload=payloads[c.collection][c.id]), c.collection)
            for c in chosen
            if c.id in payloads[c.collection]
        ]

    def _select(self, ranked: list, k: int) -> list:
        if self.k_split == "global":
            return ranked[:k]
        # balanced: each collection's best ``quota`` first (diverse sources), then the best of the rest.
        quota, taken, picked = self.quota(k), {c: 0 for c in self.collections}, []
        for chunk in ranked:
            if taken.get(chunk.collection, 0) < quota:
                taken[chunk.collection] = taken.get(chunk.collection, 0) + 1
                picked.append(chunk)
        chosen = {c.id for c in picked[:k]}
        rest = [c for c in ranked if c.id not in chosen]
        result = picked[:k] + rest[: max(0, k - len(picked))]
        return sorted(result, key=lambda c: (-c.score, c.id))

    def encode(self, queries: list[str], mode: SearchMode, hypothetical: str | None = None) -> tuple[list, list]:
        """Dense and BM25 query vectors, all texts embedded in one call.

        With a HyDE passage, each query becomes normalise(e(q) + w * e(p)) and q's BM25 terms
        plus w times the passage's terms.
        """
        texts = list(queries) + ([hypothetical] if hypothetical else [])
        dense: list = [None] * len(queries)
        sparse: list = [None] * len(queries)
        if mode != "sparse":
            with trace_span(
                "retrieval.embed",
                attributes={
                    oi.SPAN_KIND: oi.EMBEDDING,
                    oi.EMBEDDING_MODEL_NAME: getattr(self.embedder, "model_id", None),
                    "texts": len(texts),
                },
            ):
                vectors = self.embedder.embed(texts)
            if hypothetical:
                blended = vectors[: len(queries)] + self.hyde_weight * vectors[-1]
                vectors = blended / np.clip(np.linalg.norm(blended, axis=1, keepdims=True), 1e-12, None)
            dense = vectors[: len(queries)].tolist()
        if mode != "dense":
            encoded = self.bm25.embed_queries(texts)
            sparse = encoded[: len(queries)]
            if hypothetical:
                sparse = [blend_sparse(s, encoded[-1], self.hyde_weight) for s in sparse]
        return dense, sparse

    def _requests(
        self,
        queries: list[str],
        limit: int,
        author_ids: tuple[str, ...] | None,
        mode: SearchMode,
        hypothetical: str | None,
        timings: dict[str, float],
        with_payload: bool,
    ) -> list[SearchRequest]:
        t0 = time.perf_counter()
        dense, sparse = self.encode(queries, mode, hypothetical)
        timings["embedding"] = (time.perf_counter() - t0) * 1000
        return [
            SearchRequest(
                limit=limit + TIE_SLACK,
                mode=mode,
                dense=d,
                sparse=s,
                author_ids=author_ids,
                prefetch_limit=max(self.prefetch_limit, limit + TIE_SLACK),
                rrf_k=self.rrf_k,
                fusion=self.fusion,
                with_payload=with_payload,
            )
            for d, s in zip(dense, sparse, strict=True)
        ]

    def _query_all(self, requests: list[SearchRequest], unavailable: list[str] | None = None) -> list[list[list[Hit]]]:
        """One batch per collection: [collection][query] -> hits.

        In turn, not in threads: the engine already parallelises inside a batch, and on 2 cores
        threads measured slower. With ``unavailable`` a collection that fails (deleted, engine
        error) answers no hits and is named there, so the others still answer; when every one
        fails the store is down (``StoreUnavailableError``, 503).
        """
        if unavailable is None:
            return [self.store.query_batch(collection, requests) for collection in self.collections]
        results: list[list[list[Hit]]] = []
        errors: list[Exception] = []
        for collection in self.collections:
            try:
                results.append(self.store.query_batch(collection, requests))
            except Exception as error:
                logger.warning(
                    "collection %s failed: %s", collection, error, exc_info=not isinstance(error, StoreUnavailableError)
                )
                errors.append(error)
                unavailable.append(collection)
                results.append([[] for _ in requests])
        if errors and len(errors) == len(self.collections):
            if isinstance(errors[0], StoreUnavailableError):
                raise errors[0]
            raise StoreUnavailableError(f"every collection failed: {errors[0]}") from errors[0]
        return results

    def search_each(
        self,
        queries: list[str],
        limit: int,
        author_ids: tuple[str, ...] | None = None,
        mode: SearchMode | None = None,
        hypotheticals: list[str | None] | None = None,
    ) -> tuple[list[list[EmbeddedChunk]], dict[str, float]]:
        """Per-query results with payloads (all collections merged, best first), for evaluation.

        ``hypotheticals`` gives each query its own HyDE passage (or None)."""
        mode = mode or self.mode
        timings: dict[str, float] = {"embedding": 0.0}
        if hypotheticals is None or not any(hypotheticals):
            requests = self._requests(queries, limit, author_ids, mode, None, timings, with_payload=True)
        else:
            requests = []
            for query, passage in zip(queries, hypotheticals, strict=True):
                step: dict[str, float] = {}
                requests += self._requests([query], limit, author_ids, mode, passage, step, with_payload=True)
                timings["embedding"] += step["embedding"]
        t1 = time.perf_counter()
        by_collection = [
            [[hit_to_chunk(h, collection) for h in stable_top(hits, limit)] for hits in results]
            for collection, results in zip(self.collections, self._query_all(requests), strict=True)
        ]
        per_query = [
            sorted((c for results in by_collection for c in results[i]), key=lambda c: (-c.score, c.id))
            for i in range(len(queries))
        ]
        timings["search"] = (time.perf_counter() - t1) * 1000
        return per_query, timings

    def close(self) -> None:
        """Nothing to release: the store belongs to the caller."""
