"""Expansion on demand: the question is searched alone first; the helper writes reformulations only
when nothing found is close to it (real store, real embedder and sentence-embedding reranker)."""

from __future__ import annotations

import pytest

from llm_fakes import FakeLLM
from llm_twin.retrieval.pipeline import RetrievalPipeline

CLOSE = "What did Guido van Rossum write about pattern matching?"
#: Nothing in the small corpus is about this, so its best sentence is far from the question.
FAR = "Which recipe did Guido van Rossum recommend for sourdough bread?"
REFORMULATIONS = "1. How is sourdough bread made?\n2. What is a good sourdough recipe?"


def pipeline_with(ingested_settings, helper: FakeLLM, threshold: float) -> RetrievalPipeline:
    settings = ingested_settings.model_copy(
        update={"rerank_backend": "sentence-embedding", "expand_to_n": 3, "expand_below_cosine": threshold}
    )
    pipeline = RetrievalPipeline(settings, helper_llm=helper)
    pipeline.warm_up()
    return pipeline


@pytest.fixture(scope="module")
def helper() -> FakeLLM:
    return FakeLLM(REFORMULATIONS)


def test_a_close_match_skips_the_helper_and_a_far_one_expands(ingested_settings, helper) -> None:
    pipeline = pipeline_with(ingested_settings, helper, threshold=0.65)
    try:
        close = pipeline.run(CLOSE, k=5)
        assert helper.calls == []  # no reformulations asked for
        assert close.expanded_queries == [CLOSE]
        assert close.timings_ms["expansion"] == 0.0
        assert max(c.metadata["best_sentence_cosine"] for c in close.chunks) >= 0.65
        assert close.chunks[0].document_id == "pep-0634"

        far = pipeline.run(FAR, k=5)
        assert len(helper.calls) == 1
        assert far.expanded_queries[0] == FAR and len(far.expanded_queries) == 3
        assert far.timings_ms["expansion"] > 0.0
        assert all(c.metadata["best_sentence_cosine"] < 0.65 for c in far.chunks)
    finally:
        pipeline.close()


def test_threshold_zero_always_expands_as_the_workflow_does(ingested_settings) -> None:
    helper = FakeLLM(REFORMULATIONS)
    pipeline = pipeline_with(ingested_settings, helper, threshold=0.0)
    try:
        result = pipeline.run(CLOSE, k=5)
        assert len(helper.calls) == 1
        assert len(result.expanded_queries) == 3
    finally:
        pipeline.close()


def test_the_same_question_finds_the_same_first_source_either_way(ingested_settings) -> None:
    """Skipping expansion changes what is searched, not how: the close question's best source holds."""
    on_demand = pipeline_with(ingested_settings, FakeLLM(REFORMULATIONS), threshold=0.65)
    try:
        skipped = on_demand.run(CLOSE, k=5)
    finally:
        on_demand.close()
    always = pipeline_with(ingested_settings, FakeLLM(""), threshold=0.0)  # no usable reformulation
    try:
        expanded = always.run(CLOSE, k=5)
    finally:
        always.close()
    assert expanded.expanded_queries == [CLOSE]
    assert [c.id for c in skipped.chunks] == [c.id for c in expanded.chunks]
