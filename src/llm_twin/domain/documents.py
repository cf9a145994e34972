"""Documents (article, post, repository), their chunks and embedded chunks."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from llm_twin.domain.authors import Author

ContentType = Literal["article", "post", "repository"]
CONTENT_TYPES: tuple[ContentType, ...] = ("article", "post", "repository")
POINT_NAMESPACE = uuid.UUID("0b7e5d2c-3f1a-5e4b-8c6d-9a2f1e3b5c7d")


class Document(BaseModel):
    id: str
    content_type: ContentType
    text: str
    authors: list[Author]
    title: str | None = None
    link: str | None = None
    date: str | None = None
    name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """Hash of everything that ends up in the store, so unchanged documents can be skipped."""
        material = json.dumps(
            {
                **self.model_dump(exclude={"authors"}),
                "authors": [(a.id, a.full_name) for a in self.authors],  # not aliases/counts: they evolve
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()


class Chunk(BaseModel):
    document: Document
    index: int
    content: str

    @property
    def id(self) -> str:
        """Deterministic point id: re-ingesting the same content writes the same points."""
        digest = hashlib.sha256(self.content.encode("utf-8")).hexdigest()[:16]
        return str(uuid.uuid5(POINT_NAMESPACE, f"{self.document.id}:{self.index}:{digest}"))


class EmbeddedChunk(BaseModel):
    """A chunk as stored in and returned from the vector store (payload + score)."""

    id: str
    collection: str
    content_type: ContentType
    document_id: str
    chunk_index: int
    content: str
    author_ids: list[str]
    author_full_name: str
    authors: list[str] = Field(default_factory=list)
    title: str | None = None
    link: str | None = None
    date: str | None = None
    name: str | None = None
    score: float = 0.0
    metadata: dict[str, Any] = Field(default_factory=dict)

    def to_context(self) -> str:
        """The chunk as plain text for a prompt (never a repr of this object)."""
        head = [f"type: {self.content_type}"]
        if self.title:
            head.append(f"title: {self.title}")
        head.append(f"author: {self.author_full_name}")
        if self.link:
            head.append(f"link: {self.link}")
        if self.date:
            head.append(f"date: {self.date}")
        return "\n".join(head) + "\n" + self.content.strip()
