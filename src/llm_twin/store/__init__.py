"""Vector store (embedded qdrant-edge or a Qdrant server) and the author registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_twin.domain.authors import Author
from llm_twin.errors import StoreUnavailableError
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


def read_authors(settings: Settings, store: VectorStore | None = None) -> list[Author]:
    """Everyone in the registry, read once (nothing is kept open, so a later ingest shows up at the next read).

    With a Qdrant server the registry is read from Qdrant, through ``store`` when the caller has one
    open, else through a connection of its own: a replica or a CLI without a local file sees what
    any ingest wrote. The embedded engine's registry is the sqlite file, opened read-only.
    """
    if store is None and settings.qdrant_url:
        own = open_store(settings)
        try:
            return read_authors(settings, own)
        finally:
            own.close()
    shared = registry_in_store(store, settings, read_only=True) if store is not None else None
    if shared is not None:
        return shared.authors()
    if not settings.registry_path.exists():
        raise StoreUnavailableError(
            f"no author registry at {settings.registry_path}: nothing is ingested yet (llm-twin ingest)"
        )
    registry = AuthorRegistry(settings.registry_path, read_only=True)
    try:
        return registry.authors()
    finally:
        registry.close()


__all__ = [
    "Hit",
    "Registry",
    "SearchRequest",
    "StoredPoint",
    "VectorStore",
    "open_registry",
    "open_store",
    "read_authors",
]
