"""Embedded backend: the Qdrant engine in-process (qdrant-edge), one shard directory per collection."""

from __future__ import annotations

import threading
from pathlib import Path

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    Fusion,
    MatchAny,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    Point,
    Prefetch,
    QuantizationSearchParams,
    Query,
    QueryBatchRequest,
    QueryRequest,
    ScalarQuantizationConfig,
    ScalarType,
    SearchParams,
    SparseVector,
    UpdateOperation,
)

from llm_twin.errors import StoreLockedError, StoreUnavailableError
from llm_twin.store.base import (
    DENSE,
    INDEXED_FIELDS,
    INT8_QUANTILE,
    SPARSE,
    DenseQuantization,
    Hit,
    SearchRequest,
    StoredPoint,
)


def _author_filter(author_ids: tuple[str, ...] | None) -> Filter | None:
    if not author_ids:
        return None
    return Filter(must=[FieldCondition(key="author_id", match=MatchAny(list(author_ids)))])


class EdgeVectorStore:
    """One qdrant-edge shard per collection.

    ``quantization="int8"`` keeps a scalar int8 copy of the dense vectors in RAM for the HNSW walk;
    the candidates (``oversampling`` times the limit) are rescored with the original vectors, so
    scores stay exact cosines. The write path (``ensure_collections``) applies the setting to
    existing shards too, and the next ``optimize()`` builds the copy; the read path never rewrites
    a shard. ``"none"`` makes searches ignore a copy built earlier.
    """

    backend = "embedded"

    def __init__(self, directory: Path, quantization: DenseQuantization = "int8", oversampling: float = 2.0) -> None:
        self.directory = Path(directory)
        self.quantization = quantization
        self._shards: dict[str, EdgeShard] = {}
        self._lock = threading.Lock()
        if quantization == "int8":
            quantized = QuantizationSearchParams(rescore=True, oversampling=oversampling)
        else:
            quantized = QuantizationSearchParams(ignore=True)
        self._dense_params = SearchParams(quantization=quantized)

    # --- lifecycle ----------------------------------------------------------------------
    def _open(self, name: str, dimension: int | None) -> EdgeShard:
        with self._lock:
            if name in self._shards:
                return self._shards[name]
            path = self.directory / name
            try:
                if path.exists() and any(path.iterdir()):
                    # With a dimension this is the write path: the stored config is brought up to
                    # date (compatibility is checked by the engine); reads load the shard as it is.
                    shard = EdgeShard.load(str(path), self._config(dimension) if dimension else None)
                elif dimension is None:
                    raise StoreUnavailableError(
                        f"collection {name!r} does not exist under {self.directory}: run `llm-twin ingest` first"
                    )
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    shard = EdgeShard.create(str(path), self._config(dimension))
                    for field_name in INDEXED_FIELDS:
                        shard.update(UpdateOperation.create_field_index(field_name, PayloadSchemaType.Keyword))
            except StoreUnavailableError:
                raise
            except Exception as error:  # the engine reports a held WAL lock as an OS error
                text = str(error)
                if "WouldBlock" in text or "lock" in text.lower():
                    raise StoreLockedError(
                        f"the embedded store at {self.directory} is in use by another process "
                        "(stop the running server, or point LLM_TWIN_QDRANT_URL at a Qdrant server)"
                    ) from None
                raise StoreUnavailableError(f"cannot open collection {name!r} at {path}: {text}") from None
            self._shards[name] = shard
            return shard

    def _config(self, dimension: int) -> EdgeConfig:
        quantization = None
        if self.quantization == "int8":
            quantization = ScalarQuantizationConfig(type=ScalarType.Int8, quantile=INT8_QUANTILE, always_ram=True)
        return EdgeConfig(
            vectors={DENSE: EdgeVectorParams(size=dimension, distance=Distance.Cosine)},
            sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
            quantization_config=quantization,
        )

    def ensure_collections(self, names: list[str], dimension: int) -> None:
        for name in names:
            self._open(name, dimension)

    def open_existing(self, names: list[str]) -> None:
        for name in names:
            self._open(name, None)

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()

    # --- writes ---------------------------------------------------------------------------
    def upsert(self, collection: str, points: list[StoredPoint]) -> None:
        if not points:
            return
        shard = self._open(collection, len(points[0].dense))
        shard.update(
            UpdateOperation.upsert_points(
                [
                    Point(
                        p.id,
                        {DENSE: p.dense, SPARSE: SparseVector(p.sparse.indices, p.sparse.values)},
                        p.payload,
                    )
                    for p in points
                ]
            )
        )

    def delete_document(self, collection: str, document_id: str) -> None:
        shard = self._open(collection, None)
        shard.update(
            UpdateOperation.delete_points_by_filter(
                Filter(must=[FieldCondition(key="document_id", match=MatchValue(document_id))])
            )
        )

    def flush(self) -> None:
        for shard in list(self._shards.values()):
            shard.flush()

    def optimize(self) -> None:
        for shard in list(self._shards.values()):
            shard.optimize()
            shard.flush()

    # --- reads ----------------------------------------------------------------------------
    def count(self, collection: str) -> int:
        return self._open(collection, None).count(CountRequest(exact=True))

    def query_batch(self, collection: str, requests: list[SearchRequest]) -> list[list[Hit]]:
        if not requests:
            return []
        shard = self._open(collection, None)
        results = shard.query_batch(QueryBatchRequest([self._request(r) for r in requests]))
        return [[Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in rs] for rs in results]

    def _request(self, r: SearchRequest) -> QueryRequest:
        flt = _author_filter(r.author_ids)
        dense = Query.Nearest(r.dense, using=DENSE) if r.dense is not None else None
        sparse = (
            Query.Nearest(SparseVector(r.sparse.indices, r.sparse.values), using=SPARSE)
            if r.sparse is not None
            else None
        )
        if r.mode == "hybrid":
            return QueryRequest(
                limit=r.limit,
                prefetches=[
                    Prefetch(limit=r.prefetch_limit, query=dense, filter=flt, params=self._dense_params),
                    Prefetch(limit=r.prefetch_limit, query=sparse, filter=flt),
                ],
                query=Fusion.Rrf(k=r.rrf_k) if r.fusion == "rrf" else Fusion.Dbsf(),  # type: ignore[arg-type]  # the stub lists Fusion, not its variants
                filter=flt,
                with_payload=r.with_payload,
            )
        if r.mode == "dense":
            return QueryRequest(
                limit=r.limit, query=dense, filter=flt, params=self._dense_params, with_payload=r.with_payload
            )
        return QueryRequest(limit=r.limit, query=sparse, filter=flt, with_payload=r.with_payload)

    def retrieve(self, collection: str, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        records = self._open(collection, None).retrieve(list(ids), with_payload=True, with_vector=False)
        return {str(r.id): dict(r.payload or {}) for r in records}
