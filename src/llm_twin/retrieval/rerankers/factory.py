"""Build the reranker the settings ask for; a configured model that cannot be found is an error."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.llm.base import LLMClient
from llm_twin.models import ModelNotFoundError, find_onnx_files
from llm_twin.retrieval.rerankers.base import (
    DEFAULT_SEARCH_WEIGHT,
    RERANK_MODEL_ENV,
    RerankerConfigError,
    resolve_cross_encoder,
    trained_search_weight,
)
from llm_twin.retrieval.rerankers.llm_yes_no import LlmYesNoReranker
from llm_twin.retrieval.rerankers.none import NoopReranker
from llm_twin.retrieval.rerankers.onnx_cross_encoder import OnnxCrossEncoderReranker
from llm_twin.retrieval.rerankers.sentence_embedding import DEFAULT_TOP_N, SentenceEmbeddingReranker
from llm_twin.retrieval.rerankers.st_cross_encoder import SentenceTransformersCrossEncoderReranker
from llm_twin.retrieval.types import Reranker

if TYPE_CHECKING:
    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)


def find_local_cross_encoder(models_dir: Path) -> Path | None:
    """First directory under ``models_dir/cross-encoder/`` holding an ONNX export, by name."""
    root = Path(models_dir) / "cross-encoder"
    if not root.is_dir():
        return None
    for candidate in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            find_onnx_files(candidate, model_id=candidate.name)
        except ModelNotFoundError:
            continue
        return candidate
    return None


def _sentence_transformers_installed() -> bool:
    try:
        import sentence_transformers  # noqa: F401  (optional backend)
    except ImportError:
        return False
    return True


def search_weight_for(settings: Settings, directory: Path | None) -> float:
    """The weight a cross-encoder's scores are fused with the search's at: the setting when given,
    else the one the model's training chose on labelled held-out queries, else the default."""
    if settings.rerank_search_weight is not None:
        return settings.rerank_search_weight
    trained = trained_search_weight(directory, settings.rerank_fusion) if directory is not None else None
    return DEFAULT_SEARCH_WEIGHT if trained is None else trained


def _cross_encoder(model: str, settings: Settings) -> Reranker:
    try:
        directory = resolve_cross_encoder(model, settings.models_dir)
    except ModelNotFoundError as missing:
        # Not here: a hub id (the reference's cross-encoder/ms-marco-MiniLM-L-4-v2) that
        # sentence-transformers downloads when it is installed and the hub is reachable.
        if not _sentence_transformers_installed():
            raise missing from None
        return SentenceTransformersCrossEncoderReranker(
            model,
            top_n=settings.rerank_top_n,
            search_weight=search_weight_for(settings, None),
            fusion=settings.rerank_fusion,
        )
    search_weight = search_weight_for(settings, directory)
    try:
        find_onnx_files(directory, model_id=model)
    except ModelNotFoundError as onnx_error:
        if not _sentence_transformers_installed():
            raise RerankerConfigError(
                f"{onnx_error}; export the cross-encoder to ONNX (model.onnx + tokenizer.json) "
                f"or install sentence-transformers ({RERANK_MODEL_ENV}={model})"
            ) from onnx_error
        return SentenceTransformersCrossEncoderReranker(
            directory,
            top_n=settings.rerank_top_n,
            search_weight=search_weight,
            fusion=settings.rerank_fusion,
        )
    return OnnxCrossEncoderReranker(
        model,
        models_dir=settings.models_dir,
        top_n=settings.rerank_top_n,
        search_weight=search_weight,
        fusion=settings.rerank_fusion,
    )


def build_reranker(
    settings: Settings, helper_llm: LLMClient | None = None, embedder: OnnxSentenceEmbedder | None = None
) -> Reranker:
    """The reranker for ``settings.rerank_backend`` (not warmed up).

    ``auto``: the cross-encoder when ``rerank_model`` is set or one is found under
    ``models_dir/cross-encoder/*``; otherwise the sentence-embedding reranker over ``embedder``
    (the retrieval embedder: no model to install), or ``none`` without one. What was chosen is
    logged and reported in every response. A configured model that cannot be found is an error,
    never a silent fallback.
    """
    backend = settings.rerank_backend
    if backend == "none":
        return NoopReranker("LLM_TWIN_RERANK_BACKEND=none")
    if backend == "sentence-embedding":
        if embedder is None:
            raise RerankerConfigError("LLM_TWIN_RERANK_BACKEND=sentence-embedding needs the retrieval embedder")
        return SentenceEmbeddingReranker(
            embedder, top_n=min(settings.rerank_top_n, DEFAULT_TOP_N), relative_floor=settings.rerank_relative_floor
        )
    if backend == "llm":
        if helper_llm is None:
            raise RerankerConfigError(
                "LLM_TWIN_RERANK_BACKEND=llm needs a helper LLM (LLM_TWIN_HELPER_LLM_BACKEND is none)"
            )
        return LlmYesNoReranker(helper_llm, top_n=settings.rerank_top_n)
    model = settings.rerank_model
    if model is None:
        found = find_local_cross_encoder(settings.models_dir)
        if found is not None:
            model = str(found)
        elif backend == "cross-encoder":
            raise RerankerConfigError(
                f"LLM_TWIN_RERANK_BACKEND=cross-encoder needs {RERANK_MODEL_ENV} (a directory with model.onnx + "
                f"tokenizer.json, or an id under {settings.models_dir}); none found under "
                f"{settings.models_dir / 'cross-encoder'}"
            )
        else:
            reason = f"no cross-encoder configured ({RERANK_MODEL_ENV}) or found under {settings.models_dir / 'cross-encoder'}"
            if embedder is not None:
                chosen = SentenceEmbeddingReranker(
                    embedder,
                    top_n=min(settings.rerank_top_n, DEFAULT_TOP_N),
                    relative_floor=settings.rerank_relative_floor,
                )
                logger.info("rerank: %s (%s)", chosen.description, reason)
                return chosen
            logger.warning("rerank: none (%s)", reason)
            return NoopReranker(reason)
    reranker = _cross_encoder(model, settings)
    logger.info("rerank: %s", reranker.description)
    return reranker
