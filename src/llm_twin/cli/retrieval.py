"""`llm-twin retrieve QUERY ...` and `llm-twin eval retrieval ...`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from llm_twin.cli.errors import fail, user_errors
from llm_twin.domain.limits import check_request
from llm_twin.settings import SHARED_DIR, load_settings
from llm_twin.store.base import SEARCH_MODES

if TYPE_CHECKING:
    from llm_twin.retrieval.types import RetrievalResult
    from llm_twin.store.base import SearchMode

#: Pipeline fields reported under the option that sets them.
RETRIEVE_OPTIONS = {"k": "--k", "expand_to_n": "--expand", "author": "--author", "mode": "--mode"}
EVAL_OPTIONS = {"dataset": "--dataset", "split": "--split"}


def parse_mode(value: str) -> SearchMode:
    if value not in SEARCH_MODES:
        raise fail("--mode: must be dense, sparse or hybrid")
    return value


def retrieval_json(result: RetrievalResult) -> dict[str, Any]:
    author = result.author.author
    return {
        "rerank": result.rerank,
        "query": result.query,
        "author": None if author is None else {"id": author.id, "full_name": author.full_name},
        "author_reason": result.author.reason,
        "author_candidates": [a.full_name for a in result.author.candidates],
        "expanded_queries": result.expanded_queries,
        "search_queries": result.search_queries,
        "chunks": [
            {
                "id": c.id,
                "collection": c.collection,
                "content_type": c.content_type,
                "document_id": c.document_id,
                "author_full_name": c.author_full_name,
                "author_ids": c.author_ids,
                "score": round(c.score, 6),
                "title": c.title,
                "link": c.link,
                "date": c.date,
                "name": c.name,
                "content": c.content,
            }
            for c in result.chunks
        ],
        "hypothetical_document": result.hypothetical_document,
        "timings_ms": result.timings_ms,
        "warnings": result.warnings,
    }


def retrieve(
    query: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[Optional[int], typer.Option("--k", help="Chunks to return (default: LLM_TWIN_K).")] = None,
    expand: Annotated[
        Optional[int], typer.Option("--expand", help="Queries after expansion, original included.")
    ] = None,
    author: Annotated[Optional[str], typer.Option("--author", help="Restrict to this author (name or handle).")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="dense | sparse | hybrid")] = None,
    hyde: Annotated[
        Optional[bool],
        typer.Option("--hyde/--no-hyde", help="Blend a HyDE passage into the queries (default: LLM_TWIN_HYDE)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Retrieve the chunks a question would be answered from (no generation)."""
    from llm_twin.llm.factory import build_helper_llm
    from llm_twin.retrieval.pipeline import RetrievalPipeline

    search_mode = None if mode is None else parse_mode(mode)
    pipeline = None
    try:
        with user_errors(RETRIEVE_OPTIONS):
            settings = load_settings(**({"hyde": hyde} if hyde is not None else {}))
            # Before opening the store and loading models; the pipeline checks again.
            check_request(query, k=k, expand_to_n=expand, author=author, expand_max=settings.expand_max)
            needs_helper = (expand or settings.expand_to_n) > 1 or settings.self_query_llm or settings.hyde
            helper = build_helper_llm(settings) if needs_helper else None
            pipeline = RetrievalPipeline(settings, helper_llm=helper)
            result = pipeline.run(query, k=k, expand_to_n=expand, author=author, mode=search_mode)
    finally:
        if pipeline is not None:
            pipeline.close()
    if as_json:
        sys.stdout.write(json.dumps(retrieval_json(result), ensure_ascii=False) + "\n")
        return
    console = Console()
    who = result.author.author.full_name if result.author.author else "none"
    console.print(f"[bold]author:[/bold] {who} ({result.author.reason})   [bold]rerank:[/bold] {result.rerank}")
    for i, q in enumerate(result.expanded_queries):
        console.print(f"  query {i + 1}: {q}", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for i, c in enumerate(result.chunks, 1):
        console.print(
            f"\n[bold][{i}][/bold] {c.collection}  score={c.score:.4f}  {c.title or ''}  — {c.author_full_name}",
            highlight=False,
        )
        console.print(c.content[:400] + ("…" if len(c.content) > 400 else ""), highlight=False, markup=False)
    console.print("\ntimings_ms: " + ", ".join(f"{k}={v:.1f}" for k, v in result.timings_ms.items()), highlight=False)


def eval_retrieval(
    dataset: Annotated[Path, typer.Option("--dataset", help="BEIR-format directory.")] = SHARED_DIR
    / "data"
    / "scifact",
    mode: Annotated[str, typer.Option("--mode", help="dense | sparse | hybrid")] = "hybrid",
    rerank: Annotated[str, typer.Option("--rerank", help="none | llm | cross-encoder")] = "none",
    fusion: Annotated[
        Optional[str], typer.Option("--fusion", help="Hybrid fusion: rrf | dbsf (default: LLM_TWIN_FUSION).")
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Evaluate only the first N test queries.")] = None,
    hyde: Annotated[
        bool, typer.Option("--hyde", help="Blend a HyDE passage from the helper LLM into each query (slow on CPU).")
    ] = False,
    hyde_instruction: Annotated[
        Optional[str],
        typer.Option(
            "--hyde-instruction",
            help="Instruction for the HyDE passage; {query} marks the question (default: LLM_TWIN_HYDE_INSTRUCTION or a generic one).",
        ),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="Which qrels to score: test, train or dev (qrels/<split>.tsv).")
    ] = "test",
    embedding_model: Annotated[
        Optional[str],
        typer.Option(
            "--embedding-model",
            help="Evaluate another embedder (a local ONNX model directory); it gets its own eval store.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """nDCG@10, Recall@100 and MRR@10 on a BEIR dataset (ingested into its own data directory)."""
    from llm_twin.retrieval.evaluation import run_eval

    search_mode = parse_mode(mode)
    if rerank not in ("none", "llm", "cross-encoder"):
        raise fail("--rerank: must be none, llm or cross-encoder")
    if fusion is not None and fusion not in ("rrf", "dbsf"):
        raise fail("--fusion: must be rrf or dbsf")
    if limit is not None and limit < 1:
        raise fail("--limit: must be at least 1")
    with user_errors(EVAL_OPTIONS):
        overrides = {"fusion": fusion, "hyde_instruction": hyde_instruction, "embedding_model": embedding_model}
        settings = load_settings(**{key: value for key, value in overrides.items() if value is not None})
        result = run_eval(settings, dataset, search_mode, rerank, limit, progress=not as_json, hyde=hyde, split=split)
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
        return
    table = Table(
        title=f"{result.dataset}: {result.queries} queries, mode={result.mode}, rerank={result.rerank}, fusion={result.fusion}, hyde={result.hyde}"
    )
    for metric in result.metrics:
        table.add_column(metric, justify="right")
    table.add_row(*(f"{v:.4f}" for v in result.metrics.values()))
    Console().print(table)


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command("retrieve")(retrieve)
    eval_app.command("retrieval")(eval_retrieval)
