"""`llm-twin` command line: ingest | retrieve | ask | serve | eval | deploy | undeploy | train.

Each area registers its own commands (``<area>/commands.py``); this module only wires them up.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="llm-twin",
    help="RAG inference for LLM twins: ingest, retrieve, ask, serve, evaluate, deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate parts of the pipeline.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

for _area in ("ingest", "retrieval", "api", "deploy", "training"):
    try:
        _module = importlib.import_module(f"llm_twin.{_area}.commands")
    except ModuleNotFoundError as _error:  # an area not built yet must not break the others
        if _error.name != f"llm_twin.{_area}.commands":
            raise
        continue
    _module.register(app, eval_app)


def main() -> None:  # pragma: no cover - console entry point
    app()
