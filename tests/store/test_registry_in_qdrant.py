"""With a Qdrant server, the author registry and the ingest ledger live in Qdrant (payload-only
collections): a process with no local registry file knows the authors another process's ingest
wrote, skips what it stored, and picks up new authors without a restart. qdrant-client's local
mode (a path, opened by one client at a time, like two processes in turn) stands in for the server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from llm_twin.api.people import read_people
from llm_twin.domain.authors import Author
from llm_twin.ingest.pipeline import IngestPipeline
from llm_twin.retrieval.pipeline import RetrievalPipeline
from llm_twin.settings import load_settings
from llm_twin.store import read_authors
from llm_twin.store.qdrant_registry import QdrantAuthorRegistry
from llm_twin.store.qdrant_server import QdrantServerStore

pytestmark = pytest.mark.slow


def server_store(path: Path) -> QdrantServerStore:
    return QdrantServerStore(QdrantClient(path=str(path)), quantization="none")


def settings_for(data_dir: Path, **overrides: object):
    return load_settings(data_dir=data_dir, helper_llm_backend="none", rerank_backend="none", **overrides)


def test_a_replica_without_local_state_knows_the_authors_and_the_ledger(tmp_path: Path, small_corpus) -> None:
    qdrant = tmp_path / "qdrant"
    posts = small_corpus[1]

    writer_settings = settings_for(tmp_path / "worker")
    store = server_store(qdrant)
    worker = IngestPipeline(writer_settings, store=store)
    try:
        report = worker.run([posts])
    finally:
        worker.close()
        store.close()
    assert report.documents_written == 18
    assert not writer_settings.registry_path.exists()  # nothing beside the vectors

    replica_settings = settings_for(tmp_path / "replica", registry_refresh_s=0.2)
    store = server_store(qdrant)
    retrieval = RetrievalPipeline(replica_settings, store=store)
    try:
        retrieval.warm_up()
        match = retrieval.self_query.run("What did Brett Cannon write about imports?")
        assert match.author is not None and match.author.full_name == "Brett Cannon"
        assert match.author.counts == {"post": 4}

        again = IngestPipeline(replica_settings, store=store)  # an ingest worker elsewhere: all known
        assert again.run([posts]).documents_skipped == 18
        assert not replica_settings.registry_path.exists()

        # The people list (GET /authors, the MCP resource) reads the same registry through the store.
        people = read_people(replica_settings, retrieval.authors)
        assert "Brett Cannon" in {row["name"] for row in people}

        # Another process registers a new author; this replica knows them within the refresh interval.
        QdrantAuthorRegistry(store.client).upsert_authors([Author.from_name("Zelda Newcomer")])
        assert "Zelda Newcomer" in {a.full_name for a in read_authors(replica_settings, store)}  # at the next read
        deadline = time.monotonic() + 10
        while retrieval.self_query.run("What did Zelda Newcomer write?").author is None:
            assert time.monotonic() < deadline, "the new author never became known"
            time.sleep(0.1)
    finally:
        retrieval.close()


def test_delete_and_counts_in_the_qdrant_ledger(tmp_path: Path, small_corpus) -> None:
    store = server_store(tmp_path / "qdrant")
    pipeline = IngestPipeline(settings_for(tmp_path / "data"), store=store)
    try:
        counts = pipeline.run([small_corpus[2]]).counts
        assert counts["repositories"] == 3 and counts["chunks"] > 3
        doc_id = next(iter(pipeline.registry.document_hashes("repository")))
        removed = pipeline.delete_document(doc_id)
        assert set(removed) == {"repository"} and removed["repository"] >= 1
        assert pipeline.counts()["repositories"] == 2
        assert pipeline.counts()["chunks"] == counts["chunks"] - removed["repository"]
    finally:
        pipeline.close()
        store.close()
