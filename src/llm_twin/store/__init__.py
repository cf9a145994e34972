"""Vector store (embedded qdrant-edge or a Qdrant server) and the author registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_twin.settings import Settings
from llm_twin.store.base import Hit, SearchRequest, StoredPoint, VectorStore
from llm_twin.store.registry import AuthorRegistry, Registry

if TYPE_CHECKING:
    from llm_twin.store.qdrant_registry import QdrantAuthorRegistry


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


def registry_in_store(store: VectorStore, settings: Settings, read_only: bool = False) -> QdrantAuthorRegistry | None:
    """With a Qdrant server the registry and the ledger live in it (stateless replicas); None for
    the embedded engine, whose registry is the sqlite file beside the vectors."""
    from llm_twin.store.qdrant_server import QdrantServerStore

    if not isinstance(store, QdrantServerStore):
        return None
    from llm_twin.store.qdrant_registry import QdrantAuthorRegistry

    return QdrantAuthorRegistry(store.client, settings.registry_collection_prefix, read_only=read_only)


def open_registry(settings: Settings, store: VectorStore, read_only: bool = False) -> Registry:
    """The registry that goes with ``store``: in Qdrant for the server backend, else sqlite."""
    return registry_in_store(store, settings, read_only) or AuthorRegistry(settings.registry_path, read_only)


__all__ = ["Hit", "Registry", "SearchRequest", "StoredPoint", "VectorStore", "open_registry", "open_store"]
