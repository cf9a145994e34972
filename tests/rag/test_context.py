"""Extractive context selection with the real embedder: what is kept, in what order, and the evidence score."""

from __future__ import annotations

import pytest

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.domain.sentences import split_sentences
from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.rag.context import ExtractiveContextSelector, estimate_tokens


def _chunk(index: int, content: str) -> EmbeddedChunk:
    return EmbeddedChunk(
        id=f"c{index}",
        collection="articles",
        content_type="article",
        document_id=f"pep-{index}",
        chunk_index=0,
        content=content,
        author_ids=["a"],
        author_full_name="Guido van Rossum",
        title=f"PEP {index}",
        score=1.0,
    )


@pytest.fixture(scope="module")
def selector() -> ExtractiveContextSelector:
    return ExtractiveContextSelector(OnnxSentenceEmbedder(), budget_tokens=60, relative_floor=0.5)


def test_split_sentences_keeps_lists_and_merges_headings_into_what_follows() -> None:
    text = (
        "Motivation\n==========\n\nThe match statement compares a subject against patterns. "
        "It was proposed in 2020.\n\n- Guards add a condition to a case block in one line\n"
        "- Capture patterns bind names to parts of the subject"
    )
    assert split_sentences(text) == [
        "Motivation ========== The match statement compares a subject against patterns.",
        "It was proposed in 2020.",
        "- Guards add a condition to a case block in one line",
        "- Capture patterns bind names to parts of the subject",
    ]


def test_selection_keeps_the_relevant_sentences_in_order_under_the_budget(selector) -> None:
    chunks = [
        _chunk(
            1,
            "The release schedule moves to yearly releases. Structural pattern matching adds a match "
            "statement with case clauses. Each case clause holds a pattern and an optional guard. "
            "Buildbots test every supported platform.",
        ),
        _chunk(2, "The walrus operator assigns inside expressions. Packaging metadata lives in pyproject.toml."),
    ]
    selected = selector.run("How does pattern matching with the match statement work?", chunks)
    assert [c.id for c in selected.chunks] == ["c1"], "a chunk with no kept sentence leaves the context"
    kept = selected.chunks[0].content
    assert kept.index("Structural pattern matching") < kept.index("Each case clause"), "document order"
    assert "Buildbots" not in kept and "release schedule" not in kept
    assert selected.tokens <= 60 and selected.tokens < selected.tokens_before
    assert selected.chunks[0].metadata["passage_score"] > 0.4
    assert chunks[0].content.startswith("The release schedule"), "the input chunks are not mutated"


def test_evidence_is_low_when_the_writing_is_about_something_else(selector) -> None:
    chunks = [_chunk(1, "Packaging metadata lives in pyproject.toml. Wheels are built by the build backend.")]
    on_topic = selector.run("Where does packaging metadata live?", chunks)
    off_topic = selector.run("Which magazine was started first, Arthur's Magazine or First for Women?", chunks)
    assert on_topic.evidence > 0.5 > off_topic.evidence


def test_no_chunks_no_evidence(selector) -> None:
    selected = selector.run("anything", [])
    assert selected.chunks == [] and selected.evidence == 0.0
    assert estimate_tokens(0) == 1


def test_budget_is_counted_with_the_models_tokenizer_when_given() -> None:
    counted: list[str] = []

    def characters(text: str) -> int:  # a stand-in tokenizer: one token per character
        counted.append(text)
        return len(text)

    chunks = [
        _chunk(
            1,
            "Structural pattern matching adds a match statement. Each case clause holds a pattern. "
            "A guard adds a condition to a case clause.",
        )
    ]
    question = "How does pattern matching with the match statement work?"
    by_words = ExtractiveContextSelector(OnnxSentenceEmbedder(), budget_tokens=60, relative_floor=0.0)
    by_model = ExtractiveContextSelector(
        OnnxSentenceEmbedder(), budget_tokens=60, relative_floor=0.0, count_tokens=characters
    )
    words = by_words.run(question, chunks)
    model = by_model.run(question, chunks)
    assert counted, "the model's counter decides what fits"
    assert model.tokens <= 60 and model.tokens == sum(len(t) for t in model.chunks[0].content.split(" … "))
    assert len(model.chunks[0].content) < len(words.chunks[0].content)
