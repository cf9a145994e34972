"""The vector-store interface the pipeline uses; two backends implement it (embedded, server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from llm_twin.embedding.bm25 import Sparse

SearchMode = Literal["dense", "sparse", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")
DenseQuantization = Literal["int8", "none"]
#: Scalar int8 quantization clips the outer 1% of components, as Qdrant recommends (both backends).
INT8_QUANTILE = 0.99
DENSE = "dense"
SPARSE = "bm25"
#: Payload fields with a keyword index (filters stay fast as collections grow).
INDEXED_FIELDS = ("author_id", "document_id")


@dataclass(frozen=True)
class StoredPoint:
    id: str
    dense: list[float]
    sparse: Sparse
    payload: dict[str, Any]


@dataclass(frozen=True)
class SearchRequest:
    """One query against one collection. Hybrid fuses dense and BM25 in the engine with RRF."""

    limit: int
    mode: SearchMode = "hybrid"
    dense: list[float] | None = None
    sparse: Sparse | None = None
    #: Only points of these authors (one person's names); None: everyone.
    author_ids: tuple[str, ...] | None = None
    prefetch_limit: int = 50
    rrf_k: int = 60
    fusion: Literal["rrf", "dbsf"] = "rrf"
    #: False returns ids and scores only; the retriever then fetches payloads for the final k alone.
    with_payload: bool = True


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class VectorStore(Protocol):
    backend: str

    def ensure_collections(self, names: list[str], dimension: int) -> None:
        """Write path: create missing collections, apply the configured quantization."""
        ...

    def open_existing(self, names: list[str]) -> None:
        """Read path: open the collections as they are (never rewrites them); raises StoreUnavailableError."""
        ...

    def upsert(self, collection: str, points: list[StoredPoint]) -> None: ...

    def delete_document(self, collection: str, document_id: str) -> None: ...

    def count(self, collection: str) -> int: ...

    def query_batch(self, collection: str, requests: list[SearchRequest]) -> list[list[Hit]]: ...

    def retrieve(self, collection: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Payloads by point id (ids that do not exist are left out)."""
        ...

    def flush(self) -> None:
        """Make what was upserted durable before the ingest ledger records it."""
        ...

    def optimize(self) -> None: ...

    def close(self) -> None: ...
