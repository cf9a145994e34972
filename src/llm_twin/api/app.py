"""The FastAPI application: ``create_app()`` wires settings, the pipeline, routers and error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from llm_twin import __version__
from llm_twin.api.errors import install_error_handlers
from llm_twin.api.mcp import build_mcp_server, mount_streamable_http
from llm_twin.api.routes import authors, documents, feedback, health, metrics, openai, rag
from llm_twin.api.security import ApiKeyMiddleware, BodySizeLimitMiddleware
from llm_twin.api.service import ServiceState
from llm_twin.api.telemetry import Telemetry, TelemetryMiddleware
from llm_twin.domain.limits import MAX_DOCUMENTS_BODY_BYTES
from llm_twin.observability import configure_tracing
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import Settings, get_settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """Outermost first: CORS (answers preflights, which carry no key) → API keys and rate limit →
    body size → the routes; telemetry (traces, metrics) goes outside them all, so refusals are
    counted and traced too. Pure ASGI, so routers and sub-apps added later are covered as well.
    (``add_middleware`` puts each one outside the ones before.)"""
    # Documents are bulk writes with their own, larger limit (``POST /documents`` checks it too).
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        path_limits={"/documents": max(settings.max_body_bytes, MAX_DOCUMENTS_BODY_BYTES)},
    )
    app.add_middleware(
        ApiKeyMiddleware,
        keys=[key.get_secret_value() for key in settings.api_keys],
        metrics_require_key=settings.metrics_require_key,
        rate_limit_per_minute=settings.rate_limit_per_minute,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
            expose_headers=["Retry-After"],
        )


def create_app(
    settings: Settings | None = None,
    pipeline: RAGPipeline | None = None,
    *,
    background_start: bool = False,
    ingest_paths: Sequence[Path] = (),
    watch_dir: Path | None = None,
) -> FastAPI:
    """The API. ``pipeline`` (tests, embedding in another app) skips building one from ``settings``.

    The pipeline is built and warmed once, in a worker thread, when the app starts (lifespan).
    ``background_start`` (``llm-twin serve``) lets the server accept connections meanwhile: ``/health``
    answers during the model load, ``/ready`` returns 503 "starting", ``/rag`` waits for the load.
    ``/mcp`` serves the MCP tools over streamable HTTP, answering through the same pipeline and limit.
    ``ingest_paths`` are ingested in the background from the start (serve first), and ``watch_dir``'s
    JSONL files as they land; ``/ready`` reports the progress.
    """
    settings = settings or (pipeline.settings if pipeline is not None else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_tracing(settings)  # a misconfigured exporter fails startup, with a clear message
        service = ServiceState(
            settings, pipeline, listeners=[telemetry.record_answer], ingest_paths=ingest_paths, watch_dir=watch_dir
        )
        app.state.service = service
        telemetry.watch_service(service)
        await service.start(background=background_start)
        try:
            async with mcp_sessions.run():  # the MCP transport's task group lives as long as the app
                yield
        finally:
            await service.close()

    telemetry = Telemetry()
    app = FastAPI(
        title="LLM Twin",
        version=__version__,
        summary="Answers in the voice and knowledge of a set of authors, grounded in what they wrote.",
        lifespan=lifespan,
    )
    app.state.telemetry = telemetry
    install_error_handlers(app)
    install_middleware(app, settings)
    # Added last, so outermost: it sees (and counts) every response, other middlewares' included.
    app.add_middleware(TelemetryMiddleware, telemetry=telemetry)
    app.include_router(health.router)
    app.include_router(rag.router)
    app.include_router(authors.router)
    app.include_router(openai.router)
    app.include_router(documents.router)
    # The tools find the service when called: it is built when the app starts, after the routes.
    mcp_sessions = mount_streamable_http(app, build_mcp_server(lambda: app.state.service), settings)
    app.include_router(feedback.router)
    app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    return app
