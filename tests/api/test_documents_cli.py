"""Serve first, then `llm-twin ingest --url` against a loopback server: the real retrieval
pipeline (embedded store, ONNX embedder) with a fake LLM (generation is not under test here)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from rag_fakes import FakeLLM
from typer.testing import CliRunner

from conftest import slow_settings
from llm_twin.api.app import create_app
from llm_twin.cli import app as cli
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.retrieval.pipeline import RetrievalPipeline

pytestmark = pytest.mark.slow

runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, small_corpus: list[Path]) -> Iterator[str]:
    """Started on an empty data dir with the articles to ingest in the background (serve first)."""
    settings = slow_settings(tmp_path_factory.mktemp("served") / "data")
    pipeline = RAGPipeline(RetrievalPipeline(settings), FakeLLM(), settings)
    application = create_app(settings, pipeline, ingest_paths=[small_corpus[0]])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(30)
        sock.close()
        pipeline.close()


def wait_for_ingest(url: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        progress = httpx.get(f"{url}/documents/progress").json()
        if progress["state"] in ("done", "failed"):
            return progress
        time.sleep(0.2)
    raise AssertionError("background ingest did not finish")


def test_serve_first_ingests_in_the_background_and_reports_progress(server: str) -> None:
    progress = wait_for_ingest(server)
    assert progress["state"] == "done", progress
    assert progress["documents_total"] == progress["documents_done"] == 5
    assert progress["chunks_done"] == progress["chunks_total"] > 5
    assert progress["chunks_per_s"] > 0 and progress["source"] == "articles.jsonl"
    ready = httpx.get(f"{server}/ready")
    assert ready.status_code == 200 and ready.json()["ingest"]["state"] == "done"
    answer = httpx.post(f"{server}/rag", json={"query": "pattern matching"}, timeout=60).json()
    assert {s["content_type"] for s in answer["sources"]} == {"article"}
    metrics = httpx.get(f"{server}/metrics").text
    done = next(line for line in metrics.splitlines() if line.startswith("llm_twin_ingest_documents_done "))
    assert float(done.split()[1]) == 5


def test_ingest_url_sends_the_files_in_batches(server: str, small_corpus: list[Path]) -> None:
    wait_for_ingest(server)
    result = runner.invoke(cli, ["ingest", *map(str, small_corpus[1:]), "--url", server, "--batch", "5", "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    counts = json.loads(result.stdout)
    assert (counts["articles"], counts["posts"], counts["repositories"]) == (5, 18, 3)
    again = runner.invoke(cli, ["ingest", str(small_corpus[1]), "--url", server])
    assert again.exit_code == 0 and "0 / 18" in again.stdout  # written / skipped
    answer = httpx.post(f"{server}/rag", json={"query": "What did Brett Cannon write?"}, timeout=60).json()
    assert answer["author"]["full_name"] == "Brett Cannon"  # authors of posted documents are known at once


def test_ingest_url_reports_bad_lines_as_file_lines_and_sends_the_rest(server: str, tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = {"id": "m1", "content_type": "post", "author": "Mo Example", "text": "A fine note about teapots."}
    path.write_text(json.dumps(good) + '\n\n{"id": "m2", "content_type": "post"}\n', encoding="utf-8")
    result = runner.invoke(cli, ["ingest", str(path), "--url", server])
    assert result.exit_code == 1
    assert f"{path}:3: missing field 'text'" in result.stderr
    assert "1 / 0" in result.stdout  # m1 written
    assert runner.invoke(cli, ["ingest", str(path), "--url", server, "--skip-bad"]).exit_code == 0


def test_ingest_url_errors_are_one_line(tmp_path: Path, small_corpus: list[Path]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    result = runner.invoke(cli, ["ingest", str(small_corpus[0]), "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: cannot reach http://127.0.0.1:{port}: ConnectError"
