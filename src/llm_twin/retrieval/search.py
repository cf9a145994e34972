"""Batched hybrid search over the three collections.

All queries are embedded in one call, and each collection gets one batch request holding every
query (dense, BM25 or hybrid with in-engine RRF), instead of one call per query x collection.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.embedding.bm25 import Bm25SparseEncoder
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.store.base import Hit, SearchMode, SearchRequest, VectorStore


@dataclass
class SearchOutput:
    chunks: list[EmbeddedChunk]  # deduplicated by chunk id, best score kept, best first
    timings_ms: dict[str, float] = field(default_factory=dict)


def hit_to_chunk(hit: Hit, collection: str) -> EmbeddedChunk:
    p = hit.payload
    return EmbeddedChunk(
        id=str(p.get("chunk_id") or hit.id),
        collection=collection,
        content_type=p.get("content_type", "article"),
        document_id=str(p.get("document_id", "")),
        chunk_index=int(p.get("chunk_index", 0)),
        content=p.get("content", ""),
        author_ids=list(p.get("author_id") or []),
        author_full_name=p.get("author_full_name", ""),
        authors=list(p.get("authors") or []),
        title=p.get("title"),
        link=p.get("link"),
        date=p.get("date"),
        name=p.get("name"),
        score=hit.score,
        metadata=dict(p.get("metadata") or {}),
    )


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
        fusion: str = "rrf",
        parallel: bool = False,
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
        # One batch per collection. Running the three in threads helps on many cores only: the
        # engine already parallelises inside a batch, and on 2 cores threads measured slower.
        self._pool = ThreadPoolExecutor(max_workers=len(collections), thread_name_prefix="search") if parallel else None

    def warm_up(self) -> None:
        self.embedder.warm_up()

    def quota(self, k: int) -> int:
        """k split equally across collections (at least 1 each), as the seed workflow does."""
        return max(1, math.ceil(k / len(self.collections)))

    def run(
        self,
        queries: list[str],
        k: int,
        author_id: str | None = None,
        mode: SearchMode | None = None,
    ) -> SearchOutput:
        """The union over all queries and collections, deduplicated by chunk id keeping the best
        score, then cut to ``k`` following ``k_split``."""
        limit = self.quota(k) if self.k_split == "equal" else k
        per_query, timings = self.search_each(queries, limit, author_id, mode)
        t0 = time.perf_counter()
        best: dict[str, EmbeddedChunk] = {}
        for chunk in (c for chunks in per_query for c in chunks):
            if chunk.id not in best or chunk.score > best[chunk.id].score:
                best[chunk.id] = chunk
        ranked = sorted(best.values(), key=lambda c: c.score, reverse=True)
        chunks = ranked if self.k_split == "equal" else self._select(ranked, k)
        timings["search"] += (time.perf_counter() - t0) * 1000
        return SearchOutput(chunks=chunks, timings_ms=timings)

    def _select(self, ranked: list[EmbeddedChunk], k: int) -> list[EmbeddedChunk]:
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
        return sorted(result, key=lambda c: c.score, reverse=True)

    def search_each(
        self, queries: list[str], limit: int, author_id: str | None = None, mode: SearchMode | None = None
    ) -> tuple[list[list[EmbeddedChunk]], dict[str, float]]:
        """Per-query results (all collections merged, best first): one embedding call, one batch per collection."""
        mode = mode or self.mode
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        dense = self.embedder.embed(queries).tolist() if mode != "sparse" else [None] * len(queries)
        sparse = self.bm25.embed_queries(queries) if mode != "dense" else [None] * len(queries)
        timings["embedding"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        requests = [
            SearchRequest(
                limit=limit,
                mode=mode,
                dense=d,
                sparse=s,
                author_id=author_id,
                prefetch_limit=max(self.prefetch_limit, limit),
                rrf_k=self.rrf_k,
                fusion=self.fusion,  # type: ignore[arg-type]
            )
            for d, s in zip(dense, sparse)
        ]

        def search(collection: str) -> list[list[EmbeddedChunk]]:
            return [[hit_to_chunk(h, collection) for h in hits] for hits in self.store.query_batch(collection, requests)]

        if self._pool is not None and len(self.collections) > 1:
            by_collection = list(self._pool.map(search, self.collections))
        else:
            by_collection = [search(collection) for collection in self.collections]
        per_query = [
            sorted((c for results in by_collection for c in results[i]), key=lambda c: c.score, reverse=True)
            for i in range(len(queries))
        ]
        timings["search"] = (time.perf_counter() - t1) * 1000
        return per_query, timings

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
