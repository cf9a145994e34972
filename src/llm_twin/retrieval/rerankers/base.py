"""What the reranker backends share: the passage text they score, how scores reorder the candidates,
cross-encoder logits to scores, where a cross-encoder model is looked up and the search weight it is
fused at."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.models import ModelNotFoundError

RERANK_MODEL_ENV = "LLM_TWIN_RERANK_MODEL"
MAX_PAIR_TOKENS = 512
#: The search weight a cross-encoder is fused at when neither the settings nor the model's training
#: chose one. 2, not 1: on 71 held-out SciFact *train* queries every synthetic-only model scored higher
#: at 2 than at 1 (+0.007 to +0.011 nDCG@10; the in-domain one lost 0.011), and so did the demo model
#: on the twin dev set (MRR 0.838 vs 0.834). A model without labelled held-out queries is a
#: synthetic-only one.
DEFAULT_SEARCH_WEIGHT = 2.0
#: RRF constant when a reranker's ranking is fused with the search's (the search's own constant, so
#: one rank step weighs the same in both).
RRF_K = 60

#: How a cross-encoder's scores are combined with the search's: ``score`` (a convex combination of
#: both min-max normalised over the reranked head) or ``rank`` (RRF of the two rankings).
SearchFusion = Literal["score", "rank"]


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


def _min_max(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    spread = float(array.max() - array.min()) if array.size else 0.0
    return (array - array.min()) / spread if spread > 0 else np.zeros_like(array)


def fuse_with_search_score(
    scores: Sequence[float], search_scores: Sequence[float], search_weight: float
) -> list[float]:
    """``minmax(model) + search_weight * minmax(search)`` over the reranked head (same order).

    Unlike RRF this keeps how far apart the candidates are: a passage the model scores far above the
    rest moves up even against the search, and near-ties in the model are settled by the search.
    Min-max per query makes the model's logit scale and the search's fused score comparable (the
    convex combination of Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval").
    A weight of 0 returns the reranker's scores unchanged.
    """
    if search_weight <= 0:
        return [float(s) for s in scores]
    if len(scores) != len(search_scores):
        raise ValueError(f"{len(scores)} reranker scores for {len(search_scores)} search scores")
    fused = _min_max(scores) + search_weight * _min_max(search_scores)
    return [float(f) for f in fused]


def fuse_with_search(
    scores: Sequence[float], chunks: Sequence[EmbeddedChunk], search_weight: float, fusion: SearchFusion
) -> list[float]:
    """The reranker's scores for ``chunks`` (the head, in search order) combined with the search's."""
    if fusion == "rank":
        return fuse_with_search_rank(scores, search_weight)
    return fuse_with_search_score(scores, [c.score for c in chunks], search_weight)


def fusion_description(search_weight: float, fusion: SearchFusion) -> str:
    """The suffix the backends put in their description (empty for the model alone)."""
    if search_weight <= 0:
        return ""
    return f", fused with the search {fusion} at weight {search_weight:g}"


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


def trained_search_weight(directory: Path, fusion: SearchFusion) -> float | None:
    """The search weight a model's own training chose for ``fusion`` on labelled held-out queries
    (``search_weight`` and ``search_fusion`` in its ``training.json``, written by ``llm-twin train
    reranker``); None when it chose none, or chose it for the other fusion."""
    try:
        report = json.loads((Path(directory) / "training.json").read_text(encoding="utf-8"))
        value, chosen_for = report.get("search_weight"), report.get("search_fusion")
    except (OSError, ValueError, AttributeError):
        return None
    if chosen_for != fusion or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)
