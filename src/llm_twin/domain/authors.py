"""Authors: a stable id derived from the normalised full name, plus aliases (git handles)."""

from __future__ import annotations

import re
import unicodedata
import uuid

from pydantic import BaseModel, Field

# Fixed namespace so ids are stable across machines and re-ingests.
AUTHOR_NAMESPACE = uuid.UUID("6f1c2a4e-8d3b-5b7a-9c0e-2f4d6b8a1c3e")
_SPACE = re.compile(r"\s+")


def normalize_name(name: str) -> str:
    """Case-, accent- and whitespace-insensitive form of a name ("Łukasz  Langa" -> "lukasz langa")."""
    text = unicodedata.normalize("NFKD", name.replace("ł", "l").replace("Ł", "L").replace("ø", "o").replace("Ø", "O"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _SPACE.sub(" ", text.casefold()).strip()


def author_id(full_name: str) -> str:
    return str(uuid.uuid5(AUTHOR_NAMESPACE, normalize_name(full_name)))


class Author(BaseModel):
    id: str
    full_name: str
    aliases: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict, description="Documents per content type.")

    @classmethod
    def from_name(cls, full_name: str) -> Author:
        return cls(id=author_id(full_name), full_name=full_name.strip())
