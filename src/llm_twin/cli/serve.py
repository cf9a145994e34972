"""`llm-twin serve [--host] [--port]` and `llm-twin ask QUERY [--json] [--stream]`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from pydantic import ValidationError

from llm_twin.cli.errors import fail, user_errors
from llm_twin.domain.limits import check_request
from llm_twin.errors import EXIT_FAILED, EXIT_USAGE, StoreLockedError
from llm_twin.settings import Settings, load_settings

if TYPE_CHECKING:
    from llm_twin.api.schemas import RAGResponse
    from llm_twin.rag.pipeline import RAGPipeline


def _settings() -> Settings:
    with user_errors():
        return load_settings()


def serve(
    host: Annotated[Optional[str], typer.Option(help="Interface to bind (default LLM_TWIN_API_HOST).")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="Port (default LLM_TWIN_API_PORT).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn / app log level.")] = "info",
    ingest: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--ingest",
            help="JSONL file to ingest in the background while serving (repeatable; `--ingest demo`: the demo "
            "files). Answers come from what is indexed so far; /ready shows the progress.",
        ),
    ] = None,
    watch: Annotated[
        Optional[Path],
        typer.Option(help="Folder whose JSONL files are ingested, and again whenever one is added or changed."),
    ] = None,
) -> None:
    """Serve the API and the web page (one process: the local model is loaded once)."""
    import uvicorn

    from llm_twin.api.app import create_app
    from llm_twin.observability import configure_tracing
    from llm_twin.observability.logs import configure_logging

    settings = _settings()
    ingest_paths = [p for path in ingest or [] for p in (settings.demo_files if str(path) == "demo" else [path])]
    missing = [str(p) for p in ingest_paths if not p.is_file()]
    if missing:
        raise fail(f"--ingest: no such file: {', '.join(missing)}")
    if watch is not None and not watch.is_dir():
        raise fail(f"--watch: no such folder: {watch}")
    with user_errors():
        configure_tracing(settings)  # fail here with one line rather than in the lifespan
    configure_logging(settings.log_format, log_level)
    host = host or settings.api_host
    port = port or settings.api_port
    # The app knows where it is served: /mcp checks the Host header only on a loopback address.
    settings = settings.model_copy(update={"api_host": host, "api_port": port})
    uvicorn.run(
        create_app(settings, background_start=True, ingest_paths=ingest_paths, watch_dir=watch),
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=None,  # our handler (text or JSON, with request and trace ids) formats uvicorn's lines too
        access_log=False,  # the telemetry middleware writes one access line per request, with its ids
        timeout_graceful_shutdown=5,
    )


def ask(
    query: Annotated[str, typer.Argument(help="The question.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API's response object (NDJSON events with --stream).")
    ] = False,
    stream: Annotated[bool, typer.Option("--stream", help="Print tokens as they are generated.")] = False,
    k: Annotated[Optional[int], typer.Option(help="Sources to retrieve.")] = None,
    expand_to_n: Annotated[
        Optional[int], typer.Option("--expand-to-n", help="Query variants incl. the original.")
    ] = None,
    author: Annotated[Optional[str], typer.Option(help="Only use this author's writing.")] = None,
    url: Annotated[
        Optional[str],
        typer.Option(help="Ask a running server (e.g. http://127.0.0.1:8000) instead of loading the pipeline here."),
    ] = None,
) -> None:
    """Answer QUERY, citing numbered sources: in-process, or through a running server with --url."""
    from llm_twin.api.schemas import RAGRequest, RAGResponse
    from llm_twin.observability import configure_tracing, shutdown_tracing
    from llm_twin.rag.pipeline import RAGPipeline

    settings = _settings()
    # Component warnings (e.g. "rerank: none") are already in the summary line; keep stderr to
    # errors so that a failure is exactly one line.
    logging.getLogger("llm_twin").setLevel(logging.ERROR)
    try:
        request = RAGRequest(query=query, k=k, expand_to_n=expand_to_n, author=author)
    except ValidationError as error:
        item = error.errors()[0]
        field = ".".join(str(p) for p in item["loc"]) or "query"
        raise fail(f"{field}: {str(item['msg']).removeprefix('Value error, ')}", EXIT_USAGE) from None
    with user_errors():  # before loading any model; the pipeline checks again
        query = check_request(
            request.query,
            k=request.k,
            expand_to_n=request.expand_to_n,
            author=request.author,
            expand_max=settings.expand_max,
        )
    arguments: dict[str, Any] = {
        "query": query,
        "k": request.k,
        "expand_to_n": request.expand_to_n,
        "author": request.author,
    }
    if url:
        _ask_server(url, arguments, stream=stream, as_json=as_json, timeout_s=settings.llm_timeout_s + 60)
        return

    pipeline: RAGPipeline | None = None
    hint = f"; to ask the running server use --url http://{settings.api_host}:{settings.api_port}"
    try:
        with user_errors(hints={StoreLockedError: hint}):
            configure_tracing(settings)
            pipeline = RAGPipeline.from_settings(settings)
            pipeline.warm_up()
            if stream:
                _print_stream(pipeline, arguments, as_json)
            else:
                response = RAGResponse.from_answer(pipeline.run(**arguments))
                if as_json:
                    sys.stdout.write(response.model_dump_json(indent=2) + "\n")
                else:
                    sys.stdout.write(response.answer + "\n")
                    _print_sources(response)
    finally:
        if pipeline is not None:
            pipeline.close()
        shutdown_tracing()


def _ask_server(url: str, arguments: dict[str, Any], *, stream: bool, as_json: bool, timeout_s: float) -> None:
    """POST /rag on a running server; same output as the in-process path."""
    import httpx

    from llm_twin.api.schemas import DoneEventData, RAGResponse, SourcesEventData

    body = {key: value for key, value in arguments.items() if value is not None} | {"stream": stream}
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0)) as client,
            client.stream("POST", url.rstrip("/") + "/rag", json=body) as response,
        ):
            if response.status_code != 200:
                response.read()
                try:
                    error = response.json()["error"]
                    message = error["message"]
                except (ValueError, KeyError, TypeError):
                    message = f"HTTP {response.status_code}"
                raise fail(message, EXIT_USAGE if response.status_code == 422 else EXIT_FAILED)
            if not stream:
                response.read()
                answer = RAGResponse.model_validate_json(response.text)
                if as_json:
                    sys.stdout.write(answer.model_dump_json(indent=2) + "\n")
                else:
                    sys.stdout.write(answer.answer + "\n")
                    _print_sources(answer)
                return
            event, sources = None, None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    continue
                if not line.startswith("data:"):
                    continue
                data = json.loads(line[5:])
                if as_json:
                    sys.stdout.write(json.dumps({"event": event, "data": data}, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                elif event == "sources":
                    sources = SourcesEventData.model_validate(data)
                elif event == "token":
                    sys.stdout.write(data["text"])
                    sys.stdout.flush()
                elif event == "done" and sources is not None:
                    sys.stdout.write("\n")
                    _print_sources(RAGResponse.from_events(sources, DoneEventData.model_validate(data)))
                if event == "error":
                    raise fail(data["error"]["message"], EXIT_FAILED)
    except httpx.HTTPError as error:
        raise fail(f"cannot reach {url}: {type(error).__name__}", EXIT_FAILED) from None


def _print_stream(pipeline: RAGPipeline, arguments: dict[str, Any], as_json: bool) -> None:
    from llm_twin.api.schemas import RAGResponse, event_data
    from llm_twin.rag.answer import DoneEvent, TokenEvent

    for event in pipeline.stream(**arguments):
        if as_json:
            data = event_data(event).model_dump(mode="json")
            sys.stdout.write(json.dumps({"event": event.kind, "data": data}, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        elif isinstance(event, TokenEvent):
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, DoneEvent):
            sys.stdout.write("\n")
            _print_sources(RAGResponse.from_answer(event.answer))


def _print_sources(response: RAGResponse) -> None:
    if not response.sources:
        return
    lines = ["", "Sources:"]
    for number, source in enumerate(response.sources, start=1):
        title = source.title or source.snippet[:80]
        line = f"  [{number}] {title} — {source.author_full_name} ({source.content_type}, score {source.score:.3f})"
        if source.link:
            line += f"\n      {source.link}"
        lines.append(line)
    timings = response.timings_ms
    sys.stdout.write("\n".join(lines) + "\n")
    summary = f"model {response.model} · rerank {response.rerank} · total {timings.get('total', 0):.0f} ms"
    if "ttft" in timings:
        summary += f" · first token {timings['ttft']:.0f} ms"
    sys.stderr.write(summary + "\n")


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("ask")(ask)
