"""Fixtures for the API tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from rag_fakes import FakeLLM, FakeRetrieval

from llm_twin.api.app import create_app
from llm_twin.rag.pipeline import RAGPipeline
from llm_twin.settings import Settings, load_settings


@pytest.fixture
def fake_retrieval() -> FakeRetrieval:
    return FakeRetrieval()


@pytest.fixture
def fake_llm() -> FakeLLM:
    return FakeLLM()


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """``app`` behind a real uvicorn server on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # the lifespan loads the models before the server starts
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def live_server(tmp_path: Path, fake_retrieval: FakeRetrieval, fake_llm: FakeLLM) -> Iterator[tuple[str, FakeLLM]]:
    """The app with fakes behind a real uvicorn server on a free port."""
    settings = load_settings(data_dir=tmp_path)
    with serve(create_app(settings, RAGPipeline(fake_retrieval, fake_llm, settings))) as url:
        yield url, fake_llm


#: A small slice of the demo corpus: pattern-matching PEPs and commits by Guido van Rossum, plus
#: other authors so that author filtering is meaningful. Texts are cut to keep ingest fast.
CORPUS_PEPS = ("pep-0634", "pep-0635", "pep-0636", "pep-0008", "pep-0020", "pep-0572", "pep-0001", "pep-0257")
CORPUS_COMMITS = ("d196748ac1", "0c87b5a018", "771b2a8db0", "11c354d8a3", "fa90054ead")
CORPUS_PACKAGES = ("pypi:typing_extensions", "pypi:annotated-types")
MAX_TEXT_CHARS = 4000


def write_corpus(demo_dir: Path, out: Path) -> Path:
    """Pick the records above (and five commits by Barry Warsaw) from the demo JSONL files."""
    barry = 0
    with out.open("w", encoding="utf-8") as handle:
        for name, keep in (
            ("peps.jsonl", CORPUS_PEPS),
            ("peps_commits.jsonl", CORPUS_COMMITS),
            ("packages.jsonl", CORPUS_PACKAGES),
        ):
            for line in (demo_dir / name).open(encoding="utf-8"):
                record = json.loads(line)
                wanted = record["id"] in keep or record["id"][:10] in keep
                if not wanted and record.get("author") == "Barry Warsaw" and barry < 5:
                    barry += 1
                    wanted = True
                if wanted:
                    record["text"] = record["text"][:MAX_TEXT_CHARS]
                    handle.write(json.dumps(record) + "\n")
    return out


def slow_settings(data_dir: Path, **overrides: object) -> Settings:
    """Real components, sized for a fast test run (SmolLM2, no helper LLM, no reranker, short answers)."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "llm_model": "smollm2-135m-instruct",
        "llm_n_ctx": 2048,
        "helper_llm_backend": "none",
        "rerank_backend": "none",
        "expand_to_n": 1,
        "k": 3,
        "max_new_tokens": 12,
        "temperature": 0.0,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the small corpus ingested through the real ingest pipeline (once per session)."""
    from llm_twin.ingest.pipeline import IngestPipeline

    demo = load_settings().demo_data_dir
    if not (demo / "peps.jsonl").is_file():
        pytest.skip(f"demo data not found under {demo}")
    root = tmp_path_factory.mktemp("rag-store")
    corpus = write_corpus(demo, root / "corpus.jsonl")
    settings = slow_settings(root / "data")
    pipeline = IngestPipeline(settings)
    try:
        report = pipeline.run([corpus])
    finally:
        pipeline.close()
    assert report.counts.get("chunks", 0) > 0
    return settings.data_dir
