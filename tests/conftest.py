"""Shared fixtures: a small slice of the demo corpus, ingested once per session into a temp store.

Integration tests use the real embedded Qdrant, the real ONNX embedder and (where they generate)
the SmolLM2 GGUF; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus_support import write_small_corpus
from llm_twin.settings import Settings, load_settings


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_small_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def ingested_settings(tmp_path_factory: pytest.TempPathFactory, small_corpus: list[Path]) -> Settings:
    """Settings whose data dir holds the small corpus, ingested once (store closed afterwards)."""
    from llm_twin.ingest.pipeline import IngestPipeline

    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("data"),
        helper_llm_backend="none",
        expand_to_n=1,
        rerank_backend="none",
        llm_model="smollm2-135m-instruct",
        max_new_tokens=24,
    )
    pipeline = IngestPipeline(settings)
    try:
        report = pipeline.run(small_corpus)
    finally:
        pipeline.close()
    assert not report.bad_lines
    return settings
