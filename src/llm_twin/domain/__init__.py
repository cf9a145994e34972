"""Plain data types and rules shared by every stage: authors, documents, chunks and their stored
payload, and the limits of a question."""

from llm_twin.domain.authors import Author, author_id, normalize_name
from llm_twin.domain.documents import Chunk, ContentType, Document, EmbeddedChunk

__all__ = ["Author", "Chunk", "ContentType", "Document", "EmbeddedChunk", "author_id", "normalize_name"]
