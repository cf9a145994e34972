"""Vector store (embedded qdrant-edge or a Qdrant server) and the author registry."""

from __future__ import annotations

from llm_twin.settings import Settings
from llm_twin.store.base import Hit, SearchRequest, StoredPoint, VectorStore


def open_store(settings: Settings) -> VectorStore:
    """The server backend when ``LLM_TWIN_QDRANT_URL`` is set, else the embedded engine under the data dir."""
    if settings.qdrant_url:
        from llm_twin.store.qdrant_server import QdrantServerStore

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantServerStore.connect(
            settings.qdrant_url,
            key,
            settings.qdrant_timeout_s,
            settings.dense_quantization,
            settings.quantization_oversampling,
        )
    from llm_twin.store.edge import EdgeVectorStore

    return EdgeVectorStore(settings.vectors_dir, settings.dense_quantization, settings.quantization_oversampling)


__all__ = ["Hit", "SearchRequest", "StoredPoint", "VectorStore", "open_store"]
