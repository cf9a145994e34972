"""One suite, two backends: the embedded engine (qdrant-edge) and qdrant-client (in-process mode),
compared with each other on the same points and queries."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from llm_twin.embedding.bm25 import Bm25SparseEncoder
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.errors import StoreUnavailableError
from llm_twin.store.base import SearchRequest, StoredPoint
from llm_twin.store.edge import EdgeVectorStore
from llm_twin.store.qdrant_server import QdrantServerStore

TEXTS = [
    ("d1", "a", "Structural pattern matching adds the match statement to Python."),
    ("d1", "a", "Match statements compare a subject value against several patterns."),
    ("d2", "b", "Type hints let static checkers verify function signatures."),
    ("d3", "a", "The walrus operator assigns values inside expressions."),
    ("d4", "c", "Packaging wheels with pip and setuptools."),
    ("d5", "b", "Asynchronous coroutines with async and await keywords."),
]
QUERIES = ["pattern matching with match", "static typing of functions", "how to build a wheel"]


@pytest.fixture(scope="module")
def encoded():
    embedder, bm25 = OnnxSentenceEmbedder(), Bm25SparseEncoder()
    dense = embedder.embed([t for _, _, t in TEXTS])
    sparse = bm25.embed_documents([t for _, _, t in TEXTS])
    points = [
        StoredPoint(
            str(uuid.uuid5(uuid.NAMESPACE_URL, text)),
            dense[i].tolist(),
            sparse[i],
            {"content": text, "document_id": doc, "author_id": [author], "chunk_id": str(i)},
        )
        for i, (doc, author, text) in enumerate(TEXTS)
    ]
    queries = (embedder.embed(QUERIES).tolist(), bm25.embed_queries(QUERIES))
    return points, queries


def make_store(kind: str, tmp_path):
    if kind == "embedded":
        return EdgeVectorStore(tmp_path / "vectors")
    return QdrantServerStore.connect(":memory:")


@pytest.fixture(params=["embedded", "server"])
def store(request, tmp_path, encoded):
    store = make_store(request.param, tmp_path)
    store.ensure_collections(["c"], 384)
    store.upsert("c", encoded[0])
    yield store
    store.close()


def _requests(queries, mode, author=None, fusion="rrf"):
    dense, sparse = queries
    return [
        SearchRequest(limit=3, mode=mode, dense=d, sparse=s, author_ids=(author,) if author else None, fusion=fusion)
        for d, s in zip(dense, sparse, strict=True)
    ]


def _ranked(store, queries, mode, author=None, fusion="rrf"):
    requests = _requests(queries, mode, author, fusion)
    return [[(h.payload["chunk_id"], round(h.score, 4)) for h in hits] for hits in store.query_batch("c", requests)]


def test_count_and_idempotent_upsert(store, encoded):
    assert store.count("c") == len(TEXTS)
    store.upsert("c", encoded[0])  # same ids: nothing new
    assert store.count("c") == len(TEXTS)


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_search_finds_the_relevant_text(store, encoded, mode):
    results = _ranked(store, encoded[1], mode)
    assert results[0][0][0] in {"0", "1"}
    assert results[1][0][0] == "2"
    assert results[2][0][0] == "4"


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_author_filter(store, encoded, mode):
    results = store.query_batch("c", _requests(encoded[1], mode, author="b"))
    assert any(results)  # BM25 finds nothing for a query sharing no term with b's texts
    assert all(h.payload["author_id"] == ["b"] for hits in results for h in hits)


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_author_filter_covers_every_name_of_a_person(store, encoded, mode):
    """One person writing under two names ("b" and "c"): the filter matches either, nobody else."""
    dense, sparse = encoded[1]
    requests = [
        SearchRequest(limit=6, mode=mode, dense=d, sparse=s, author_ids=("b", "c"))
        for d, s in zip(dense, sparse, strict=True)
    ]
    found = {h.payload["author_id"][0] for hits in store.query_batch("c", requests) for h in hits}
    assert found == {"b", "c"}


def test_delete_document(store):
    store.delete_document("c", "d1")
    assert store.count("c") == len(TEXTS) - 2


@pytest.mark.parametrize(("mode", "fusion"), [("dense", "rrf"), ("hybrid", "rrf"), ("hybrid", "dbsf")])
def test_backends_agree(tmp_path, encoded, mode, fusion):
    """Same scores, and the same ids at each score, on both backends (RRF can tie)."""
    results = {}
    for kind in ("embedded", "server"):
        store = make_store(kind, tmp_path / kind)
        store.ensure_collections(["c"], 384)
        store.upsert("c", encoded[0])
        results[kind] = _ranked(store, encoded[1], mode, fusion=fusion)
        store.close()
    for ours, theirs in zip(results["embedded"], results["server"], strict=True):
        assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], abs=1e-3)
        assert _by_score(ours) == _by_score(theirs)


def _by_score(ranked):
    groups: dict[float, set[str]] = {}
    for chunk_id, score in ranked:
        groups.setdefault(round(score, 3), set()).add(chunk_id)
    return groups


def test_sparse_scores_agree(tmp_path, encoded):
    """BM25 with server-side IDF: the same scores (ties may order differently)."""
    results = {}
    for kind in ("embedded", "server"):
        store = make_store(kind, tmp_path / kind)
        store.ensure_collections(["c"], 384)
        store.upsert("c", encoded[0])
        results[kind] = _ranked(store, encoded[1], "sparse")
        store.close()
    for ours, theirs in zip(results["embedded"], results["server"], strict=True):
        assert _by_score(ours) == _by_score(theirs)


def test_missing_collection_is_a_clear_error(tmp_path):
    for store in (make_store("embedded", tmp_path), make_store("server", tmp_path)):
        with pytest.raises(StoreUnavailableError, match="ingest"):
            store.open_existing(["nothing_here"])
        store.close()


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_ids_only_search_then_retrieve_gives_the_same_hits(store, encoded, mode):
    """The retriever's path: ids and scores from the search, payloads fetched afterwards."""
    with_payload = store.query_batch("c", _requests(encoded[1], mode))
    ids_only = store.query_batch("c", [replace(r, with_payload=False) for r in _requests(encoded[1], mode)])
    for full, bare in zip(with_payload, ids_only, strict=True):
        # RRF can tie: compare the (id, score) sets, and the score order.
        assert {(h.id, round(h.score, 5)) for h in full} == {(h.id, round(h.score, 5)) for h in bare}
        assert [round(h.score, 5) for h in full] == [round(h.score, 5) for h in bare]
        assert all(not h.payload for h in bare)
        fetched = store.retrieve("c", [h.id for h in bare])
        assert {h.id: h.payload for h in full} == fetched


def test_retrieve_skips_unknown_ids(store, encoded):
    known = encoded[0][0].id
    missing = str(uuid.uuid5(uuid.NAMESPACE_URL, "not stored"))
    assert set(store.retrieve("c", [known, missing])) == {known}
    assert store.retrieve("c", []) == {}
