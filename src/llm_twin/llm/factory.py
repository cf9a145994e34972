"""Build the generation LLM and the helper LLM (query expansion, self-query) from settings.

Backends are imported lazily so a deployment only needs the dependencies of the backend it uses
(llama-cpp-python for the embedded model, boto3 for SageMaker).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from llm_twin.errors import LLMUnavailableError
from llm_twin.llm.base import LLMClient

if TYPE_CHECKING:
    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)


#: What ``helper_llm_local_model=auto`` picks: a model three times smaller than the default generation
#: model writes the reformulations ~2.5x faster, and query expansion is paid before the first token.
SMALL_HELPER_MODEL = "qwen2.5-coder-0.5b-instruct"
_SMALL_HELPER_PAIRS_WITH = frozenset({"qwen2.5-coder-1.5b-instruct"})


def resolve_helper_model(settings: Settings) -> str | None:
    """The helper's own GGUF for the llama-cpp backend, or None to share the generation model.

    ``auto`` picks ``SMALL_HELPER_MODEL`` when it is installed (``make install-models``) and the
    generation model is one it is smaller than; anything else (a custom or a tiny generation
    model, the 0.5B package missing) shares the generation model, which costs no extra memory.
    """
    choice = settings.helper_llm_local_model
    if choice != "auto":
        return choice
    from llm_twin.models import packaged_gguf_available

    if settings.llm_model.lower() in _SMALL_HELPER_PAIRS_WITH and packaged_gguf_available(
        SMALL_HELPER_MODEL, settings.models_dir
    ):
        return SMALL_HELPER_MODEL
    return None


def build_llm(settings: Settings) -> LLMClient:
    """The generation LLM for ``settings.llm_backend``; not warmed up (call ``warm_up()`` at startup)."""
    backend = settings.llm_backend
    if backend == "llama-cpp":
        from llm_twin.llm.llama_cpp import LlamaCppClient

        return LlamaCppClient.from_settings(settings)
    if backend == "sagemaker":
        from llm_twin.llm.sagemaker import SagemakerTGIClient

        return SagemakerTGIClient(settings)
    if backend == "openai":
        from llm_twin.llm.openai_compat import OpenAICompatibleClient

        return OpenAICompatibleClient.from_settings(settings)
    raise LLMUnavailableError(f"unknown LLM backend {backend!r}")


def build_helper_llm(settings: Settings) -> LLMClient | None:
    """The small helper LLM, or None when disabled (callers then skip expansion / LLM self-query).

    ``llama-cpp`` reuses the generation GGUF unless ``helper_llm_local_model`` names another
    (``auto``: see ``resolve_helper_model``):
    ``get_llama`` shares one loaded model per (path, n_ctx), so the helper then costs no extra
    memory, and both clients queue on the same lock. The helper waits at most
    ``helper_llm_timeout_s`` for that lock, so retrieval can degrade (e.g. skip expansion) instead
    of stalling behind long generations. A smaller helper model writes reformulations faster.
    """
    backend = settings.helper_llm_backend
    if backend == "none":
        return None
    if backend == "llama-cpp":
        from llm_twin.llm.llama_cpp import LlamaCppClient

        model = resolve_helper_model(settings)
        logger.info("helper LLM: %s", model or f"{settings.llm_model} (shared with generation)")
        return LlamaCppClient.from_settings(settings, model=model, queue_timeout_s=settings.helper_llm_timeout_s)
    if backend == "openai":
        from llm_twin.llm.openai_compat import OPENAI_BASE_URL, OpenAICompatibleClient

        key = (
            settings.helper_llm_api_key.get_secret_value()
            if settings.helper_llm_api_key
            else os.environ.get("OPENAI_API_KEY")
        )
        return OpenAICompatibleClient(
            settings.helper_llm_base_url or OPENAI_BASE_URL,
            settings.helper_llm_model,
            api_key=key,
            timeout_s=settings.helper_llm_timeout_s,
            max_retries=settings.llm_max_retries,
            context_window=settings.llm_n_ctx,
        )
    raise LLMUnavailableError(f"unknown helper LLM backend {backend!r}")
