"""Documents (article, post, repository), their chunks and embedded chunks."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from llm_twin.domain.authors import Author
from llm_twin.errors import LLMTwinError

ContentType = Literal["article", "post", "repository"]
CONTENT_TYPES: tuple[ContentType, ...] = ("article", "post", "repository")
POINT_NAMESPACE = uuid.UUID("0b7e5d2c-3f1a-5e4b-8c6d-9a2f1e3b5c7d")


class PayloadError(LLMTwinError):
    """A stored point lacks a field every point written by ``llm-twin ingest`` has."""


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

    @classmethod
    def from_chunk(cls, chunk: Chunk, collection: str, metadata: Mapping[str, Any] | None = None) -> EmbeddedChunk:
        """The chunk as it is stored; ``metadata`` adds to the document's (e.g. the embedding model)."""
        doc = chunk.document
        return cls(
            id=chunk.id,
            collection=collection,
            content_type=doc.content_type,
            document_id=doc.id,
            chunk_index=chunk.index,
            content=chunk.content,
            author_ids=[a.id for a in doc.authors],
            author_full_name=", ".join(a.full_name for a in doc.authors),
            authors=[a.full_name for a in doc.authors],
            title=doc.title,
            link=doc.link,
            date=doc.date,
            name=doc.name,
            metadata={**doc.metadata, **(metadata or {})},
        )

    def to_payload(self) -> dict[str, Any]:
        """The stored payload. Its key names are the store's format: existing stores are read with
        ``from_payload``, so a key is never renamed here (``author_id`` holds the list of ids)."""
        return {
            "chunk_id": self.id,
            "document_id": self.document_id,
            "chunk_index": self.chunk_index,
            "content_type": self.content_type,
            "collection": self.collection,
            "content": self.content,
            "author_id": list(self.author_ids),
            "author_full_name": self.author_full_name,
            "authors": list(self.authors),
            "title": self.title,
            "link": self.link,
            "date": self.date,
            "name": self.name,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_payload(
        cls, payload: Mapping[str, Any], *, point_id: str, collection: str, score: float = 0.0
    ) -> EmbeddedChunk:
        """A stored point back as a chunk, found in ``collection`` with ``score``.

        A missing ``content_type`` is an error rather than a guess: it is shown with every source
        and in the prompt, so a wrong one would be a wrong fact. Other fields are optional.
        """
        content_type = payload.get("content_type")
        if content_type not in CONTENT_TYPES:
            raise PayloadError(
                f"point {point_id} in {collection!r} has content_type {content_type!r}; "
                f"expected one of {', '.join(CONTENT_TYPES)}"
            )
        return cls(
            id=str(payload.get("chunk_id") or point_id),
            collection=collection,
            content_type=content_type,
            document_id=str(payload.get("document_id", "")),
            chunk_index=int(payload.get("chunk_index", 0)),
            content=payload.get("content", ""),
            author_ids=list(payload.get("author_id") or []),
            author_full_name=payload.get("author_full_name", ""),
            authors=list(payload.get("authors") or []),
            title=payload.get("title"),
            link=payload.get("link"),
            date=payload.get("date"),
            name=payload.get("name"),
            score=score,
            metadata=dict(payload.get("metadata") or {}),
        )
