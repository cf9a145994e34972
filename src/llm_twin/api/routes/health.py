"""Liveness (``/health``: the process answers) and readiness (``/ready``: models loaded, store open)."""

from __future__ import annotations

from fastapi import APIRouter

from llm_twin.api.deps import ServiceDep, SettingsDep
from llm_twin.api.errors import ServiceStartingError
from llm_twin.api.schemas import ErrorResponse, HealthResponse, IngestProgressResponse, ReadyResponse
from llm_twin.observability import tracing_mode

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Liveness: the process is up")
async def health() -> HealthResponse:
    # Async and dependency-free: it answers even while every worker thread is generating.
    return HealthResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness: the LLM is loaded and the vector store is open",
    responses={
        503: {"model": ErrorResponse, "description": "Starting, or store / LLM unavailable (retried every 5 s at most)"}
    },
)
async def ready(service: ServiceDep, settings: SettingsDep) -> ReadyResponse:
    if service.starting:
        raise ServiceStartingError("models loading")
    pipeline = await service.require_pipeline()  # retries a failed start (at most every 5 s)
    progress = service.ingest_progress()
    return ReadyResponse(
        model=pipeline.llm.model_name,
        embedding_model=settings.embedding_model,
        store=pipeline.retrieval.store_backend,
        rerank_backend=settings.rerank_backend,
        rerank=pipeline.retrieval.rerank_name,
        tracing=tracing_mode(),
        ingest=IngestProgressResponse.from_snapshot(progress) if progress is not None else None,
    )
