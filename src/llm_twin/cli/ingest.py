"""`llm-twin ingest [PATH ...] [--json] [--skip-bad] [--metrics-file F] [--url URL [--api-key KEY]]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from llm_twin.cli.errors import fail, user_errors
from llm_twin.cli.progress import progress_reporter
from llm_twin.domain.limits import MAX_DOCUMENTS_PER_REQUEST
from llm_twin.settings import load_settings

if TYPE_CHECKING:
    from llm_twin.ingest.pipeline import IngestReport


def ingest(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="JSONL files; default: the three demo files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the counts as JSON.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Exit 0 even if some lines were malformed.")] = False,
    url: Annotated[
        Optional[str],
        typer.Option(help="Send the files to a running service (POST /documents), e.g. http://127.0.0.1:8000."),
    ] = None,
    api_key: Annotated[
        Optional[str],
        typer.Option(envvar="LLM_TWIN_API_KEY", help="With --url: sent as `Authorization: Bearer KEY`."),
    ] = None,
    batch: Annotated[
        int, typer.Option(min=1, max=MAX_DOCUMENTS_PER_REQUEST, help="With --url: records per request.")
    ] = 200,
    metrics_file: Annotated[
        Optional[Path],
        typer.Option(
            "--metrics-file",
            help="Also write the run's counters in the Prometheus text format (for node_exporter's textfile collector).",
        ),
    ] = None,
) -> None:
    """Clean, chunk, embed and load documents into the vector store (re-runs skip unchanged documents)."""
    with user_errors():
        settings = load_settings()
    files = list(paths) if paths else settings.demo_files
    missing = [str(p) for p in files if not Path(p).is_file()]
    if missing:
        raise fail(f"no such file: {', '.join(missing)}")
    if url:
        if metrics_file is not None:  # the service counts what it writes on its own /metrics
            raise fail("--metrics-file: not with --url (the service's /metrics counts its writes)")
        from llm_twin.cli.ingest_remote import send_files

        remote = send_files(url, files, api_key=api_key, batch=batch, quiet=as_json)
        _finish(remote.summary(), remote.bad_lines, remote.table_rows(), as_json=as_json, skip_bad=skip_bad)
        return

    from llm_twin.ingest.pipeline import IngestPipeline

    with user_errors():
        pipeline = IngestPipeline(settings)
        try:
            with progress_reporter("ingest", "chunks", quiet=as_json) as progress:
                report = pipeline.run(files, on_progress=progress.advance, on_total=progress.total)
        finally:
            pipeline.close()
    if metrics_file is not None:
        _write_metrics(metrics_file, report)
    rate = report.chunks_written / report.seconds if report.seconds else 0.0
    rows = [(key, str(report.counts[key])) for key in ("articles", "posts", "repositories", "authors", "chunks")]
    rows += [
        ("documents written / skipped", f"{report.documents_written} / {report.documents_skipped}"),
        ("chunks written", f"{report.chunks_written} ({rate:.1f}/s)"),
        ("bad lines", str(len(report.bad_lines))),
        ("seconds", f"{report.seconds:.1f}"),
    ]
    _finish(report.summary(), [str(b) for b in report.bad_lines], rows, as_json=as_json, skip_bad=skip_bad)


def _finish(
    summary: dict[str, float | int], bad_lines: list[str], rows: list[tuple[str, str]], *, as_json: bool, skip_bad: bool
) -> None:
    for bad in bad_lines:  # plain print: one line each, never wrapped, easy to grep
        print(bad, file=sys.stderr)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        table = Table(title="Ingest summary")
        table.add_column("")
        table.add_column("in store", justify="right")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    if bad_lines and not skip_bad:
        Console(stderr=True).print(f"{len(bad_lines)} malformed line(s) skipped; use --skip-bad to accept them")
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
