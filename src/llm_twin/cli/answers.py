"""`llm-twin eval answers`: answer quality, refusals, citations and latency through the real /rag pipeline."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from llm_twin.cli.errors import fail, user_errors
from llm_twin.settings import SHARED_DIR

if TYPE_CHECKING:
    from llm_twin.rag.answer_eval import AnswerEvalReport, QuestionResult

#: Evaluation fields reported under the option that sets them.
ANSWERS_OPTIONS = {
    "dataset": "--dataset",
    "key_points": "--key-points",
    "limit": "--limit",
    "set": "--set",
    "model": "--model",
}


def eval_answers(
    dataset: Annotated[
        Path, typer.Option("--dataset", help="Directory with corpus.jsonl (ingest format) and qa.jsonl.")
    ] = SHARED_DIR / "data" / "qa" / "halueval",
    key_points: Annotated[
        Optional[Path],
        typer.Option(
            "--key-points",
            help="Instead of --dataset: score the share of key points each answer states, over the existing store "
            "(the twin dev set: evaluation/twin_dev/questions.jsonl).",
        ),
    ] = None,
    limit: Annotated[
        Optional[int],
        typer.Option("--limit", help="Ask only N questions, answerable and unanswerable in turn (deterministic)."),
    ] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Generation model (LLM_TWIN_LLM_MODEL).")] = None,
    overrides: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set", help="A setting for this run, key=value (a Settings field, e.g. evidence_floor=0); repeatable."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (no progress bar).")] = False,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Also write the report to FILE: JSON with every answer, and the markdown table next to it (.md).",
        ),
    ] = None,
) -> None:
    """Answer hit, refusals, hallucinations, citations, prompt tokens and time to the first token on a QA set."""
    from llm_twin.rag.answer_eval import (
        build_settings,
        load_answer_dataset,
        load_key_point_questions,
        run_answer_eval,
        run_key_point_eval,
        setting_overrides,
    )

    if limit is not None and limit < 1:
        raise fail("--limit: must be at least 1")
    # Component warnings (e.g. the reranker in use) would break the progress bar; errors still show.
    logging.getLogger("llm_twin").setLevel(logging.ERROR)
    err = Console(stderr=True)
    with user_errors(ANSWERS_OPTIONS):
        chosen: dict[str, Any] = dict(setting_overrides(overrides or []))
        if model is not None:
            chosen["llm_model"] = model
        settings = build_settings(chosen)
        # Both checked before any model loads or anything is ingested.
        data = load_answer_dataset(dataset) if key_points is None else None
        if key_points is not None:
            load_key_point_questions(key_points)
        with Progress(
            TextColumn("[bold]answers"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=as_json,
        ) as progress:
            task = progress.add_task("answers", total=None, status="")
            tally = {"answerable": 0, "hit": 0, "unanswerable": 0, "refused": 0, "points": 0.0}
            if data is not None and not as_json:
                err.print(f"ingesting {data.documents} documents (skipped when already there)…", highlight=False)

            def on_start(total: int) -> None:
                progress.update(task, total=total)

            def on_result(result: QuestionResult) -> None:
                score = result.score
                if score is not None:
                    side = "answerable" if result.answerable else "unanswerable"
                    tally[side] += 1
                    tally["hit"] += int(result.answerable and score.hit)
                    tally["refused"] += int(not result.answerable and score.refusal)
                    tally["points"] += score.key_points or 0.0
                if data is None:
                    status = f"key points {tally['points'] / max(1, tally['answerable']):.2f}"
                else:
                    status = (
                        f"hit {tally['hit']}/{tally['answerable']}  refused {tally['refused']}/{tally['unanswerable']}"
                    )
                progress.update(task, advance=1, status=status)

            hooks: dict[str, Any] = {"overrides": chosen, "on_start": on_start, "on_result": on_result}
            if data is None:
                assert key_points is not None
                report = run_key_point_eval(settings, key_points, limit, **hooks)
            else:
                report = run_answer_eval(settings, data, limit, **hooks)
    full = report.as_dict()
    if out is not None:
        json_path, md_path = (
            (out.with_suffix(".json"), out) if out.suffix.lower() == ".md" else (out, out.with_suffix(".md"))
        )
        try:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(full, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            md_path.write_text(_markdown(report), encoding="utf-8")
        except OSError as error:
            raise fail(f"--out: cannot write {out}: {error.strerror or error}") from None
    if as_json:
        sys.stdout.write(json.dumps(full, ensure_ascii=False) + "\n")
        return
    sys.stdout.write(_markdown(report))


def _markdown(report: AnswerEvalReport) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in report.overrides.items()) or "defaults"
    return f"{report.dataset}: model {report.model}, {settings}\n\n{report.markdown()}"


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    eval_app.command("answers")(eval_answers)
