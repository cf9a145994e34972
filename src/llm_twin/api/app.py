"""The FastAPI application: ``create_app()`` wires settings, the pipeline, routers and error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_twin import __version__
from llm_twin.api.errors import install_error_handlers
from llm_twin.api.mcp import build_mcp_server, mount_streamable_http
from llm_twin.api.routes import health, openai, rag
from llm_twin.api.service import ServiceState
from llm_twin.observability import configure_tracing, set_attributes, trace_span
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import Settings, get_settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: Probes and static files are not worth a trace each.
UNTRACED_PREFIXES = ("/health", "/ready", "/static", "/docs", "/openapi.json", "/favicon")


class TracingMiddleware:
    """One span per HTTP request, open until the response body is fully sent (streams included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == "/" or path.startswith(UNTRACED_PREFIXES):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        with trace_span(f"{method} {path}", http__request__method=method, url__path=path) as span:

            async def send_and_record(message: Message) -> None:
                if message["type"] == "http.response.start":
                    set_attributes(span, {"http.response.status_code": message["status"]})
                await send(message)

            await self.app(scope, receive, send_and_record)


def create_app(
    settings: Settings | None = None, pipeline: RAGPipeline | None = None, *, background_start: bool = False
) -> FastAPI:
    """The API. ``pipeline`` (tests, embedding in another app) skips building one from ``settings``.

    The pipeline is built and warmed once, in a worker thread, when the app starts (lifespan).
    ``background_start`` (``llm-twin serve``) lets the server accept connections meanwhile: ``/health``
    answers during the model load, ``/ready`` returns 503 "starting", ``/rag`` waits for the load.
    ``/mcp`` serves the MCP tools over streamable HTTP, answering through the same pipeline and limit.
    """
    settings = settings or (pipeline.settings if pipeline is not None else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_tracing(settings)  # a misconfigured exporter fails startup, with a clear message
        service = ServiceState(settings, pipeline)
        app.state.service = service
        await service.start(background=background_start)
        try:
            async with mcp_sessions.run():  # the MCP transport's task group lives as long as the app
                yield
        finally:
            await service.close()

    app = FastAPI(
        title="LLM Twin",
        version=__version__,
        summary="Answers in the voice and knowledge of a set of authors, grounded in what they wrote.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(TracingMiddleware)
    app.include_router(health.router)
    app.include_router(rag.router)
    app.include_router(openai.router)
    # The tools find the service when called: it is built when the app starts, after the routes.
    mcp_sessions = mount_streamable_http(app, build_mcp_server(lambda: app.state.service), settings)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    return app
