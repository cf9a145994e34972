"""``llm-twin traces``: a local trace viewer (Arize Phoenix) for the service's spans.

Phoenix is a large install (a web app, its database layer, many dependencies), so it lives in its
own virtual environment (``.venv-phoenix``), installed on first use and never imported by the
service. It runs bound to 127.0.0.1, with its AI assistant, the assistant's web access and shell,
its MCP server, telemetry pixels and every request to the public internet turned off: a viewer,
nothing else. The service reaches it over OTLP/HTTP (Phoenix accepts traces at ``/v1/traces`` on
its web port); the command prints the variables that point the service at it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from llm_twin.cli.errors import fail
from llm_twin.errors import EXIT_FAILED
from llm_twin.settings import PROJECT_ROOT

PHOENIX_PACKAGE = "arize-phoenix==20.26.1"
DEFAULT_VENV = PROJECT_ROOT / ".venv-phoenix"
HOST = "127.0.0.1"

#: Phoenix's own switches (its ``phoenix.config``): a local, offline viewer with no agent features.
VIEWER_ONLY = {
    "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",  # the assistant chat (/chat)
    "PHOENIX_AGENTS_DISABLE_WEB_ACCESS": "true",  # its web search and web fetch
    "PHOENIX_AGENTS_DISABLE_BASH": "true",  # its server-side shell tool
    "PHOENIX_AGENTS_DISABLE_GITHUB": "true",
    "PHOENIX_ENABLE_MCP_SERVER": "false",
    "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",  # no fonts, telemetry or downloads from the internet
    "PHOENIX_TELEMETRY_ENABLED": "false",
}


def phoenix_environment(port: int, grpc_port: int, working_dir: Path) -> dict[str, str]:
    """The variables Phoenix is started with (on top of the caller's environment)."""
    return {
        "PHOENIX_HOST": HOST,
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_WORKING_DIR": str(working_dir),
        **VIEWER_ONLY,
    }


def service_environment(port: int) -> dict[str, str]:
    """What points ``llm-twin serve`` at the viewer (standard OTEL variables; LLM_TWIN_TRACING=auto reads them)."""
    return {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://{HOST}:{port}/v1/traces",
        "LLM_TWIN_TRACING": "otlp",
    }


def install_commands(venv: Path, python: str = sys.executable) -> list[list[str]]:
    return [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", PHOENIX_PACKAGE],
    ]


def traces(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Phoenix's web UI and OTLP/HTTP port.")] = 6006,
    grpc_port: Annotated[int, typer.Option(min=1, max=65535, help="Phoenix's OTLP/gRPC port.")] = 4317,
    venv: Annotated[Path, typer.Option(help="Phoenix's own virtual environment.")] = DEFAULT_VENV,
    working_dir: Annotated[Path, typer.Option(help="Where Phoenix keeps its traces (SQLite).")] = PROJECT_ROOT
    / "data"
    / "phoenix",
    install: Annotated[
        bool, typer.Option("--install/--no-install", help="Install Phoenix into --venv when it is missing.")
    ] = True,
    print_env: Annotated[
        bool, typer.Option("--print-env", help="Only print the variables for the service, then exit.")
    ] = False,
) -> None:
    """Start Arize Phoenix on 127.0.0.1 as a local trace viewer and print how to send traces to it."""
    exports = "\n".join(f"export {name}={value}" for name, value in service_environment(port).items())
    if print_env:
        typer.echo(exports)
        return
    phoenix = venv / "bin" / "phoenix"
    if not phoenix.is_file():
        if not install:
            raise fail(f"Phoenix is not installed in {venv} (run without --no-install, or make traces)")
        typer.echo(f"installing {PHOENIX_PACKAGE} into {venv} (once; a large download) ...", err=True)
        for command in install_commands(venv):
            if subprocess.run(command, check=False).returncode != 0:
                raise fail(f"installing Phoenix failed: {' '.join(command)}", EXIT_FAILED)
    working_dir.mkdir(parents=True, exist_ok=True)
    typer.echo(f"Phoenix: http://{HOST}:{port}  (Ctrl-C stops it)\nIn the service's shell:\n{exports}", err=True)
    environment = os.environ | phoenix_environment(port, grpc_port, working_dir)
    try:
        code = subprocess.run([str(phoenix), "serve"], env=environment, check=False).returncode
    except KeyboardInterrupt:
        code = 0
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command("traces")(traces)
