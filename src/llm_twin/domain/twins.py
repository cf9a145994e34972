"""The twins one can talk to, as model ids: ``twin`` (every author) and ``twin-<name>`` per person.

Chat clients choose a "model"; here choosing one chooses whose writing answers. An id is a slug of
the person's name, so it stays the same across re-ingests and replicas.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from llm_twin.domain.authors import Author, normalize_name
from llm_twin.errors import NotFoundError

ALL_AUTHORS_MODEL = "twin"
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


class UnknownTwinError(NotFoundError):
    code = "model_not_found"


def name_slug(name: str) -> str:
    """``"Łukasz Langa"`` -> ``"lukasz-langa"``; empty for a name without Latin letters or digits."""
    return _NOT_SLUG.sub("-", normalize_name(name)).strip("-")


@dataclass(frozen=True)
class Twin:
    model_id: str
    author: Author | None  # None: every author (self-query picks one per question)


class TwinCatalog:
    """Model ids for a set of people (one ``Author`` per person, as the author resolver lists them)."""

    def __init__(self, people: Iterable[Author]) -> None:
        self._twins: dict[str, Twin] = {ALL_AUTHORS_MODEL: Twin(ALL_AUTHORS_MODEL, None)}
        # Sorted by id so that two people with one slug get the same suffixes on every replica.
        for person in sorted(people, key=lambda a: (name_slug(a.full_name), a.id)):
            slug = name_slug(person.full_name) or person.id[:8]
            model_id = f"{ALL_AUTHORS_MODEL}-{slug}"
            if model_id in self._twins:
                model_id = f"{model_id}-{person.id[:8]}"
            self._twins[model_id] = Twin(model_id, person)

    def __iter__(self) -> Iterator[Twin]:
        return iter(self._twins.values())

    def __len__(self) -> int:
        return len(self._twins)

    def get(self, model_id: str) -> Twin:
        """The twin of ``model_id``, or ``UnknownTwinError`` (404, field ``model``)."""
        twin = self._twins.get(model_id)
        if twin is None:
            raise UnknownTwinError(
                "model", f"the model {model_id!r} does not exist; GET /v1/models lists the twins ({len(self)})"
            )
        return twin
