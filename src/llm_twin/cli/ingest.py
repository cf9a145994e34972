"""`llm-twin ingest [PATH ...] [--json] [--skip-bad]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from llm_twin.cli.errors import fail, user_errors
from llm_twin.settings import load_settings

if TYPE_CHECKING:
    from llm_twin.ingest.pipeline import IngestReport


def ingest(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="JSONL files; default: the three demo files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the counts as JSON.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Exit 0 even if some lines were malformed.")] = False,
    metrics_file: Annotated[
        Optional[Path],
        typer.Option(
            "--metrics-file",
            help="Also write the run's counters in the Prometheus text format (for node_exporter's textfile collector).",
        ),
    ] = None,
) -> None:
    """Clean, chunk, embed and load documents into the vector store (re-runs skip unchanged documents)."""
    from llm_twin.ingest.pipeline import IngestPipeline

    err = Console(stderr=True)
    with user_errors():
        settings = load_settings()
    files = list(paths) if paths else settings.demo_files
    missing = [str(p) for p in files if not Path(p).is_file()]
    if missing:
        raise fail(f"no such file: {', '.join(missing)}")
    with user_errors():
        pipeline = IngestPipeline(settings)
        with Progress(
            TextColumn("[bold]ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks  {task.fields[rate]} chunks/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not err.is_terminal and as_json,
        ) as progress:
            task = progress.add_task("ingest", total=None, rate="-")

            def on_total(total: int) -> None:
                progress.update(task, total=total)

            def on_progress(done: int) -> None:
                progress.advance(task, done)
                t = progress.tasks[task]
                if t.elapsed:
                    progress.update(task, rate=f"{t.completed / t.elapsed:.1f}")

            report = pipeline.run(files, on_progress=on_progress, on_total=on_total)
        pipeline.close()

    if metrics_file is not None:
        _write_metrics(metrics_file, report)
    for bad in report.bad_lines:  # plain print: one line each, never wrapped, easy to grep
        print(bad, file=sys.stderr)
    if as_json:
        sys.stdout.write(json.dumps(report.summary()) + "\n")
    else:
        table = Table(title="Ingest summary")
        table.add_column("")
        table.add_column("in store", justify="right")
        for key in ("articles", "posts", "repositories", "authors", "chunks"):
            table.add_row(key, str(report.counts[key]))
        table.add_row("documents written / skipped", f"{report.documents_written} / {report.documents_skipped}")
        rate = report.chunks_written / report.seconds if report.seconds else 0.0
        table.add_row("chunks written", f"{report.chunks_written} ({rate:.1f}/s)")
        table.add_row("bad lines", str(len(report.bad_lines)))
        table.add_row("seconds", f"{report.seconds:.1f}")
        Console().print(table)
    if report.bad_lines and not skip_bad:
        err.print(f"{len(report.bad_lines)} malformed line(s) skipped; use --skip-bad to accept them")
        raise typer.Exit(1)


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command("ingest")(ingest)


def _write_metrics(path: Path, report: IngestReport) -> None:
    from llm_twin.observability.metrics import IngestMetrics

    metrics = IngestMetrics()
    metrics.run(
        written=report.documents_written,
        skipped=report.documents_skipped,
        chunks=report.chunks_written,
        bad_lines=len(report.bad_lines),
        seconds=report.seconds,
        stored=report.counts,
    )
    try:
        metrics.write(str(path))
    except OSError as error:
        raise fail(f"--metrics-file: cannot write {path}: {error.strerror or error}") from None
