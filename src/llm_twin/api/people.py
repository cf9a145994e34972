"""The people in the author registry, read per call (``GET /authors`` and the MCP authors resource)."""

from __future__ import annotations

from typing import Any

from llm_twin.domain.people import link_people, people_rows, read_aliases
from llm_twin.errors import StoreUnavailableError
from llm_twin.settings import Settings
from llm_twin.store.registry import AuthorRegistry


def read_people(settings: Settings) -> list[dict[str, Any]]:
    """Every person in the author registry, with the names they write under (read-only, per call:
    an ingest while the server runs shows up at the next read); the rows of ``llm-twin authors --json``."""
    if not settings.registry_path.exists():
        raise StoreUnavailableError(f"no author registry at {settings.registry_path}")
    aliases = read_aliases(settings.aliases_file)
    registry = AuthorRegistry(settings.registry_path, read_only=True)
    try:
        everyone = registry.authors()
    finally:
        registry.close()
    return people_rows(everyone, link_people(everyone, aliases))
