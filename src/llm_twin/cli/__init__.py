"""`llm-twin` command line: ingest | retrieve | ask | serve | mcp | traces | eval | deploy | undeploy | train.

One module per area registers its commands; this module only wires them up.
"""

from __future__ import annotations

import typer

from llm_twin.cli import answers, authors, deploy, ingest, mcp, retrieval, serve, traces, train

app = typer.Typer(
    name="llm-twin",
    help="RAG inference for LLM twins: ingest, retrieve, ask, serve, evaluate, deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate parts of the pipeline.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

for _area in (ingest, retrieval, answers, authors, serve, mcp, traces, deploy, train):
    _area.register(app, eval_app)


def main() -> None:  # pragma: no cover - console entry point
    app()
