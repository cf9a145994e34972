"""The MCP server over streamable HTTP, on the API app itself: ``POST /mcp``."""

from __future__ import annotations

from fastapi import FastAPI
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from llm_twin.settings import Settings

MCP_PATH = "/mcp"


def mount_streamable_http(app: FastAPI, server: MCPServer, settings: Settings) -> StreamableHTTPSessionManager:
    """Add ``/mcp`` to ``app``; the caller runs the returned manager (``async with manager.run()``)
    inside the app's lifespan, since a mounted app's own lifespan never runs.

    Stateless with JSON responses: the tools need no server-to-client requests, so a session would
    only be state that a restart or a second replica loses. The route is added to the app's own
    router rather than mounted, so ``/mcp`` needs no trailing-slash redirect and unknown paths keep
    the API's 404. The SDK's DNS-rebinding check (allowed ``Host``/``Origin``) is on when the app is
    bound to a loopback address (``LLM_TWIN_API_HOST``), as a local server is what it protects.
    """
    mcp_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, host=settings.api_host
    )
    app.router.routes.extend(mcp_app.routes)
    return server.session_manager
