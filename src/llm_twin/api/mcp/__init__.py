"""MCP: the twin's tools for agents and desktop clients (``/mcp`` on the API, ``llm-twin mcp`` on stdio)."""

from llm_twin.api.mcp.http import MCP_PATH, mount_streamable_http
from llm_twin.api.mcp.server import AUTHORS_URI, build_mcp_server

__all__ = ["AUTHORS_URI", "MCP_PATH", "build_mcp_server", "mount_streamable_http"]
