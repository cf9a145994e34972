"""The fallback ``cross-encoder`` backend, for a model directory without ONNX files."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.retrieval.rerankers.base import (
    MAX_PAIR_TOKENS,
    SearchFusion,
    apply_scores,
    fuse_with_search,
    fusion_description,
    logits_to_scores,
    passage_text,
)


class SentenceTransformersCrossEncoderReranker:
    """``cross-encoder`` backend through ``sentence_transformers.CrossEncoder`` (optional, needs torch).

    Used for a model directory without ONNX files, or a hub id that is not found locally, when
    sentence-transformers is installed; the project does not depend on it (the ONNX path covers the
    same models without torch).
    """

    name = "cross-encoder"

    def __init__(
        self,
        directory: Path | str,
        *,
        top_n: int = 20,
        batch_size: int = 16,
        max_length: int = MAX_PAIR_TOKENS,
        search_weight: float = 0.0,
        fusion: SearchFusion = "score",
    ) -> None:
        # A local directory, or a hub id such as cross-encoder/ms-marco-MiniLM-L-4-v2 (kept as typed).
        self.directory = directory if isinstance(directory, Path) else str(directory)
        self.top_n = top_n
        self.batch_size = batch_size
        self.max_length = max_length
        self.search_weight = search_weight  # > 0: combined with the search's scores (``fuse_with_search``)
        self.fusion: SearchFusion = fusion
        fused = fusion_description(search_weight, fusion)
        self.description = f"cross-encoder ({self.directory}, sentence-transformers{fused})"
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(str(self.directory), max_length=self.max_length)

    def run(self, query: str, chunks: list[EmbeddedChunk], top_k: int) -> list[EmbeddedChunk]:
        self.warm_up()
        head = chunks[: self.top_n]
        if not head:
            return list(chunks[:top_k])
        raw = self._model.predict([(query, passage_text(c)) for c in head], batch_size=self.batch_size)
        scores = logits_to_scores(np.asarray(raw, dtype=np.float32))
        fused = fuse_with_search(scores.tolist(), head, self.search_weight, self.fusion)
        return apply_scores(chunks, fused, self.top_n, top_k)
