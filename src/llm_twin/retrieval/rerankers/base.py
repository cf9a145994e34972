"""What the reranker backends share: the passage text they score, how scores reorder the candidates,
cross-encoder logits to scores, and where a cross-encoder model is looked up."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.models import ModelNotFoundError

RERANK_MODEL_ENV = "LLM_TWIN_RERANK_MODEL"
MAX_PAIR_TOKENS = 512
#: RRF constant when a reranker's ranking is fused with the search's (the search's own constant, so
#: one rank step weighs the same in both).
RRF_K = 60


class RerankerConfigError(ModelNotFoundError):
    """The configured reranker cannot be built; the message names the setting to change."""


def passage_text(chunk: EmbeddedChunk) -> str:
    # Title + text, as in the BEIR reranking setup: titles carry a lot of the topic.
    return f"{chunk.title}\n{chunk.content}" if chunk.title else chunk.content


def apply_scores(
    chunks: Sequence[EmbeddedChunk], scores: Sequence[float], top_n: int, top_k: int
) -> list[EmbeddedChunk]:
    """Scored head (best first, stable on ties) then the unscored tail in search order, cut to ``top_k``."""
    head = [
        chunk.model_copy(
            update={
                "score": float(score),
                "metadata": {**chunk.metadata, "search_score": chunk.score, "rerank_score": float(score)},
            }
        )
        for chunk, score in zip(chunks[:top_n], scores, strict=True)
    ]
    order = sorted(range(len(head)), key=lambda i: -head[i].score)  # sorted() is stable: ties keep search order
    ranked = [head[i] for i in order] + list(chunks[top_n:])
    return ranked[:top_k]


def fuse_with_search_rank(scores: Sequence[float], search_weight: float, k: int = RRF_K) -> list[float]:
    """RRF of the reranker's ranking and the search ranking (``scores`` are in search order).

    A weight of 0 returns the reranker's scores unchanged. Above 0, a candidate's score is
    ``1/(k + its reranker rank) + search_weight/(k + its search rank)``: a reranker that knows less
    than the search about a corpus (a small model trained on little data) cannot undo it, while
    one it agrees with still reorders.
    """
    if search_weight <= 0:
        return [float(s) for s in scores]
    by_score = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    rank = {index: position for position, index in enumerate(by_score)}
    return [1.0 / (k + rank[i]) + search_weight / (k + i) for i in range(len(scores))]


def logits_to_scores(logits: np.ndarray) -> np.ndarray:
    """[n] or [n, 1] -> the logit; [n, 2] -> logit(relevant) - logit(irrelevant)."""
    if logits.ndim == 1:
        return logits
    if logits.ndim == 2 and logits.shape[1] == 1:
        return logits[:, 0]
    if logits.ndim == 2 and logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ValueError(f"cross-encoder output of shape {logits.shape} is not [n], [n, 1] or [n, 2]")


def resolve_cross_encoder(name: str, models_dir: Path) -> Path:
    """A local directory, or ``models_dir / <id>`` for an id like ``cross-encoder/ms-marco-MiniLM-L-6-v2``.

    Nothing is downloaded: place an ONNX export (model.onnx or onnx/model.onnx + tokenizer.json),
    or a sentence-transformers directory when that package is installed, at one of those places.
    """
    for candidate in (Path(name).expanduser(), Path(models_dir) / name):
        if candidate.is_dir():
            return candidate
    raise ModelNotFoundError(
        f"cross-encoder {name!r} is neither a local directory nor under {Path(models_dir) / name} "
        f"(no hub downloads here: put an ONNX export there, or set {RERANK_MODEL_ENV} to a directory)"
    )
