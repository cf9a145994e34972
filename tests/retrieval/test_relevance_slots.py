"""Slots by relevance across collections, one source in one place, and search text without the author."""

from __future__ import annotations

import uuid

import pytest

from llm_twin.domain.authors import Author
from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.embedding.bm25 import Bm25SparseEncoder
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.retrieval.author_resolver import AuthorResolver
from llm_twin.retrieval.search import QdrantHybridRetriever, group_by_document
from llm_twin.store.base import StoredPoint
from llm_twin.store.edge import EdgeVectorStore


def _chunk(document: str, index: int, score: float) -> EmbeddedChunk:
    return EmbeddedChunk(
        id=f"{document}-{index}",
        collection="articles",
        content_type="article",
        document_id=document,
        chunk_index=index,
        content="x",
        author_ids=[],
        author_full_name="A",
        score=score,
    )


def test_group_by_document_fills_slots_document_by_document() -> None:
    ranked = [
        _chunk("pep-1", 0, 0.9),
        _chunk("pep-2", 0, 0.8),
        _chunk("pep-1", 3, 0.7),
        _chunk("pep-3", 0, 0.6),
        _chunk("pep-1", 1, 0.5),
        _chunk("pep-1", 2, 0.4),
        _chunk("pep-2", 1, 0.3),
    ]
    got = [(c.document_id, c.chunk_index) for c in group_by_document(ranked, k=5, per_document=3)]
    assert got == [("pep-1", 0), ("pep-1", 3), ("pep-1", 1), ("pep-2", 0), ("pep-2", 1)]
    one_each = group_by_document(ranked, k=5, per_document=1)
    assert [c.document_id for c in one_each] == ["pep-1", "pep-2", "pep-3"], "fewer than k when sources run out"


@pytest.fixture(scope="module")
def embedder() -> OnnxSentenceEmbedder:
    embedder = OnnxSentenceEmbedder()
    embedder.warm_up()
    return embedder


def _points(embedder: OnnxSentenceEmbedder, rows: list[tuple[str, int, str]], content_type: str) -> list[StoredPoint]:
    bm25 = Bm25SparseEncoder()
    texts = [text for _, _, text in rows]
    dense, sparse = embedder.embed(texts), bm25.embed_documents(texts)
    return [
        StoredPoint(
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc}-{i}")),
            dense[n].tolist(),
            sparse[n],
            {
                "content": text,
                "chunk_id": f"{doc}-{i}",
                "document_id": doc,
                "chunk_index": i,
                "author_id": ["a"],
                "content_type": content_type,
            },
        )
        for n, (doc, i, text) in enumerate(rows)
    ]


def test_a_collection_with_nothing_relevant_gives_nothing(tmp_path, embedder) -> None:
    """Per-collection fusion hands every collection's best hit the same score, so the unrelated
    repository README got a slot whatever the question; the global ranking leaves it out."""
    store = EdgeVectorStore(tmp_path / "vectors")
    store.ensure_collections(["articles", "repositories"], embedder.dimension)
    store.upsert(
        "articles",
        _points(
            embedder,
            [
                ("pep-634", 0, "Structural pattern matching: the match statement and case clauses with patterns."),
                ("pep-634", 1, "Patterns may capture values, match sequences and mappings, and use guards."),
                ("pep-636", 0, "A tutorial for pattern matching with match and case in Python."),
                ("pep-572", 0, "Assignment expressions with the walrus operator."),
            ],
            "article",
        ),
    )
    store.upsert(
        "repositories",
        _points(
            embedder,
            [
                ("pypi:typing-extensions", 0, "Backported type hints for older Python versions."),
            ],
            "repository",
        ),
    )
    try:
        queries = ["pattern matching with match and case"]
        kwargs = {"mode": "hybrid", "prefetch_limit": 10}
        balanced = QdrantHybridRetriever(
            store, embedder, Bm25SparseEncoder(), ["articles", "repositories"], k_split="balanced", **kwargs
        ).run(queries, k=3)
        assert "pypi:typing-extensions" in {c.document_id for c in balanced.chunks}, "the old split's quota"
        relevance = QdrantHybridRetriever(
            store, embedder, Bm25SparseEncoder(), ["articles", "repositories"], k_split="relevance", **kwargs
        ).run(queries, k=3)
        assert [c.document_id for c in relevance.chunks][:1] == ["pep-634"]
        assert "pypi:typing-extensions" not in {c.document_id for c in relevance.chunks}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("question", "topic"),
    [
        ("What did Guido van Rossum write about pattern matching?", "pattern matching?"),
        ("What has Brett Cannon written on import hooks?", "import hooks?"),
        ("What is Guido's view on the walrus operator?", "What is view on the walrus operator?"),
        ("How did van Rossum justify the integer division change?", "How did justify the integer division change?"),
        ("Guido van Rossum", "Guido van Rossum"),  # nothing would be left: unchanged
    ],
)
def test_search_text_keeps_the_topic_without_the_person(question: str, topic: str) -> None:
    guido, brett = Author.from_name("Guido van Rossum"), Author.from_name("Brett Cannon")
    resolver = AuthorResolver([guido, brett])
    match = resolver.run(question)
    assert match.author is not None
    assert resolver.without_person(question, match.author) == topic


def test_search_text_drops_every_name_of_the_person_but_not_others() -> None:
    pablo, commits = Author.from_name("Pablo Galindo Salgado"), Author.from_name("Pablo Galindo")
    resolver = AuthorResolver([pablo, commits, Author.from_name("Guido van Rossum")])
    text = "Pablo Galindo and Guido van Rossum on the PEG parser"
    assert resolver.without_person(text, pablo) == "and Guido van Rossum on the PEG parser"
