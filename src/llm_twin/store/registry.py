"""Author registry: full names, aliases and document counts, persisted in sqlite beside the vectors.

Written only by ingest; the read path (self-query) opens it read-only and never creates authors.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from llm_twin.domain.authors import Author, normalize_name

_SCHEMA = """
CREATE TABLE IF NOT EXISTS authors (
    id TEXT PRIMARY KEY,
    full_name TEXT NOT NULL,
    norm_name TEXT NOT NULL,
    aliases TEXT NOT NULL DEFAULT '[]',
    counts TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    author_ids TEXT NOT NULL,
    PRIMARY KEY (content_type, id)
);
"""


class Registry(Protocol):
    """Authors and the ingest ledger: ``AuthorRegistry`` (sqlite) or ``QdrantAuthorRegistry``."""

    def authors(self) -> list[Author]: ...

    def get(self, author_id: str) -> Author | None: ...

    def find_by_name(self, name: str) -> Author | None: ...

    def document_hashes(self, content_type: str) -> dict[str, str]: ...

    def document_hash(self, content_type: str, document_id: str) -> str | None: ...

    def document_chunks(self, content_type: str, document_id: str) -> int: ...

    def counts(self) -> dict[str, int]: ...

    def record_documents(self, rows: Iterable[tuple[str, str, str, int, list[str]]]) -> None: ...

    def forget_document(self, content_type: str, document_id: str) -> None: ...

    def upsert_authors(self, authors: Iterable[Author]) -> None: ...

    def refresh_counts(self) -> None: ...

    def close(self) -> None: ...


class AuthorRegistry:
    """sqlite-backed; one connection per instance, guarded by a lock (sqlite objects are not thread-safe)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        if read_only:
            if not self.path.exists():
                self._conn = sqlite3.connect(":memory:", check_same_thread=False)
                self._conn.executescript(_SCHEMA)
            else:
                uri = f"file:{self.path}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- reads ----------------------------------------------------------------------------
    def authors(self) -> list[Author]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, full_name, aliases, counts FROM authors ORDER BY full_name"
            ).fetchall()
        return [Author(id=r[0], full_name=r[1], aliases=json.loads(r[2]), counts=json.loads(r[3])) for r in rows]

    def get(self, author_id: str) -> Author | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, full_name, aliases, counts FROM authors WHERE id = ?", (author_id,)
            ).fetchone()
        if row is None:
            return None
        return Author(id=row[0], full_name=row[1], aliases=json.loads(row[2]), counts=json.loads(row[3]))

    def find_by_name(self, name: str) -> Author | None:
        norm = normalize_name(name)
        with self._lock:
            row = self._conn.execute("SELECT id FROM authors WHERE norm_name = ?", (norm,)).fetchone()
        return self.get(row[0]) if row else None

    def document_hashes(self, content_type: str) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, content_hash FROM documents WHERE content_type = ?", (content_type,)
            ).fetchall()
        return dict(rows)

    def document_hash(self, content_type: str, document_id: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT content_hash FROM documents WHERE content_type = ? AND id = ?", (content_type, document_id)
            ).fetchone()
        return str(row[0]) if row else None

    def document_chunks(self, content_type: str, document_id: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT chunks FROM documents WHERE content_type = ? AND id = ?", (content_type, document_id)
            ).fetchone()
        return int(row[0]) if row else 0

    def counts(self) -> dict[str, int]:
        with self._lock:
            per_type = dict(self._conn.execute("SELECT content_type, COUNT(*) FROM documents GROUP BY content_type"))
            chunks = self._conn.execute("SELECT COALESCE(SUM(chunks), 0) FROM documents").fetchone()[0]
            authors = self._conn.execute("SELECT COUNT(*) FROM authors").fetchone()[0]
        return {
            "articles": per_type.get("article", 0),
            "posts": per_type.get("post", 0),
            "repositories": per_type.get("repository", 0),
            "authors": authors,
            "chunks": int(chunks),
        }

    # --- writes (ingest only) -------------------------------------------------------------------
    def record_documents(self, rows: Iterable[tuple[str, str, str, int, list[str]]]) -> None:
        """Mark documents as stored: (id, content_type, content_hash, chunks, author_ids). Call after upsert."""
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO documents (id, content_type, content_hash, chunks, author_ids) VALUES (?,?,?,?,?)",
                [(i, t, h, n, json.dumps(a)) for i, t, h, n, a in rows],
            )

    def forget_document(self, content_type: str, document_id: str) -> None:
        """Drop a document from the ledger (after its points were deleted)."""
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM documents WHERE content_type = ? AND id = ?", (content_type, document_id))

    def upsert_authors(self, authors: Iterable[Author]) -> None:
        """Merge aliases; counts are recomputed from the documents table by ``refresh_counts``."""
        with self._lock, self._conn:
            for author in authors:
                row = self._conn.execute("SELECT aliases FROM authors WHERE id = ?", (author.id,)).fetchone()
                aliases = sorted(set(json.loads(row[0]) if row else []) | set(author.aliases))
                self._conn.execute(
                    "INSERT INTO authors (id, full_name, norm_name, aliases) VALUES (?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET aliases = excluded.aliases",
                    (author.id, author.full_name, normalize_name(author.full_name), json.dumps(aliases)),
                )

    def refresh_counts(self) -> None:
        with self._lock, self._conn:
            counts: dict[str, dict[str, int]] = {}
            for content_type, author_ids in self._conn.execute("SELECT content_type, author_ids FROM documents"):
                for aid in json.loads(author_ids):
                    per = counts.setdefault(aid, {})
                    per[content_type] = per.get(content_type, 0) + 1
            # An author whose last document was deleted keeps the row (self-query still knows the
            # name) with no counts, rather than the counts of documents that are gone.
            self._conn.execute("UPDATE authors SET counts = '{}'")
            for aid, per in counts.items():
                self._conn.execute("UPDATE authors SET counts = ? WHERE id = ?", (json.dumps(per), aid))
