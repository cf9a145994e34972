"""Server backend: a Qdrant server or cluster through qdrant-client (also its in-process ``:memory:`` mode)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from llm_twin.domain.deadline import Deadline
from llm_twin.errors import StoreUnavailableError
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

T = TypeVar("T")

logger = logging.getLogger(__name__)


def _author_filter(author_ids: tuple[str, ...] | None) -> models.Filter | None:
    if not author_ids:
        return None
    return models.Filter(must=[models.FieldCondition(key="author_id", match=models.MatchAny(any=list(author_ids)))])


class QdrantServerStore:
    """Same semantics as the embedded store, quantization included (the server builds it in the background)."""

    backend = "server"

    def __init__(
        self,
        client: QdrantClient,
        quantization: DenseQuantization = "int8",
        oversampling: float = 2.0,
        *,
        max_retries: int = 2,
        backoff_s: float = 0.2,
    ) -> None:
        self.client = client
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.quantization = quantization
        self._dense_params: models.SearchParams | None = None
        if quantization == "int8":
            quantized = models.QuantizationSearchParams(rescore=True, oversampling=oversampling)
            self._dense_params = models.SearchParams(quantization=quantized)

    @classmethod
    def connect(
        cls,
        url: str,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        quantization: DenseQuantization = "int8",
        oversampling: float = 2.0,
    ) -> QdrantServerStore:
        if url == ":memory:":
            store = cls(QdrantClient(location=":memory:"), quantization, oversampling)
            store._dense_params = None  # local mode searches exactly; search params would only warn
            return store
        return cls(QdrantClient(url=url, api_key=api_key, timeout=int(max(1, timeout_s))), quantization, oversampling)

    def _quantization_config(self) -> models.ScalarQuantization | None:
        if self.quantization != "int8":
            return None
        return models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=INT8_QUANTILE, always_ram=True)
        )

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` with bounded retries (backoff with jitter) on connection errors, timeouts and 5xx,
        never sleeping past the request's deadline; every write is idempotent (deterministic ids)."""
        for attempt in range(self.max_retries + 1):
            try:
                return fn(*args, **kwargs)
            except (ResponseHandlingException, ConnectionError, TimeoutError) as error:
                failure = StoreUnavailableError(f"Qdrant server unavailable: {type(error).__name__}")
            except UnexpectedResponse as error:
                if error.status_code == 404:
                    raise StoreUnavailableError(
                        "collection missing on the Qdrant server: run `llm-twin ingest` first"
                    ) from None
                failure = StoreUnavailableError(f"Qdrant server error (HTTP {error.status_code})")
                if error.status_code is None or error.status_code < 500:
                    raise failure from None
            delay = self.backoff_s * (2**attempt) * (1 + random.random() * 0.25)
            if attempt == self.max_retries or Deadline.bound_current(delay + 1.0) < delay + 1.0:
                raise failure from None
            logger.warning("%s; retry %d/%d in %.2fs", failure, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def ensure_collections(self, names: list[str], dimension: int) -> None:
        wanted = self._quantization_config()
        for name in names:
            if self._call(self.client.collection_exists, name):
                current = self._call(self.client.get_collection, name).config.quantization_config
                if current != wanted:  # the server rebuilds (or drops) the quantized copy in the background
                    self._call(
                        self.client.update_collection, name, quantization_config=wanted or models.Disabled.DISABLED
                    )
                continue
            self._call(
                self.client.create_collection,
                name,
                vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                quantization_config=wanted,
            )
            for field_name in INDEXED_FIELDS:
                self._call(self.client.create_payload_index, name, field_name, models.PayloadSchemaType.KEYWORD)

    def open_existing(self, names: list[str]) -> None:
        for name in names:
            if not self._call(self.client.collection_exists, name):
                raise StoreUnavailableError(f"collection {name!r} missing on the Qdrant server: run `llm-twin ingest`")

    def upsert(self, collection: str, points: list[StoredPoint]) -> None:
        if not points:
            return
        self._call(
            self.client.upsert,
            collection,
            points=[
                models.PointStruct(
                    id=p.id,
                    vector={
                        DENSE: p.dense,
                        SPARSE: models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                    },
                    payload=p.payload,
                )
                for p in points
            ],
            wait=True,
        )

    def delete_document(self, collection: str, document_id: str) -> None:
        self._call(
            self.client.delete,
            collection,
            points_selector=models.FilterSelector(
                filter=models.Filter(
                    must=[models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))]
                )
            ),
            wait=True,
        )

    def flush(self) -> None:  # the server persists on its own
        return None

    def optimize(self) -> None:  # the server's optimizers run in the background
        return None

    def count(self, collection: str) -> int:
        return self._call(self.client.count, collection, exact=True).count

    def query_batch(self, collection: str, requests: list[SearchRequest]) -> list[list[Hit]]:
        if not requests:
            return []
        responses = self._call(
            self.client.query_batch_points, collection, requests=[self._request(r) for r in requests]
        )
        return [
            [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in response.points]
            for response in responses
        ]

    def _request(self, r: SearchRequest) -> models.QueryRequest:
        flt = _author_filter(r.author_ids)
        sparse = models.SparseVector(indices=r.sparse.indices, values=r.sparse.values) if r.sparse else None
        if r.mode == "hybrid":
            return models.QueryRequest(
                prefetch=[
                    models.Prefetch(
                        query=r.dense, using=DENSE, limit=r.prefetch_limit, filter=flt, params=self._dense_params
                    ),
                    models.Prefetch(query=sparse, using=SPARSE, limit=r.prefetch_limit, filter=flt),
                ],
                query=(
                    models.RrfQuery(rrf=models.Rrf(k=r.rrf_k))
                    if r.fusion == "rrf"
                    else models.FusionQuery(fusion=models.Fusion.DBSF)
                ),
                filter=flt,
                limit=r.limit,
                with_payload=r.with_payload,
            )
        if r.mode == "dense":
            return models.QueryRequest(
                query=r.dense,
                using=DENSE,
                filter=flt,
                limit=r.limit,
                params=self._dense_params,
                with_payload=r.with_payload,
            )
        return models.QueryRequest(query=sparse, using=SPARSE, filter=flt, limit=r.limit, with_payload=r.with_payload)

    def retrieve(self, collection: str, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        records = self._call(self.client.retrieve, collection, ids=list(ids), with_payload=True, with_vectors=False)
        return {str(r.id): dict(r.payload or {}) for r in records}

    def close(self) -> None:
        self.client.close()
