"""``GET /metrics``: the service's Prometheus metrics (text exposition format)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from llm_twin.api.deps import TelemetryDep

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics: requests, latency per route and per pipeline stage, tokens, queues, errors",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(telemetry: TelemetryDep) -> Response:
    # Async and cheap (counters in memory): scrapes answer even while every worker is generating.
    return Response(content=telemetry.metrics.exposition(), media_type=telemetry.metrics.content_type)
