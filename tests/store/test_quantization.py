"""Dense int8 scalar quantization: applied on the write path only, searched with exact rescoring."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from llm_twin.embedding.bm25 import Sparse
from llm_twin.store import open_store
from llm_twin.store.base import SearchRequest, StoredPoint
from llm_twin.store.edge import EdgeVectorStore
from llm_twin.store.qdrant_server import QdrantServerStore

DIM = 384


def _stored_quantization(directory, name="c"):
    """The engine's persisted shard config (its own file), which the API does not expose."""
    return json.loads((directory / name / "edge_config.json").read_text()).get("quantization_config")


def _points(vectors: np.ndarray) -> list[StoredPoint]:
    return [
        StoredPoint(
            str(uuid.UUID(int=i + 1)), v.tolist(), Sparse([i], [1.0]), {"chunk_id": str(i), "document_id": str(i)}
        )
        for i, v in enumerate(vectors)
    ]


def _unit(rows: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_new_embedded_collections_are_quantized_by_default(tmp_path):
    store = EdgeVectorStore(tmp_path)
    store.ensure_collections(["c"], DIM)
    store.close()
    assert _stored_quantization(tmp_path)["scalar"]["type"] == "int8"

    plain = EdgeVectorStore(tmp_path / "plain", quantization="none")
    plain.ensure_collections(["c"], DIM)
    plain.close()
    assert _stored_quantization(tmp_path / "plain") is None


def test_only_the_write_path_changes_an_existing_shard(tmp_path):
    old = EdgeVectorStore(tmp_path, quantization="none")
    old.ensure_collections(["c"], DIM)
    old.upsert("c", _points(_unit(3, 0)))
    old.close()

    reader = EdgeVectorStore(tmp_path)  # int8 wanted, but this is a read: the shard stays as it is
    reader.open_existing(["c"])
    assert reader.count("c") == 3
    reader.close()
    assert _stored_quantization(tmp_path) is None

    writer = EdgeVectorStore(tmp_path)
    writer.ensure_collections(["c"], DIM)
    writer.optimize()
    assert writer.count("c") == 3
    writer.close()
    assert _stored_quantization(tmp_path)["scalar"]["type"] == "int8"


def _clustered(rows: int, seed: int) -> np.ndarray:
    """Unit vectors around 50 topics: near neighbours are meaningful, as with real embeddings
    (uniformly random 384-d vectors are all nearly equidistant)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((50, DIM))
    x = centers[rng.integers(0, 50, rows)] + 0.3 * rng.standard_normal((rows, DIM))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _dense_top10(directory, quantization, corpus, queries):
    store = EdgeVectorStore(directory, quantization=quantization)
    store.ensure_collections(["c"], DIM)
    store.upsert("c", _points(corpus))
    store.optimize()
    requests = [SearchRequest(limit=10, mode="dense", dense=q.tolist(), with_payload=False) for q in queries]
    hits = store.query_batch("c", requests)
    store.close()
    return [[(uuid.UUID(h.id).int - 1, h.score) for h in ranked] for ranked in hits]


def test_quantized_search_returns_exact_cosines(tmp_path):
    """Enough points for the optimizer to index the segment and build the int8 copy: the walk over
    the int8 copy still finds each query's near-duplicate first, and rescoring gives exact cosines."""
    corpus = _clustered(7000, 1)
    targets = np.random.default_rng(3).choice(len(corpus), 20, replace=False)
    queries = corpus[targets] + 0.02 * np.random.default_rng(4).standard_normal((20, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = queries @ corpus.T
    results = {q: _dense_top10(tmp_path / q, q, corpus, queries) for q in ("int8", "none")}
    assert _stored_quantization(tmp_path / "int8")["scalar"]["type"] == "int8"
    for row, ranked in enumerate(results["int8"]):
        for index, score in ranked:
            assert score == pytest.approx(float(exact[row, index]), abs=1e-5)
    for quantization, res in results.items():
        firsts = sum(ranked[0][0] == target for ranked, target in zip(res, targets, strict=True))
        assert firsts >= 19, quantization


class _RecordingClient:
    """The Qdrant server boundary: qdrant-client's in-process mode, with the collection config
    calls recorded (local mode keeps no quantization config, a server does)."""

    def __init__(self) -> None:
        self._local = QdrantClient(location=":memory:")
        self.created: dict[str, object] = {}
        self.updated: dict[str, object] = {}
        self.quantization: dict[str, object] = {}

    def __getattr__(self, name):
        return getattr(self._local, name)

    def create_collection(self, name, **kwargs):
        self.created[name] = kwargs.get("quantization_config")
        self.quantization[name] = kwargs.get("quantization_config")
        return self._local.create_collection(name, **kwargs)

    def update_collection(self, name, **kwargs):
        self.updated[name] = kwargs["quantization_config"]
        value = kwargs["quantization_config"]
        self.quantization[name] = None if value == models.Disabled.DISABLED else value
        return True

    def get_collection(self, name):
        info = self._local.get_collection(name)
        info.config.quantization_config = self.quantization.get(name)
        return info


def test_server_collections_get_the_same_quantization():
    client = _RecordingClient()
    QdrantServerStore(client, "int8").ensure_collections(["c"], DIM)
    assert client.created["c"].scalar.type == models.ScalarType.INT8
    assert client.created["c"].scalar.always_ram is True

    QdrantServerStore(client, "int8").ensure_collections(["c"], DIM)
    assert "c" not in client.updated  # already as wanted: no rebuild

    QdrantServerStore(client, "none").ensure_collections(["c"], DIM)
    assert client.updated["c"] == models.Disabled.DISABLED


def test_server_dense_searches_ask_for_rescoring():
    store = QdrantServerStore(QdrantClient(location=":memory:"), "int8", oversampling=3.0)
    for mode in ("dense", "hybrid"):
        request = store._request(SearchRequest(limit=5, mode=mode, dense=[0.1] * DIM, sparse=Sparse([1], [1.0])))
        params = request.params if mode == "dense" else request.prefetch[0].params
        assert params.quantization.rescore is True
        assert params.quantization.oversampling == 3.0
    assert (
        QdrantServerStore(QdrantClient(location=":memory:"), "none")
        ._request(SearchRequest(limit=5, mode="dense", dense=[0.1] * DIM))
        .params
        is None
    )


def test_settings_choose_the_quantization(tmp_path, monkeypatch):
    from llm_twin.settings import load_settings

    monkeypatch.setenv("LLM_TWIN_DENSE_QUANTIZATION", "none")
    store = open_store(load_settings(data_dir=tmp_path))
    assert store.quantization == "none"
