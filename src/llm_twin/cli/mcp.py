"""`llm-twin mcp`: the MCP tools over stdio, for desktop clients (Claude Desktop and others)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from llm_twin.cli.errors import user_errors
from llm_twin.settings import load_settings


def mcp(
    log_level: Annotated[str, typer.Option(help="Log level (logs go to stderr; stdout is the protocol).")] = "warning",
) -> None:
    """Serve the MCP tools (search_writing, ask_twin) and the authors resource over stdin/stdout.

    A client starts this command itself; see the README's MCP section for the configuration. It
    loads the models in this process and opens the store, so it needs a store that no running
    `llm-twin serve` holds (that server offers the same tools at http://HOST:PORT/mcp).
    """
    from llm_twin.api.mcp.stdio import serve_stdio
    from llm_twin.observability import configure_tracing

    with user_errors():
        settings = load_settings()
        configure_tracing(settings)  # fail here with one line rather than inside the session
    logging.basicConfig(
        stream=sys.stderr, level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve_stdio(settings)


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command("mcp")(mcp)
