"""`llm-twin retrieve QUERY ...` and `llm-twin eval retrieval ...`."""

from __future__ import annotations

import difflib
import json
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from llm_twin.cli.errors import fail, user_errors
from llm_twin.domain.limits import check_request
from llm_twin.settings import SHARED_DIR, Settings, load_settings
from llm_twin.store.base import SEARCH_MODES

if TYPE_CHECKING:
    from llm_twin.retrieval.twin_eval import TwinEvalResult
    from llm_twin.retrieval.types import RetrievalResult
    from llm_twin.store.base import SearchMode

#: Pipeline fields reported under the option that sets them.
RETRIEVE_OPTIONS = {"k": "--k", "expand_to_n": "--expand", "author": "--author", "mode": "--mode"}
EVAL_OPTIONS = {"dataset": "--dataset", "split": "--split"}
TWIN_EVAL_OPTIONS = {"questions": "--questions", "k": "--k", "expand_to_n": "--expand"}


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


def parse_overrides(items: list[str] | None) -> dict[str, object]:
    """``--set key=value`` pairs -> ``load_settings`` overrides; keys are Settings fields.

    Values stay strings for pydantic to convert ("5", "false", "balanced"); an empty value, "none" or
    "null" is None for a field that may be unset (``--set aliases_file=``), never for a field whose
    values include the word "none" (``--set rerank_backend=none``).
    """
    fields = Settings.model_fields
    overrides: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lower().removeprefix("llm_twin_")
        if not sep or not key:
            raise fail(f"--set: expected key=value, got {item!r}")
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3)
            hint = f" (closest: {', '.join(close)})" if close else ""
            raise fail(f"--set: unknown setting {key!r}{hint}")
        value = value.strip()
        nullable = type(None) in typing.get_args(fields[key].annotation)
        overrides[key] = None if nullable and value.lower() in ("", "none", "null") else value
    return overrides


#: BEIR-only options, and what to use with --questions instead.
BEIR_ONLY = {
    "dataset": ("--dataset", "the store in LLM_TWIN_DATA_DIR is evaluated"),
    "mode": ("--mode", "use --set search_mode=..."),
    "rerank": ("--rerank", "use --set rerank_backend=..."),
    "fusion": ("--fusion", "use --set fusion=..."),
    "hyde": ("--hyde", "use --set hyde=true"),
    "hyde_instruction": ("--hyde-instruction", "use --set hyde_instruction=..."),
    "split": ("--split", "a questions file has no splits"),
    "embedding_model": ("--embedding-model", "use --set embedding_model=... (the store must hold its vectors)"),
}
TWIN_ONLY = {"k": "--k", "expand": "--expand"}


def _given(ctx: typer.Context, name: str) -> bool:
    """The user typed the option (or set its environment variable); compared by name because Typer
    ships its own copy of click, whose ``ParameterSource`` is not ``click.core``'s."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def eval_retrieval(
    ctx: typer.Context,
    dataset: Annotated[Path, typer.Option("--dataset", help="BEIR-format directory.")] = SHARED_DIR
    / "data"
    / "scifact",
    mode: Annotated[str, typer.Option("--mode", help="dense | sparse | hybrid")] = "hybrid",
    rerank: Annotated[str, typer.Option("--rerank", help="none | llm | cross-encoder")] = "none",
    fusion: Annotated[
        Optional[str], typer.Option("--fusion", help="Hybrid fusion: rrf | dbsf (default: LLM_TWIN_FUSION).")
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", help="Evaluate only the first N test queries (or questions).")
    ] = None,
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
    questions: Annotated[
        Optional[Path],
        typer.Option(
            "--questions",
            help="Twin questions (JSONL, schema in evaluation/twin_dev/README.md): hit@k, MRR, nDCG@k, context "
            "precision and author resolution over the existing store (LLM_TWIN_DATA_DIR) instead of a BEIR dataset.",
        ),
    ] = None,
    k: Annotated[
        Optional[int], typer.Option("--k", help="--questions: chunks per question (default: LLM_TWIN_K).")
    ] = None,
    expand: Annotated[
        Optional[int],
        typer.Option(
            "--expand", help="--questions: queries after expansion, original included (default: LLM_TWIN_EXPAND_TO_N)."
        ),
    ] = None,
    overrides: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            help="Override a setting for this run, key=value (a Settings field, e.g. k_split=balanced); repeatable.",
        ),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the JSON report to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """nDCG@10, Recall@100 and MRR@10 on a BEIR dataset (ingested into its own data directory), or with
    --questions the twin's own questions over the existing store."""
    if limit is not None and limit < 1:
        raise fail("--limit: must be at least 1")
    settings_overrides = parse_overrides(overrides)
    if questions is not None:
        for name, (option, instead) in BEIR_ONLY.items():
            if _given(ctx, name):
                raise fail(f"{option}: not used with --questions ({instead})")
        _eval_questions(questions, settings_overrides, k, expand, limit, out, as_json)
        return
    for name, option in TWIN_ONLY.items():
        if _given(ctx, name):
            raise fail(f"{option}: only with --questions")
    _eval_beir(
        dataset,
        mode,
        rerank,
        fusion,
        limit,
        hyde,
        hyde_instruction,
        split,
        embedding_model,
        settings_overrides,
        out,
        as_json,
    )


def _eval_beir(
    dataset: Path,
    mode: str,
    rerank: str,
    fusion: str | None,
    limit: int | None,
    hyde: bool,
    hyde_instruction: str | None,
    split: str,
    embedding_model: str | None,
    settings_overrides: dict[str, object],
    out: Path | None,
    as_json: bool,
) -> None:
    from llm_twin.retrieval.evaluation import run_eval

    search_mode = parse_mode(mode)
    if rerank not in ("none", "llm", "cross-encoder"):
        raise fail("--rerank: must be none, llm or cross-encoder")
    if fusion is not None and fusion not in ("rrf", "dbsf"):
        raise fail("--fusion: must be rrf or dbsf")
    with user_errors(EVAL_OPTIONS):
        options = {"fusion": fusion, "hyde_instruction": hyde_instruction, "embedding_model": embedding_model}
        settings = load_settings(
            **{**settings_overrides, **{key: value for key, value in options.items() if value is not None}}
        )
        result = run_eval(settings, dataset, search_mode, rerank, limit, progress=not as_json, hyde=hyde, split=split)
    if out is not None:
        _write_report(out, json.dumps(result.as_dict(), indent=2))
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


def _write_report(out: Path, text: str) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as error:
        raise fail(f"--out: cannot write {out} ({error.strerror or error})") from None


def _eval_questions(
    questions: Path,
    settings_overrides: dict[str, object],
    k: int | None,
    expand: int | None,
    limit: int | None,
    out: Path | None,
    as_json: bool,
) -> None:
    from llm_twin.retrieval.twin_eval import QuestionScore, run_twin_eval

    err = Console(stderr=True)
    with user_errors(TWIN_EVAL_OPTIONS):
        settings = load_settings(**settings_overrides)
        with Progress(
            TextColumn("[bold]eval"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("questions  hit {task.fields[hit]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=as_json,
        ) as progress:
            task = progress.add_task("eval", total=None, hit="-")
            hits: list[float] = []

            def on_start(total: int) -> None:
                progress.update(task, total=total)

            def on_progress(score: QuestionScore) -> None:
                hits.append(score.hit)
                progress.update(task, advance=1, hit=f"{sum(hits) / len(hits):.3f}")

            result = run_twin_eval(
                settings, questions, k=k, expand_to_n=expand, limit=limit, on_start=on_start, on_progress=on_progress
            )
    if out is not None:
        _write_report(out, result.to_json(indent=2))
    if as_json:
        sys.stdout.write(result.to_json() + "\n")
        return
    _print_twin_result(result)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_twin_result(result: TwinEvalResult) -> None:
    console = Console()
    table = Table(
        title=f"{result.questions_file}: {result.overall.questions} questions, k={result.k}, "
        f"expand={result.expand_to_n}, k_split={result.settings.get('k_split')}, rerank={result.rerank}"
    )
    k = result.k
    table.add_column("group", no_wrap=True)
    for column in ("n", f"hit@{k}", "MRR", f"nDCG@{k}", "ctx prec", "author", "nobody"):
        table.add_column(column, justify="right")
    groups = [("all", result.overall)]
    groups += [(f"phrasing: {name}", m) for name, m in result.by_phrasing.items()]
    groups += [(f"type: {name}", m) for name, m in result.by_content_type.items()]
    for name, m in groups:
        table.add_row(
            name,
            str(m.questions),
            _fmt(m.hit_at_k),
            _fmt(m.mrr),
            _fmt(m.ndcg_at_k),
            _fmt(m.context_precision),
            _fmt(m.author_accuracy),
            _fmt(m.no_author_accuracy),
        )
    console.print(table)
    shares = ", ".join(f"{name} {share:.0%}" for name, share in result.content_type_share.items())
    console.print(f"chunks by type: {shares}", highlight=False)
    console.print(
        f"author filter covers the canonical name: {_fmt(result.overall.author_filter_coverage)}", highlight=False
    )
    latency = result.latency_ms
    console.print(f"retrieval latency: p50 {latency['p50']:.1f} ms, p90 {latency['p90']:.1f} ms", highlight=False)
    for failure in result.author_failures:
        console.print(
            f"[yellow]author:[/yellow] {failure.id} expected {failure.expected_author or 'nobody'}, "
            f"resolved {failure.resolved_author or 'nobody'} ({failure.author_reason})",
            highlight=False,
        )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command("retrieve")(retrieve)
    eval_app.command("retrieval")(eval_retrieval)
