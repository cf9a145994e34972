"""The author registry and the ingest ledger in Qdrant itself (server backend): two payload-only
collections next to the vectors, so API replicas keep no state of their own and an ingest worker
anywhere skips what any other one wrote. Same methods and meaning as the sqlite ``AuthorRegistry``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from qdrant_client import QdrantClient, models

from llm_twin.domain.authors import Author, normalize_name

#: Point ids of ledger rows: one per (content type, document id).
_LEDGER_NAMESPACE = uuid.UUID("8e1f6c0e-3f1a-4c53-9d55-6f7b1b7a2f10")
_PAGE = 1024
_COUNT_KEYS = {"article": "articles", "post": "posts", "repository": "repositories"}


def _ledger_id(content_type: str, document_id: str) -> str:
    return str(uuid.uuid5(_LEDGER_NAMESPACE, f"{content_type}\x00{document_id}"))


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


class QdrantAuthorRegistry:
    """``{prefix}authors`` (one point per author) and ``{prefix}documents`` (one per stored document)."""

    def __init__(self, client: QdrantClient, prefix: str = "llm_twin_", read_only: bool = False) -> None:
        self.client = client
        self.read_only = read_only
        self.authors_collection = f"{prefix}authors"
        self.documents_collection = f"{prefix}documents"
        # Read-modify-write of aliases and counts within this process; across processes the last
        # writer of an author wins, which ingest accepts (aliases are merged again on the next run).
        self._lock = threading.Lock()
        self._ready = False

    def _ensure(self) -> bool:
        """Whether the collections exist; the write path creates them."""
        if self._ready:
            return True
        missing = [
            name
            for name in (self.authors_collection, self.documents_collection)
            if not self.client.collection_exists(name)
        ]
        if missing and self.read_only:
            return False
        for name in missing:
            self.client.create_collection(name, vectors_config={})
        for field_name in ("content_type", "norm_name"):
            collection = self.authors_collection if field_name == "norm_name" else self.documents_collection
            self.client.create_payload_index(collection, field_name, models.PayloadSchemaType.KEYWORD)
        self._ready = True
        return True

    def close(self) -> None:
        return None  # the client belongs to the vector store, which closes it

    def _scroll(self, collection: str, flt: models.Filter | None = None) -> Iterator[dict[str, Any]]:
        if not self._ensure():
            return
        offset: Any = None
        while True:
            points, offset = self.client.scroll(
                collection, scroll_filter=flt, limit=_PAGE, offset=offset, with_payload=True, with_vectors=False
            )
            for point in points:
                yield dict(point.payload or {})
            if offset is None:
                return

    # --- reads ----------------------------------------------------------------------------
    @staticmethod
    def _author(payload: dict[str, Any]) -> Author:
        return Author(
            id=payload["id"],
            full_name=payload["full_name"],
            aliases=list(payload.get("aliases", [])),
            counts=dict(payload.get("counts", {})),
        )

    def authors(self) -> list[Author]:
        return sorted((self._author(p) for p in self._scroll(self.authors_collection)), key=lambda a: a.full_name)

    def get(self, author_id: str) -> Author | None:
        if not self._ensure():
            return None
        records = self.client.retrieve(self.authors_collection, [author_id], with_payload=True)
        return self._author(dict(records[0].payload or {})) if records else None

    def find_by_name(self, name: str) -> Author | None:
        found = next(
            self._scroll(self.authors_collection, models.Filter(must=[_match("norm_name", normalize_name(name))])),
            None,
        )
        return self._author(found) if found else None

    def _document(self, content_type: str, document_id: str) -> dict[str, Any] | None:
        if not self._ensure():
            return None
        records = self.client.retrieve(
            self.documents_collection, [_ledger_id(content_type, document_id)], with_payload=True
        )
        return dict(records[0].payload or {}) if records else None

    def document_hashes(self, content_type: str) -> dict[str, str]:
        rows = self._scroll(self.documents_collection, models.Filter(must=[_match("content_type", content_type)]))
        return {row["id"]: row["content_hash"] for row in rows}

    def document_hash(self, content_type: str, document_id: str) -> str | None:
        row = self._document(content_type, document_id)
        return str(row["content_hash"]) if row else None

    def document_chunks(self, content_type: str, document_id: str) -> int:
        row = self._document(content_type, document_id)
        return int(row["chunks"]) if row else 0

    def counts(self) -> dict[str, int]:
        counts = {key: 0 for key in _COUNT_KEYS.values()} | {"authors": 0, "chunks": 0}
        for row in self._scroll(self.documents_collection):
            counts[_COUNT_KEYS[row["content_type"]]] += 1
            counts["chunks"] += int(row["chunks"])
        if self._ensure():
            counts["authors"] = self.client.count(self.authors_collection, exact=True).count
        return counts

    # --- writes (ingest only) ----------------------------------------------------------------
    def record_documents(self, rows: Iterable[tuple[str, str, str, int, list[str]]]) -> None:
        self._ensure()
        points = [
            models.PointStruct(
                id=_ledger_id(content_type, doc_id),
                vector={},
                payload={
                    "id": doc_id,
                    "content_type": content_type,
                    "content_hash": content_hash,
                    "chunks": chunks,
                    "author_ids": list(author_ids),
                },
            )
            for doc_id, content_type, content_hash, chunks, author_ids in rows
        ]
        for start in range(0, len(points), _PAGE):
            self.client.upsert(self.documents_collection, points[start : start + _PAGE], wait=True)

    def forget_document(self, content_type: str, document_id: str) -> None:
        self._ensure()
        self.client.delete(
            self.documents_collection, models.PointIdsList(points=[_ledger_id(content_type, document_id)]), wait=True
        )

    def upsert_authors(self, authors: Iterable[Author]) -> None:
        self._ensure()
        wanted = {a.id: a for a in authors}
        if not wanted:
            return
        with self._lock:
            existing = {
                str(r.id): dict(r.payload or {})
                for r in self.client.retrieve(self.authors_collection, list(wanted), with_payload=True)
            }
            points = []
            for author_id, author in wanted.items():
                old = existing.get(author_id, {})
                payload = {
                    "id": author_id,
                    "full_name": old.get("full_name", author.full_name),
                    "norm_name": normalize_name(old.get("full_name", author.full_name)),
                    "aliases": sorted(set(old.get("aliases", [])) | set(author.aliases)),
                    "counts": old.get("counts", {}),
                }
                points.append(models.PointStruct(id=author_id, vector={}, payload=payload))
            self.client.upsert(self.authors_collection, points, wait=True)

    def refresh_counts(self) -> None:
        per_author: dict[str, dict[str, int]] = {}
        for row in self._scroll(self.documents_collection):
            for author_id in row.get("author_ids", []):
                per = per_author.setdefault(author_id, {})
                per[row["content_type"]] = per.get(row["content_type"], 0) + 1
        with self._lock:
            operations: list[models.UpdateOperation] = [
                models.SetPayloadOperation(
                    set_payload=models.SetPayload(payload={"counts": per_author.get(a.id, {})}, points=[a.id])
                )
                for a in self.authors()
            ]
            for start in range(0, len(operations), _PAGE):
                self.client.batch_update_points(self.authors_collection, operations[start : start + _PAGE], wait=True)
