"""Training pairs: the dev hold-out and hard-negative windows (pure functions, no models)."""

from __future__ import annotations

from llm_twin.domain.documents import Document
from llm_twin.training.pairs import build_pairs, document_text, is_dev


def test_dev_hold_out_is_stable_and_about_the_asked_share():
    ids = [str(i) for i in range(2000)]
    held = [q for q in ids if is_dev(q, 0.2)]
    assert held == [q for q in ids if is_dev(q, 0.2)]  # the same ids on every call
    assert 0.17 < len(held) / len(ids) < 0.23
    assert not any(is_dev(q, 0.0) for q in ids)
    assert set(held) <= {q for q in ids if is_dev(q, 0.4)}  # a larger share keeps the smaller one's ids


def test_pairs_take_negatives_from_the_window_and_never_a_relevant_document():
    queries = {"q1": "claim one", "q2": "claim two", "q3": "claim three"}
    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d5": 1}, "q3": {"d9": 0}}
    rankings = {
        "q1": ["d1", "x", "d2", "n1", "d2", "n2", "gone"],  # d2 relevant even below the skip
        "q2": ["d5", "a", "b"],  # nothing left after skipping 3: dropped
        "q3": ["d9", "a", "b", "c"],  # grade 0 is not relevant: no positive, no pair
    }
    pairs = build_pairs(
        queries, qrels, rankings, corpus_ids={"d1", "d2", "d5", "d9", "x", "n1", "n2"}, negatives_from=3
    )
    assert [(p.query_id, p.positive_id) for p in pairs] == [("q1", "d1"), ("q1", "d2")]
    assert pairs[0].negative_ids == ["n1", "n2"]  # skipped the top 3, dropped d2 and the unknown id
    assert pairs[0].query == "claim one"


def test_document_text_matches_what_ingest_embeds():
    doc = Document(id="1", content_type="article", title="A title", text="Body.", authors=[])
    assert document_text(doc) == "A title\nBody."
    assert document_text(doc.model_copy(update={"title": None})) == "Body."
