"""The MCP server over stdio (``llm-twin mcp``), for desktop clients that start it as a subprocess."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from llm_twin.api.errors import ServiceStartingError
from llm_twin.api.mcp.server import build_mcp_server
from llm_twin.api.service import ServiceState
from llm_twin.observability import configure_tracing, shutdown_tracing
from llm_twin.settings import Settings


class StdioService:
    """Owns the process's ``ServiceState`` for the lifetime of the stdio session.

    The pipeline loads in the background: the client's handshake and ``tools/list`` answer at once
    (a desktop client gives up on a server that is silent for long), and the first tool call waits
    for the load, as ``/rag`` does behind ``llm-twin serve``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: ServiceState | None = None

    def __call__(self) -> ServiceState:
        if self._service is None:  # only before the session has started: no call can arrive then
            raise ServiceStartingError()
        return self._service

    @asynccontextmanager
    async def lifespan(self, _server: Any) -> AsyncIterator[None]:
        configure_tracing(self.settings)
        self._service = ServiceState(self.settings)
        await self._service.start(background=True)
        try:
            yield
        finally:
            await self._service.close()
            shutdown_tracing()


def serve_stdio(settings: Settings) -> None:
    """Serve until the client closes stdin. The SDK points fd 1 at stderr while it serves, so stray
    output (a native library's log) cannot corrupt the protocol stream."""
    service = StdioService(settings)
    build_mcp_server(service, lifespan=service.lifespan).run("stdio")
