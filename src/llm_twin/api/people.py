"""The people in the author registry, read per call (``GET /authors`` and the MCP authors resource)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llm_twin.api.service import ServiceState
from llm_twin.domain.authors import Author
from llm_twin.domain.people import link_people, people_rows, read_aliases
from llm_twin.settings import Settings
from llm_twin.store import read_authors

AuthorsReader = Callable[[], list[Author]]


def read_people(settings: Settings, reader: AuthorsReader | None = None) -> list[dict[str, Any]]:
    """Every person in the author registry, with the names they write under (read per call: an
    ingest while the server runs shows up at the next read); the rows of ``llm-twin authors --json``.

    ``reader``: the running pipeline's (a Qdrant server's registry, read through its open client);
    None reads the registry the settings name on its own.
    """
    aliases = read_aliases(settings.aliases_file)
    everyone = reader() if reader is not None else read_authors(settings)
    return people_rows(everyone, link_people(everyone, aliases))


async def registry_reader(service: ServiceState) -> AuthorsReader | None:
    """With a Qdrant server, the running pipeline's reader (its open client; waits for the start-up);
    None for the embedded sqlite registry, which is read without waiting for the models."""
    if not service.settings.qdrant_url:
        return None
    return (await service.require_pipeline()).retrieval.authors
