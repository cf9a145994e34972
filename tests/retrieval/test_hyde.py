"""HyDE: the passage writer against a fake LLM at the boundary, the query blending on the real
embedder, and the pipeline with HyDE on the real embedded store."""

from __future__ import annotations

import numpy as np
import pytest

from llm_fakes import FakeLLM
from llm_twin.domain.authors import author_id
from llm_twin.embedding.bm25 import Bm25SparseEncoder, Sparse
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.errors import LLMUnavailableError
from llm_twin.retrieval.hyde import HypotheticalDocumentWriter, clean_passage
from llm_twin.retrieval.pipeline import RetrievalPipeline
from llm_twin.retrieval.search import QdrantHybridRetriever, blend_sparse

PASSAGE = (
    "Structural pattern matching adds a match statement with case clauses; patterns destructure "
    "sequences, mappings and class instances and bind names."
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PASSAGE, PASSAGE),
        ("Here is a passage:\n" + PASSAGE, PASSAGE),
        (f'"{PASSAGE}"', PASSAGE),
        ("First line.\n\nSecond line.", "First line. Second line."),
    ],
)
def test_clean_passage(text, expected):
    assert clean_passage(text) == expected


def test_clean_passage_caps_length():
    assert len(clean_passage("word " * 1000, max_chars=300)) <= 300


def test_writer_returns_the_passage_greedily():
    llm = FakeLLM(PASSAGE)
    result = HypotheticalDocumentWriter(llm, max_new_tokens=64, timeout_s=5).run("What is pattern matching?")
    assert result.passage == PASSAGE and result.error is None
    messages, params = llm.calls[0]
    assert messages[-1]["content"] == "What is pattern matching?"
    assert params.temperature == 0.0 and params.max_new_tokens == 64


@pytest.mark.parametrize(
    ("llm", "reason"),
    [
        (None, "needs a helper LLM"),
        (FakeLLM(error=LLMUnavailableError("down")), "HyDE passage failed (LLMUnavailableError)"),
        (FakeLLM(delay_s=2.0), "HyDE passage timed out"),
        (FakeLLM(answer="ok"), "no usable HyDE passage"),
    ],
)
def test_writer_failures_say_why_and_return_no_passage(llm, reason):
    result = HypotheticalDocumentWriter(llm, timeout_s=0.3).run("What is pattern matching?")
    assert result.passage is None
    assert reason in result.error


def test_blend_sparse_adds_weighted_passage_terms():
    blended = blend_sparse(Sparse([3, 7], [1.0, 1.0]), Sparse([7, 9], [1.0, 1.0]), 0.5)
    assert blended == Sparse([3, 7, 9], [1.0, 1.5, 0.5])


def test_encode_blends_the_passage_into_every_query():
    embedder, bm25 = OnnxSentenceEmbedder(), Bm25SparseEncoder()
    retriever = QdrantHybridRetriever(None, embedder, bm25, ["c"], hyde_weight=0.5)  # type: ignore[arg-type]
    queries = ["pattern matching", "match statement"]
    dense, sparse = retriever.encode(queries, "hybrid", PASSAGE)
    # One embedding call for queries and passage, as encode() makes (dynamic int8 is batch-sensitive).
    both = embedder.embed([*queries, PASSAGE])
    q, p = both[:2], both[2]
    expected = (q + 0.5 * p) / np.linalg.norm(q + 0.5 * p, axis=1, keepdims=True)
    assert np.allclose(np.asarray(dense), expected, atol=1e-5)
    passage_terms = set(bm25.embed_queries([PASSAGE])[0].indices)
    for query, vector in zip(queries, sparse, strict=True):
        assert set(vector.indices) == set(bm25.embed_queries([query])[0].indices) | passage_terms
    plain_dense, plain_sparse = retriever.encode(queries, "hybrid")
    assert np.allclose(np.asarray(plain_dense), embedder.embed(queries), atol=1e-6)
    assert plain_sparse == bm25.embed_queries(queries)


@pytest.fixture(scope="module")
def hyde_pipeline(ingested_settings):
    llm = FakeLLM(PASSAGE)
    pipeline = RetrievalPipeline(ingested_settings.model_copy(update={"hyde": True}), helper_llm=llm)
    pipeline.warm_up()
    yield pipeline, llm
    pipeline.close()


def test_pipeline_with_hyde_reports_the_passage_and_keeps_the_filter(hyde_pipeline):
    pipeline, llm = hyde_pipeline
    result = pipeline.run("What did Guido van Rossum write about pattern matching?", k=4)
    assert result.hypothetical_document == PASSAGE
    assert "hyde" in result.timings_ms and not result.warnings
    assert result.chunks and all(author_id("Guido van Rossum") in c.author_ids for c in result.chunks)
    assert any(m[-1]["content"].startswith("What did Guido") for m, _ in llm.calls)


def test_pipeline_hyde_failure_is_a_warning_not_an_error(hyde_pipeline):
    pipeline, llm = hyde_pipeline
    llm.error = LLMUnavailableError("down")
    try:
        result = pipeline.run("pattern matching", k=3)
    finally:
        llm.error = None
    assert result.hypothetical_document is None
    assert result.chunks
    assert any("HyDE passage failed" in w for w in result.warnings)


def test_instruction_with_placeholder_is_the_whole_prompt():
    llm = FakeLLM(PASSAGE)
    writer = HypotheticalDocumentWriter(llm, instruction="Write a scientific passage.\nClaim: {query}\nPassage:")
    assert writer.run("Vitamin D lowers risk").passage == PASSAGE
    messages, _ = llm.calls[0]
    assert messages == [
        {"role": "user", "content": "Write a scientific passage.\nClaim: Vitamin D lowers risk\nPassage:"}
    ]
    plain = HypotheticalDocumentWriter(llm, instruction="Answer in the style of a PEP.")
    assert [m["role"] for m in plain.messages("q")] == ["system", "user"]
    assert plain.messages("q")[0]["content"] == "Answer in the style of a PEP."
