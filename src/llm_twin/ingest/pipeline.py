"""Ingest: documents -> clean -> chunk -> embed (dense + BM25) -> upsert, resumable and idempotent.

Crash safety: a document is recorded in the registry only after all its points are upserted and
flushed, and a changed or unrecorded document has its old points deleted before the new ones are
written. Point ids are deterministic, so a re-run after a crash completes the store with no
duplicates, and a re-run over unchanged files skips every document by content hash.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_twin.domain.authors import Author, normalize_name
from llm_twin.domain.documents import CONTENT_TYPES, Chunk, ContentType, Document, EmbeddedChunk
from llm_twin.embedding.bm25 import Bm25SparseEncoder
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.ingest.chunk import TokenChunker
from llm_twin.ingest.reader import BadLine, RawRecord, RecordError, read_jsonl, to_document
from llm_twin.settings import Settings
from llm_twin.store import StoredPoint, VectorStore, open_registry, open_store
from llm_twin.store.registry import Registry

#: Chunks embedded and written per step: large enough to sort by length, small enough to resume.
GROUP_CHUNKS = 1024
Progress = Callable[[int], None]


@dataclass
class IngestReport:
    counts: dict[str, int]
    seconds: float
    bad_lines: list[BadLine] = field(default_factory=list)
    documents_written: int = 0
    documents_skipped: int = 0
    chunks_written: int = 0
    embed_seconds: float = 0.0

    def summary(self) -> dict[str, float | int]:
        return {**self.counts, "seconds": round(self.seconds, 2)}


def _compact(name: str) -> str:
    return "".join(ch for ch in normalize_name(name) if ch.isalnum())


class AuthorLinker:
    """Maps raw author names to authors; a git handle equal to a full name without spaces
    ("larryhastings") becomes an alias of that author instead of a new one."""

    def __init__(self, known: Iterable[Author] = ()) -> None:
        self._by_norm: dict[str, Author] = {}
        self._by_compact: dict[str, Author] = {}
        for author in known:
            self._add(author)

    def _add(self, author: Author) -> Author:
        self._by_norm.setdefault(normalize_name(author.full_name), author)
        if " " in author.full_name.strip():
            self._by_compact.setdefault(_compact(author.full_name), author)
        return self._by_norm[normalize_name(author.full_name)]

    def learn(self, names: Iterable[str]) -> None:
        """Register full names first (several words), so handles can be linked to them."""
        for name in names:
            if " " in name.strip() and normalize_name(name) not in self._by_norm:
                self._add(Author.from_name(name))

    def resolve(self, name: str) -> Author:
        norm = normalize_name(name)
        if norm in self._by_norm:
            return self._by_norm[norm]
        target = self._by_compact.get(_compact(name)) if " " not in name.strip() else None
        if target is not None:
            if name not in target.aliases:
                target.aliases.append(name)
            self._by_norm[norm] = target
            return target
        return self._add(Author.from_name(name))


class IngestPipeline:
    def __init__(
        self,
        settings: Settings,
        store: VectorStore | None = None,
        embedder: OnnxSentenceEmbedder | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        # A store handed in belongs to its giver (the API's retrieval pipeline shares its one
        # handle: the embedded engine allows one per process), so ``close()`` leaves it open.
        self._owns_store = store is None
        self.store = store or open_store(settings)
        self.embedder = embedder or OnnxSentenceEmbedder.from_settings(settings)
        self.registry = registry or open_registry(settings, self.store)
        self.bm25 = Bm25SparseEncoder(avg_len=settings.bm25_avg_len)
        self.chunker: TokenChunker | None = None
        self._collections_ready = False

    def warm_up(self) -> None:
        """Load the embedder and create (or bring up to date) the collections; once per instance."""
        self.embedder.warm_up()
        if self.chunker is None:
            self.chunker = TokenChunker(
                self.embedder.tokenizer, self.settings.chunk_tokens, self.settings.chunk_overlap_tokens
            )
        if not self._collections_ready:
            self.store.ensure_collections(list(self.settings.collections.values()), self.embedder.dimension)
            self._collections_ready = True

    # --- reading -------------------------------------------------------------------------
    def read(self, paths: list[Path]) -> tuple[list[Document], list[BadLine]]:
        return self.documents(item for path in paths for item in read_jsonl(Path(path)))

    def documents(self, items: Iterable[RawRecord | BadLine]) -> tuple[list[Document], list[BadLine]]:
        """Parsed lines (from files or a request body) to documents with resolved authors."""
        records: list[RawRecord] = []
        bad: list[BadLine] = []
        seen: dict[tuple[str, str], RawRecord] = {}
        for item in items:
            if isinstance(item, BadLine):
                bad.append(item)
                continue
            key = (item.data["content_type"], item.data["id"].strip())
            if key in seen:
                first = seen[key]
                bad.append(
                    BadLine(item.path, item.line, f"duplicate id {key[1]!r} (first at {first.path}:{first.line})")
                )
                continue
            seen[key] = item
            records.append(item)
        linker = AuthorLinker(self.registry.authors())
        linker.learn(name for r in records for name in r.author_names)
        documents = []
        for record in records:
            authors: list[Author] = []
            for name in record.author_names:
                author = linker.resolve(name)
                if all(a.id != author.id for a in authors):
                    authors.append(author)
            try:
                documents.append(to_document(record, authors))
            except RecordError as error:
                bad.append(BadLine(record.path, record.line, str(error)))
        return documents, bad

    def stored_hash(self, doc: Document) -> str:
        """The document's content hash bound to how it was embedded: a new embedding model or
        precision, or other chunking settings, make every document "changed" on the next ingest."""
        s = self.settings
        recipe = (
            f"{self.embedder.model_id}|{s.chunk_tokens}|{s.chunk_overlap_tokens}|{s.max_seq_tokens}|{s.bm25_avg_len}"
        )
        return hashlib.sha256(f"{doc.content_hash}|{recipe}".encode()).hexdigest()

    # --- chunking and points -------------------------------------------------------------------
    def chunk(self, document: Document) -> list[tuple[Chunk, str]]:
        """Chunks with the text to embed (title + chunk, so each chunk carries its document's topic)."""
        assert self.chunker is not None
        prefix = f"{document.title}\n" if document.title and document.content_type != "post" else ""
        budget = self.settings.max_seq_tokens - 2 - (self.chunker.count(prefix) if prefix else 0)
        limit = max(32, min(self.settings.chunk_tokens, budget))
        pieces = self.chunker.split(document.text, max_tokens=limit)
        return [(Chunk(document=document, index=i, content=p.text), prefix + p.text) for i, p in enumerate(pieces)]

    def _payload(self, chunk: Chunk, collection: str) -> dict[str, Any]:
        recipe = {
            "embedding_model": self.embedder.model_id,
            "embedding_size": self.embedder.dimension,
            "chunk_tokens": self.settings.chunk_tokens,
        }
        return EmbeddedChunk.from_chunk(chunk, collection, metadata=recipe).to_payload()

    # --- the run -------------------------------------------------------------------------------
    def run(
        self, paths: list[Path], on_progress: Progress | None = None, on_total: Progress | None = None
    ) -> IngestReport:
        started = time.perf_counter()
        self.warm_up()
        documents, bad = self.read(paths)
        report = self.ingest_documents(documents, on_progress=on_progress, on_total=on_total)
        report.bad_lines = bad
        report.seconds = time.perf_counter() - started
        return report

    def ingest_documents(
        self,
        documents: list[Document],
        on_progress: Progress | None = None,
        on_total: Progress | None = None,
        *,
        optimize: bool = True,
    ) -> IngestReport:
        """Write what is new or changed. ``optimize=False`` (a few documents added to a live
        service) leaves the new points in the engine's small appendable segment, searched exactly,
        instead of rebuilding indexes on every call."""
        started = time.perf_counter()
        self.warm_up()
        self.record_authors(documents)
        pending, skipped = self.pending(documents)
        planned = [(doc, self.chunk(doc)) for doc in pending]
        if on_total:
            on_total(sum(len(c) for _, c in planned))
        report = IngestReport(counts={}, seconds=0.0, documents_skipped=skipped)
        nonempty = self.nonempty_types()
        group: list[tuple[Document, list[tuple[Chunk, str]]]] = []
        size = 0
        for doc, chunks in planned:
            group.append((doc, chunks))
            size += len(chunks)
            if size >= GROUP_CHUNKS:
                self.write_group(group, nonempty, report, on_progress)
                group, size = [], 0
        if group:
            self.write_group(group, nonempty, report, on_progress)
        self.finish(optimize=optimize)
        report.counts = self.counts()
        report.seconds = time.perf_counter() - started
        return report

    def record_authors(self, documents: Iterable[Document]) -> None:
        self.registry.upsert_authors({a.id: a for d in documents for a in d.authors}.values())

    def is_current(self, doc: Document) -> bool:
        """The ledger holds this exact version (same text, same embedding recipe)."""
        return self.registry.document_hash(doc.content_type, doc.id) == self.stored_hash(doc)

    def pending(self, documents: list[Document]) -> tuple[list[Document], int]:
        """The documents to write (new or changed) in content-type order, and how many are unchanged."""
        pending: list[Document] = []
        skipped = 0
        for content_type in CONTENT_TYPES:
            hashes = self.registry.document_hashes(content_type)
            for doc in documents:
                if doc.content_type != content_type:
                    continue
                if hashes.get(doc.id) == self.stored_hash(doc):
                    skipped += 1
                else:
                    pending.append(doc)
        return pending, skipped

    def nonempty_types(self) -> set[ContentType]:
        """Content types whose collection holds points: only there can a pending document have stale
        or half-written points (changed text, or a crash before it was recorded) to delete first."""
        return {ct for ct, name in self.settings.collections.items() if self.store.count(name) > 0}

    def finish(self, *, optimize: bool = True) -> None:
        # Builds HNSW (and the quantized copy) once after the bulk load; with nothing to do it is a
        # no-op, and it also applies a changed index or quantization setting to an unchanged corpus.
        if optimize:
            self.store.optimize()
        self.registry.refresh_counts()

    def delete_document(self, document_id: str, content_type: ContentType | None = None) -> dict[str, int]:
        """Remove a document's points and its ledger row; {content type: chunks it had} (empty: unknown)."""
        removed: dict[str, int] = {}
        for ct in (content_type,) if content_type else CONTENT_TYPES:
            if self.registry.document_hash(ct, document_id) is None:
                continue
            removed[ct] = self.registry.document_chunks(ct, document_id)
            self.store.delete_document(self.settings.collections[ct], document_id)
            self.store.flush()
            self.registry.forget_document(ct, document_id)
        if removed:
            self.registry.refresh_counts()
        return removed

    def write_group(
        self,
        group: list[tuple[Document, list[tuple[Chunk, str]]]],
        nonempty: set[ContentType],
        report: IngestReport,
        on_progress: Progress | None,
    ) -> None:
        collections = self.settings.collections
        texts = [text for _, chunks in group for _, text in chunks]
        t0 = time.perf_counter()
        dense = self.embedder.embed(texts)
        report.embed_seconds += time.perf_counter() - t0
        sparse = self.bm25.embed_documents(texts)
        by_collection: dict[str, list[StoredPoint]] = {}
        row = 0
        for doc, chunks in group:
            collection = collections[doc.content_type]
            if doc.content_type in nonempty:
                self.store.delete_document(collection, doc.id)
            for chunk, _ in chunks:
                by_collection.setdefault(collection, []).append(
                    StoredPoint(chunk.id, dense[row].tolist(), sparse[row], self._payload(chunk, collection))
                )
                row += 1
        for collection, points in by_collection.items():
            for start in range(0, len(points), 256):
                self.store.upsert(collection, points[start : start + 256])
        self.store.flush()
        self.registry.record_documents(
            (doc.id, doc.content_type, self.stored_hash(doc), len(chunks), [a.id for a in doc.authors])
            for doc, chunks in group
        )
        report.documents_written += len(group)
        report.chunks_written += len(texts)
        if on_progress:
            on_progress(len(texts))

    def counts(self) -> dict[str, int]:
        counts = self.registry.counts()
        counts["chunks"] = sum(self.store.count(name) for name in self.settings.collections.values())
        return counts

    def close(self) -> None:
        if self._owns_store:
            self.store.close()
        self.registry.close()
