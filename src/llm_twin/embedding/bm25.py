"""BM25 sparse vectors with Qdrant's own encoder, used for both store backends.

The collection applies IDF (``Modifier.Idf``); documents carry term-frequency weights, queries
carry 1.0 per unique term, so the engine computes classic BM25 scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qdrant_edge import Bm25, Bm25Config


@dataclass(frozen=True)
class Sparse:
    indices: list[int]
    values: list[float]


class Bm25SparseEncoder:
    def __init__(self, avg_len: float = 180.0, k: float = 1.2, b: float = 0.75, language: str = "english") -> None:
        self._model = Bm25(Bm25Config(k=k, b=b, avg_len=avg_len, language=language))

    def embed_documents(self, texts: list[str]) -> list[Sparse]:
        return [self._convert(self._model.embed_document(t)) for t in texts]

    def embed_queries(self, texts: list[str]) -> list[Sparse]:
        return [self._convert(self._model.embed_query(t)) for t in texts]

    @staticmethod
    def _convert(vector: Any) -> Sparse:  # a qdrant_edge sparse vector (untyped)
        return Sparse(indices=list(vector.indices), values=list(vector.values))
